"""The index-building Spark job.

Map tasks run as Spark tasks through the DataFrame API only (``spark.range(...).mapInArrow``), so the job
runs the same on a laptop, a cluster, Spark Connect and Databricks. The driver collects the small map
results, reduces them per object (exact record numbering), and writes each index manifest-last.
"""

from __future__ import annotations

import functools
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..storage import ObjectInfo, StorageOptions, get_storage

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from ..formats._base import Format
    from ..slices import Slice
    from .store import Index, IndexStore


@dataclass
class BuildSummary:
    """What a build did; ``str()`` is the CLI's summary."""

    format: str
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_scanned: int = 0
    index_bytes: int = 0
    records: int = 0
    seconds: float = 0.0
    locations: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        mb = self.bytes_scanned / 1e6
        rate = f" ({mb / self.seconds:.0f} MB/s)" if self.seconds > 0 and mb else ""
        return (
            f"dataplug index [{self.format}]: {len(self.indexed)} object(s) indexed, {len(self.skipped)} up to "
            f"date; {mb:.1f} MB scanned in {self.seconds:.1f} s{rate}; {self.records} records; index "
            f"{self.index_bytes / 1e3:.1f} kB"
        )


def _run_task(fmt_name: str, params: Mapping[str, Any], storage: StorageOptions, kind: str,
              tasks: list[Any], batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executor side: run the map (or stats) tasks whose ids arrive in ``batches``."""
    import pyarrow as pa

    from ..formats import get_format

    fmt = get_format(fmt_name, params)
    for batch in batches:
        ids, results = [], []
        for task_id in batch.column("id").to_pylist():
            task = tasks[task_id]
            if kind == "map":
                out = fmt.build_map(task, storage)
            else:
                out = fmt.stats_map(task)
            ids.append(task_id)
            results.append(json.dumps(out))
        yield pa.RecordBatch.from_arrays([pa.array(ids, pa.int64()), pa.array(results, pa.string())],
                                         names=["id", "result"])


def run_tasks(spark: SparkSession, fmt: Format, storage: StorageOptions, kind: str,
              tasks: list[Any]) -> list[Any]:
    """Run one Spark stage with one task per descriptor; returns the results in descriptor order."""
    if not tasks:
        return []
    fn = functools.partial(_run_task, fmt.name, fmt.params, storage, kind, tasks)
    df = spark.range(0, len(tasks), 1, numPartitions=len(tasks)).mapInArrow(fn, "id long, result string")
    results: list[Any] = [None] * len(tasks)
    for row in df.collect():
        results[row["id"]] = json.loads(row["result"])
    return results


def up_to_date(store: IndexStore, info: ObjectInfo, fmt: Format, requested: Mapping[str, Any] | None = None) -> bool:
    """Whether the object's index can be kept: same object version and index options, and, for each build
    option in ``requested`` (those the caller named, see :func:`requested_build_params`), the same value.

    Build options left unnamed never force a rebuild: an index built with any spacing reads the same rows.
    An index from before build options were recorded is rebuilt only when one is named.
    """
    manifest = store.load_manifest(info.uri, fmt.name)
    if manifest is None:
        return False
    src = manifest.get("source", {})
    built = manifest.get("build_params") or {}
    return (int(src.get("size", -1)) == info.size and src.get("etag") == info.etag
            and manifest.get("index_params") == fmt.index_params()
            and all(built.get(k) == v for k, v in (requested or {}).items()))


def requested_build_params(fmt: Format, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The build options (spacings) named in the raw options of a build call, with their parsed values.

    Defaults are left out on purpose: a plain build must reuse an index built earlier with another spacing.
    """
    named = {str(k).lower() for k, v in raw.items() if v is not None}
    return {k: v for k, v in fmt.build_params().items() if k.lower() in named}


def run_tasks_locally(fmt: Format, storage: StorageOptions, kind: str, tasks: list[Any]) -> list[Any]:
    """The same tasks in this process: for the engine-agnostic API and small data without Spark."""
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays([pa.array(range(len(tasks)), pa.int64())], names=["id"])
    out: list[Any] = [None] * len(tasks)
    for b in _run_task(fmt.name, fmt.params, storage, kind, tasks, iter([batch])):
        for i, r in zip(b.column("id").to_pylist(), b.column("result").to_pylist(), strict=True):
            out[i] = json.loads(r)
    return out


Runner = Callable[["Format", StorageOptions, str, list[Any]], list[Any]]


def spark_runner(spark: SparkSession) -> Runner:
    return functools.partial(run_tasks, spark)


def build_indexes(runner: Runner, fmt: Format, objects: list[ObjectInfo], store: IndexStore,
                  storage: StorageOptions, force: bool = False,
                  requested: Mapping[str, Any] | None = None) -> BuildSummary:
    """Build the indexes of ``objects`` that are missing or out of date (see :func:`up_to_date`)."""
    t0 = time.perf_counter()
    summary = BuildSummary(fmt.name)
    todo = []
    for info in objects:
        if not force and (up_to_date(store, info, fmt, requested)
                          or (store.load_manifest(info.uri, fmt.name) is None
                              and fmt.sidecar_index(info, storage) is not None)):
            summary.skipped.append(info.uri)
        else:
            todo.append(info)
    tasks: list[dict[str, Any]] = []
    owner: list[int] = []
    for i, info in enumerate(todo):
        head = b"" if fmt.folder_marker else get_storage(info.uri, storage).read(info.uri, 0, min(info.size, 64),
                                                                                    etag=info.etag)
        for t in fmt.build_tasks(info, head, store.dir(info.uri, fmt.name), storage):
            tasks.append(t)
            owner.append(i)
    results = runner(fmt, storage, "map", tasks)
    per_object: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i, rows in zip(owner, results, strict=True):
        per_object[i].extend(rows)
    # an optional second stage, planned from the first (gzip: count records between seek points)
    more: list[dict[str, Any]] = []
    more_owner: list[int] = []
    for i, info in enumerate(todo):
        for t in fmt.build_followup(info, per_object[i], store.dir(info.uri, fmt.name)):
            more.append(t)
            more_owner.append(i)
    for i, rows in zip(more_owner, runner(fmt, storage, "map", more), strict=True):
        per_object[i].extend(rows)
    indexes: list[Index] = []
    for i, info in enumerate(todo):
        index = fmt.build_reduce(info, per_object[i], storage)
        index.manifest["source"] = {"uri": info.uri, "size": info.size, "etag": info.etag}
        index.manifest["build_params"] = fmt.build_params()
        index.location = store.dir(info.uri, fmt.name)  # blobs written by map tasks already live there
        indexes.append(index)
    if getattr(fmt, "has_stats", False):
        stat_tasks: list[Slice] = []
        stat_owner: list[int] = []
        for i, index in enumerate(indexes):
            for s in fmt.stats_slices(index, storage):
                stat_tasks.append(s)
                stat_owner.append(i)
        stats = runner(fmt, storage, "stats", stat_tasks)
        grouped: dict[int, list[Any]] = defaultdict(list)
        for i, row in zip(stat_owner, stats, strict=True):
            grouped[i].append(row)
        for i, index in enumerate(indexes):
            fmt.stats_reduce(index, grouped[i])
    for info, index in zip(todo, indexes, strict=True):
        index.manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
        summary.locations[info.uri] = store.save(info, fmt.name, index)
        summary.indexed.append(info.uri)
        summary.bytes_scanned += info.size
        summary.index_bytes += int(index.manifest.get("index_bytes", 0))
        summary.records += index.records
    summary.seconds = time.perf_counter() - t0
    return summary


def build_index(spark: SparkSession, paths: str | list[str], format: str | None = None, force: bool = False,
                **options: Any) -> BuildSummary:
    """Build (or reuse) the indexes of every object the paths name, as one Spark job.

    Parameters
    ----------
    spark : SparkSession
        Any session, classic or Connect.
    paths : str or list of str
        Objects, globs or prefixes (``s3://``, local, ``file://``).
    format : str, optional
        Data format; guessed from the paths' names, or a folder's objects' names, when absent.
    force : bool
        Rebuild even indexes that are up to date (same object size, ETag and index options).
    **options
        Read options that shape the index (``indexLocation``, ``endpointUrl``, CSV ``quote``/``escape``,
        ``indexSpacing``, ...). An existing index is rebuilt when a build option named here
        (``indexSpacing``, ``gzipSpacing``) differs from the one it was built with; without them, any
        up-to-date index is reused whatever its spacing (reads accept every spacing).

    Examples
    --------
    >>> from pyspark_dataplug import build_index
    >>> print(build_index(spark, "s3://genomics/run1/*.fastq", format="fastq"))  # doctest: +SKIP
    """
    return plan_build(paths, format, **options).run(spark_runner(spark), force=force)


@dataclass
class BuildPlan:
    """A build resolved without Spark (format, options, objects), so mistakes surface before a JVM starts."""

    fmt: Format
    objects: list[ObjectInfo]
    store: IndexStore
    storage: StorageOptions
    requested: dict[str, Any]

    def run(self, runner: Runner, force: bool = False) -> BuildSummary:
        return build_indexes(runner, self.fmt, self.objects, self.store, self.storage, force=force,
                             requested=self.requested)


def plan_build(paths: str | list[str], format: str | None = None, **options: Any) -> BuildPlan:
    """Everything :func:`build_index` decides before its Spark job: parameters as there."""
    from ..formats import format_class
    from ..formats._base import check_installed
    from ..plan import expand_objects, format_params, parse_read_options, storage_options
    from .store import IndexStore

    path_list = [paths] if isinstance(paths, str) else list(paths)
    raw = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in options.items() if v is not None}
    if format:
        raw["format"] = format
    name, opts, path_list = parse_read_options(raw, paths=path_list)
    storage = storage_options(opts)
    cls = format_class(name)
    fmt = cls(format_params(cls, opts))
    check_installed(fmt, "build")
    store = IndexStore(opts.get("indexLocation"), storage)
    return BuildPlan(fmt, expand_objects(path_list, storage, cls), store, storage, requested_build_params(fmt, raw))
