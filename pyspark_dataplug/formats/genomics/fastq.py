"""The seed Dataplug's module path for FASTQ: names only, over :mod:`pyspark_dataplug.formats.fastq`."""

from ..fastq import FASTQ, FASTQGZip, partition_bytes_batches, partition_reads_batches, partition_sequences_per_chunk

__all__ = ["FASTQ", "FASTQGZip", "partition_bytes_batches", "partition_reads_batches", "partition_sequences_per_chunk"]
