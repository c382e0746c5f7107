"""The seed Dataplug's module path for gzip text: names only, over :mod:`pyspark_dataplug.formats.text`."""

from ..text import GZipText, partition_chunk_lines, partition_num_chunks

__all__ = ["GZipText", "partition_chunk_lines", "partition_num_chunks"]
