"""Dataplug's ``formats.genomics``: FASTQ, FASTA and VCF."""
