"""pyspark-dataplug: Spark over raw scientific files in object storage, split by read-only indexes.

``spark.read.format("dataplug")`` works in any session with no registration: Spark imports every
top-level ``pyspark_*`` module and registers its ``DefaultSource``. This module therefore imports only
PySpark's data source base class; everything heavy (pyarrow, boto3, format libraries) is imported when
first used, and importing it never does I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .datasource import DataplugDataSource as DefaultSource
from .errors import (
    DataplugError,
    FormatError,
    IndexMissingError,
    OptionError,
    StaleIndexError,
    StorageError,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from .cloudobject import CloudDataset, CloudObject
    from .index.build import BuildSummary

__version__ = "0.1.0"

__all__ = [
    "CloudDataset",
    "CloudObject",
    "DataplugError",
    "DefaultSource",
    "FormatError",
    "IndexMissingError",
    "OptionError",
    "StaleIndexError",
    "StorageError",
    "__version__",
    "build_index",
    "imzml_mz_axis",
    "register",
]


def register(spark: SparkSession) -> type[DefaultSource]:
    """Register the source explicitly, with ``spark.dataplug.<option>`` confs as option defaults.

    Auto-discovery already makes ``format("dataplug")`` work; registering is how cluster-wide defaults
    (say ``spark.dataplug.indexLocation`` or ``spark.dataplug.endpointUrl``) reach the Python workers,
    which cannot read Spark confs themselves.

    Examples
    --------
    >>> import pyspark_dataplug
    >>> pyspark_dataplug.register(spark)  # doctest: +SKIP
    """
    defaults: dict[str, str] = {}
    try:
        confs = spark.conf.getAll if hasattr(spark.conf, "getAll") else {}
        items = dict(confs) if not callable(confs) else dict(confs())
    except Exception:  # noqa: BLE001 - Connect sessions may refuse listing confs
        items = {}
    for key, value in items.items():
        if key.startswith("spark.dataplug."):
            defaults[key[len("spark.dataplug."):]] = value
    try:  # the cluster's parallelism, which Python workers cannot see, as minPartitions' default
        defaults.setdefault("minPartitions", str(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - no SparkContext on Spark Connect
        pass

    cls = type("DataplugDataSource", (DefaultSource,), {"conf_defaults": defaults,
                                                        "__module__": DefaultSource.__module__})
    spark.dataSource.register(cls)
    return cls


def build_index(spark: SparkSession, paths: str | list[str], format: str | None = None, force: bool = False,
                **options: Any) -> BuildSummary:
    """Build the indexes of the objects ``paths`` names, as one Spark job (see :mod:`.index.build`)."""
    from .index.build import build_index as _build

    return _build(spark, paths, format=format, force=force, **options)


def __getattr__(name: str) -> Any:
    if name in ("CloudObject", "CloudDataset"):  # the engine-agnostic API (seed Dataplug's)
        from . import cloudobject

        return getattr(cloudobject, name)
    if name == "imzml_mz_axis":  # the shared m/z axis of a continuous imzML (its rows can leave it out)
        from .formats.imzml import imzml_mz_axis

        return imzml_mz_axis
    raise AttributeError(f"module 'pyspark_dataplug' has no attribute {name!r}")
