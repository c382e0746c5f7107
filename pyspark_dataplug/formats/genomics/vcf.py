"""The seed Dataplug's module path for VCF: names only, over :mod:`pyspark_dataplug.formats.vcf`."""

from ..vcf import VCF, partition_num_chunks, partition_records_batches, partition_variants_batches

__all__ = ["VCF", "partition_num_chunks", "partition_records_batches", "partition_variants_batches"]
