"""The seed Dataplug's module path for COPC: names only, over :mod:`pyspark_dataplug.formats.copc`."""

from ..copc import (
    COPC,
    CloudOptimizedPointCloud,
    partition_nodes_batches,
    partition_points_batches,
    square_split_strategy,
)

__all__ = [
    "COPC",
    "CloudOptimizedPointCloud",
    "partition_nodes_batches",
    "partition_points_batches",
    "square_split_strategy",
]
