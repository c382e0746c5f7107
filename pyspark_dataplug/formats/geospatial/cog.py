"""The seed Dataplug's module path for COG: names only, over :mod:`pyspark_dataplug.formats.cog`.

Importing it needs no imagecodecs: the format imports it when it decodes compressed tiles.
"""

from ..cog import COG, CloudOptimizedGeoTiff, grid_partition_strategy, partition_bytes_batches, partition_tiles_batches

__all__ = [
    "COG",
    "CloudOptimizedGeoTiff",
    "grid_partition_strategy",
    "partition_bytes_batches",
    "partition_tiles_batches",
]
