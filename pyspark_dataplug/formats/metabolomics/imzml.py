"""The seed Dataplug's module path for imzML: names only, over :mod:`pyspark_dataplug.formats.imzml`."""

from ..imzml import (
    ImzML,
    partition_bytes_batches,
    partition_chunks_strategy,
    partition_spectra_batches,
    partition_tiles_batches,
)

__all__ = [
    "ImzML",
    "partition_bytes_batches",
    "partition_chunks_strategy",
    "partition_spectra_batches",
    "partition_tiles_batches",
]
