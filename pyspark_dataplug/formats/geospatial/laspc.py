"""LAS and LAZ under the seed Dataplug's own module name (``laspc``); the same names as :mod:`.las`.

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
