"""The seed Dataplug's module path for text: names only, over :mod:`pyspark_dataplug.formats.text`."""

from ..text import Text, UTF8Text, partition_lines_batches, partition_records_batches, whole_words_strategy

__all__ = ["Text", "UTF8Text", "partition_lines_batches", "partition_records_batches", "whole_words_strategy"]
