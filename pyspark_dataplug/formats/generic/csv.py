"""The seed Dataplug's module path for CSV: names only, over :mod:`pyspark_dataplug.formats.csv`."""

from ..csv import CSV, partition_bytes_batches, partition_chunk_size, partition_num_chunks, partition_records_batches

__all__ = [
    "CSV",
    "partition_bytes_batches",
    "partition_chunk_size",
    "partition_num_chunks",
    "partition_records_batches",
]
