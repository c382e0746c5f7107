"""The seed Dataplug's module path for MeasurementSets: names only, over :mod:`pyspark_dataplug.formats.ms`.

Importing it needs no casacore: the format imports it when it builds an index (reads need none).
"""

from ..ms import MS, MeasurementSet, ms_partitioning_strategy, partition_rows_batches, partition_timeslots_batches

__all__ = ["MS", "MeasurementSet", "ms_partitioning_strategy", "partition_rows_batches", "partition_timeslots_batches"]
