"""The seed Dataplug's module path for FASTA: names only, over :mod:`pyspark_dataplug.formats.fasta`."""

from ..fasta import FASTA, partition_bases_batches, partition_chunks_strategy, partition_records_batches

__all__ = ["FASTA", "partition_bases_batches", "partition_chunks_strategy", "partition_records_batches"]
