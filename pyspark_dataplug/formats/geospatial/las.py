"""The seed Dataplug's module path for LAS and LAZ: names only, over :mod:`pyspark_dataplug.formats.las`.

Importing it needs neither laspy nor lazrs: the format imports them when it builds an index or decodes LAZ.
"""

from ..las import LAS, LAZ, LiDARPointCloud, partition_chunks_batches, partition_points_batches, square_split_strategy

__all__ = [
    "LAS",
    "LAZ",
    "LiDARPointCloud",
    "partition_chunks_batches",
    "partition_points_batches",
    "square_split_strategy",
]
