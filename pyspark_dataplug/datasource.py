"""The thin Spark adapter: options -> plan -> input partitions; each task evaluates its slices to Arrow.

Spark calls ``schema()``, ``reader()`` and ``partitions()`` in short-lived Python workers on the driver
and ``read()`` on executors, after unpickling this object (``__init__`` does not run there). So all the
planning state a task needs travels inside its :class:`DataplugPartition`; executors rebuild storage
clients from the options in each slice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

    from .slices import Slice


@dataclass
class DataplugPartition(InputPartition):
    """One Spark input partition: slices of one or more objects, read one after the other."""

    slices: tuple[Slice, ...]

    def __init__(self, slices: tuple[Slice, ...]) -> None:  # InputPartition's __init__ takes a value
        self.slices = slices


def arrow_to_spark(schema: pa.Schema) -> StructType:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


class DataplugDataSource(DataSource):
    """``spark.read.format("dataplug")``: splittable reads of raw files through their indexes."""

    #: defaults captured from ``spark.dataplug.*`` confs by :func:`pyspark_dataplug.register`
    conf_defaults: ClassVar[dict[str, str]] = {}

    @classmethod
    def name(cls) -> str:
        return "dataplug"

    def schema(self) -> StructType:
        from .plan import open_dataset

        dataset = open_dataset(self.options, self.conf_defaults, first_only=True)
        return arrow_to_spark(dataset.schema)

    def reader(self, schema: StructType) -> DataSourceReader:
        if _planning_with_pushdown():
            return DataplugPushdownReader(dict(self.options), dict(self.conf_defaults))
        return DataplugReader(dict(self.options), dict(self.conf_defaults))


def _planning_with_pushdown() -> bool:
    """Whether Spark's filter-pushdown worker is the one asking for a reader.

    A reader that defines ``pushFilters`` fails every query while ``spark.sql.python.filterPushdown.enabled``
    is off (DATA_SOURCE_PUSHDOWN_DISABLED), and a Python source cannot read that conf. Spark asks for the
    reader from its pushdown worker only when the conf is on, so the reader with ``pushFilters`` is handed out
    only there: reads work with the conf on (pruning) and off (no pruning, same rows).
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith("data_source_pushdown_filters.py"):
            return True
        frame = frame.f_back
    return False


class DataplugReader(DataSourceReader):
    def __init__(self, options: dict[str, Any], defaults: dict[str, str]) -> None:
        self.options = options
        self.defaults = defaults

    pushed: dict[str, Any] | None = None

    def partitions(self) -> list[InputPartition]:
        from .plan import open_dataset

        dataset = open_dataset(self.options, self.defaults, pushed=self.pushed)
        parts = [DataplugPartition(tuple(p)) for p in dataset.plan()]
        # Spark needs at least one partition; an empty dataset reads as one task that yields nothing.
        return parts or [DataplugPartition(())]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        from .slices import prefetched

        assert isinstance(partition, DataplugPartition)
        for s, reader in prefetched(partition.slices):
            yield from s.batches(reader)


class DataplugPushdownReader(DataplugReader):
    """The reader Spark's pushdown worker gets: formats turn filters into pruning (VCF regions).

    Every filter is handed back to Spark, which applies it to the rows: pushed filters only decide which
    parts of an object are read, so a format never has to evaluate Spark's filter semantics exactly.
    """

    def pushFilters(self, filters: list[Any]) -> Iterable[Any]:  # noqa: N802 - Spark's name
        from .formats import format_class
        from .plan import parse_read_options

        name, _, _ = parse_read_options(self.options, self.defaults)
        self.pushed = format_class(name).push_filters(list(filters)) or None
        return list(filters)
