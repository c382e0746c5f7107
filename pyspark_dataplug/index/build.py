"""The index-building Spark job.

Map tasks run as Spark tasks through the DataFrame API only (``spark.range(...).mapInArrow``), so the job
runs the same on a laptop, a cluster, Spark Connect and Databricks. The driver collects the small map
results, reduces them per object (exact record numbering), and writes each index manifest-last.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..storage import ObjectInfo, StorageOptions, get_storage

T = TypeVar("T")

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from ..formats._base import Format
    from ..slices import Slice
    from .store import Index, IndexStore


@dataclass(frozen=True)
class ObjectBuild:
    """One object's line in a build's summary table."""

    uri: str
    #: ``"indexed"``, ``"up to date"`` (its index was kept) or ``"sidecar"`` (the field's own index is used)
    status: str
    size: int
    records: int | None = None
    index_bytes: int | None = None


@dataclass
class BuildSummary:
    """What a build did; ``str()`` is the CLI's summary line, ``objects`` its table."""

    format: str
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_scanned: int = 0
    index_bytes: int = 0
    records: int = 0
    seconds: float = 0.0
    locations: dict[str, str] = field(default_factory=dict)
    objects: list[ObjectBuild] = field(default_factory=list)

    def __str__(self) -> str:
        mb = self.bytes_scanned / 1e6
        rate = f" ({mb / self.seconds:.0f} MB/s)" if self.seconds > 0 and mb else ""
        return (
            f"dataplug index [{self.format}]: {len(self.indexed)} object(s) indexed, {len(self.skipped)} up to "
            f"date; {mb:.1f} MB scanned in {self.seconds:.1f} s{rate}; {self.records} records; index "
            f"{self.index_bytes / 1e3:.1f} kB"
        )


@dataclass(frozen=True)
class BuildProgress:
    """A snapshot of a running build, for progress displays; it knows objects, bytes and tasks, never formats.

    A build runs in stages (``"map"``, an optional ``"follow-up"`` and ``"stats"``: each one Spark job of
    the format's tasks; then ``"write"``, which saves the indexes; then ``"done"``). Within a stage a task
    weighs its object's size divided by that object's tasks in the stage, and runners report how many tasks
    have finished, not which: ``bytes_done`` and ``objects_done`` count the first ``tasks_done`` tasks in
    order (Spark starts them in that order). Exact for in-process runs, an estimate on a cluster.
    """

    stage: str
    #: objects this build indexes, and objects left alone (their index is up to date)
    objects: int
    up_to_date: int
    #: objects whose every task of this stage (or whose index, in ``"write"``) is done
    objects_done: int
    #: bytes of the objects this stage works on, and of those done
    bytes_total: int
    bytes_done: int
    tasks: int
    tasks_done: int
    #: seconds since this stage began, and since the build began
    stage_seconds: float
    seconds: float

    @property
    def rate(self) -> float:
        """Bytes per second in this stage so far (0 before the first task is done)."""
        return self.bytes_done / self.stage_seconds if self.stage_seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until this stage ends at the rate so far; None until something is done."""
        if self.bytes_done <= 0 or self.rate <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)


#: called with each snapshot; from the thread that watches Spark too, so displays must not assume one thread
ProgressCallback = Callable[[BuildProgress], None]


class _Tracker:
    """Turns "n tasks of this stage are done" into :class:`BuildProgress` snapshots (see its docstring)."""

    def __init__(self, callback: ProgressCallback, todo: list[ObjectInfo], skipped: int, t0: float) -> None:
        self.callback, self.todo, self.skipped, self.t0 = callback, todo, skipped, t0
        self.name, self.stage_t0 = "map", t0
        self.cum: list[float] = [0.0]
        self.objects_at: list[int] = [0]
        self.total_bytes = 0
        self.last = -1

    def stage(self, name: str, owner: list[int]) -> Callable[[int], None]:
        from collections import Counter

        self.name, self.stage_t0, self.last = name, time.perf_counter(), -1
        per_object = Counter(owner)
        last_task = {o: k for k, o in enumerate(owner)}
        self.cum, self.objects_at = [0.0], [0]
        for k, o in enumerate(owner):
            self.cum.append(self.cum[-1] + self.todo[o].size / per_object[o])
            self.objects_at.append(self.objects_at[-1] + (last_task[o] == k))
        self.total_bytes = sum(self.todo[o].size for o in per_object)
        self.done(0)
        return self.done

    def done(self, n: int) -> None:
        n = max(0, min(int(n), len(self.cum) - 1))
        if n == self.last:
            return
        self.last = n
        self.emit(self.name, self.objects_at[n], self.total_bytes, int(self.cum[n]), len(self.cum) - 1, n)

    def emit(self, stage: str, objects_done: int, total: int, done: int, tasks: int, tasks_done: int) -> None:
        now = time.perf_counter()
        self.callback(BuildProgress(stage, len(self.todo), self.skipped, objects_done, total, done, tasks,
                                    tasks_done, now - self.stage_t0, now - self.t0))

    def written(self, k: int) -> None:
        if k == 0:
            self.stage_t0 = time.perf_counter()
        total = sum(o.size for o in self.todo)
        done = sum(o.size for o in self.todo[:k])
        self.emit("write", k, total, done, 0, 0)

    def finished(self) -> None:
        total = sum(o.size for o in self.todo)
        self.emit("done", len(self.todo), total, total, 0, 0)


def _stage(runner: Runner, fmt: Format, storage: StorageOptions, kind: str, tasks: list[Any],
           tracker: _Tracker | None, name: str, owner: list[int], sizes: list[int]) -> list[Any]:
    """One stage through the runner; with a tracker, the runner also reports tasks done (``progress=``).

    ``weights`` (an object's bytes shared by its tasks in this stage) let a runner put small tasks together.
    """
    per_object = Counter(owner)
    extra: dict[str, Any] = {"weights": [sizes[o] // per_object[o] for o in owner]} if _takes_weights(runner) else {}
    if tracker is None or not tasks:
        return runner(fmt, storage, kind, tasks, **extra)
    done = tracker.stage(name, owner)
    results = runner(fmt, storage, kind, tasks, progress=done, **extra)
    done(len(tasks))
    return results


#: bytes of each object the driver reads to plan its build tasks (what :meth:`Format.build_tasks` gets)
FIRST_BYTES = 64 << 10

def _takes_weights(runner: Runner) -> bool:
    """Whether a runner takes ``weights=`` (ours do; one written before they existed is called without)."""
    import inspect

    try:
        params = inspect.signature(runner).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "weights" or p.kind == p.VAR_KEYWORD for p in params)


#: a map task under this many bytes shares a Spark task with its neighbours: Spark's own file sources count
#: ``spark.sql.files.openCostInBytes`` (4 MiB) per file, scheduling a task costing about as much as reading that
SMALL_TASK_BYTES = 4 << 20
#: the most bytes of small tasks one Spark task takes (``spark.sql.files.maxPartitionBytes``)
PACKED_TASK_BYTES = 128 << 20


def pack_tasks(weights: list[int], parallelism: int) -> list[list[int]]:
    """Consecutive small tasks grouped into one Spark task each; a task of 4 MiB or more runs alone.

    2,000 small objects are 2,000 map tasks of a few KB: one Spark task each spends ~100 ms per object on
    scheduling alone. Spark's rule for small files packs them, each counted with a 4 MiB open cost, into
    tasks of ``min(128 MiB, max(4 MiB, bytes / parallelism))``, so every core still gets work. Order is kept:
    progress counts tasks done in order.
    """
    small = sum(w + SMALL_TASK_BYTES for w in weights if w < SMALL_TASK_BYTES)
    target = min(PACKED_TASK_BYTES, max(SMALL_TASK_BYTES, small // max(1, parallelism)))
    groups: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for k, w in enumerate(weights):
        if w >= SMALL_TASK_BYTES:
            if current:
                groups.append(current)
                current, filled = [], 0
            groups.append([k])
            continue
        if current and filled + w + SMALL_TASK_BYTES > target:
            groups.append(current)
            current, filled = [], 0
        current.append(k)
        filled += w + SMALL_TASK_BYTES
    if current:
        groups.append(current)
    return groups


def _parallel(fn: Callable[[Any], T], items: list[Any]) -> list[T]:
    """``fn`` over ``items`` in a few dozen threads, results in order: the driver's per-object requests
    (manifest checks, first bytes, index writes) are round trips, 2,000 objects one after the other wait
    minutes for them."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    from ..plan import LOAD_THREADS

    with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, len(items)), thread_name_prefix="dataplug-build") as pool:
        return list(pool.map(fn, items))


def _run_task(fmt_name: str, params: Mapping[str, Any], storage: StorageOptions, kind: str,
              tasks: list[Any], batches: Iterator[pa.RecordBatch],
              groups: list[list[int]] | None = None) -> Iterator[pa.RecordBatch]:
    """Executor side: run the map (or stats) tasks whose ids (or ids of ``groups`` of them) arrive in ``batches``."""
    import pyarrow as pa

    from ..formats import get_format

    fmt = get_format(fmt_name, params)
    for batch in batches:
        ids, results = [], []
        for group_id in batch.column("id").to_pylist():
            for task_id in groups[group_id] if groups is not None else (group_id,):
                ids.append(task_id)
                results.append(_task_result(fmt, storage, kind, tasks[task_id]))
        yield pa.RecordBatch.from_arrays([pa.array(ids, pa.int64()), pa.array(results, pa.string())],
                                         names=["id", "result"])


def _task_result(fmt: Format, storage: StorageOptions, kind: str, task: Any) -> str:
    """One map (or stats) task's result as JSON: what crosses back to the driver, whatever the engine."""
    return json.dumps(fmt.build_map(task, storage) if kind == "map" else fmt.stats_map(task))


def run_tasks(spark: SparkSession, fmt: Format, storage: StorageOptions, kind: str,
              tasks: list[Any], progress: Callable[[int], None] | None = None,
              weights: list[int] | None = None) -> list[Any]:
    """Run one Spark stage, a Spark task per descriptor or per group of small ones (:func:`pack_tasks`);
    returns the results in descriptor order.

    ``progress`` is called with the number of tasks done while the stage runs (see :func:`watch_tasks`).
    """
    if not tasks:
        return []
    groups = pack_tasks(weights or [SMALL_TASK_BYTES] * len(tasks), _parallelism(spark))
    fn = functools.partial(_run_task, fmt.name, fmt.params, storage, kind, tasks, groups=groups)
    df = spark.range(0, len(groups), 1, numPartitions=len(groups)).mapInArrow(fn, "id long, result string")
    results: list[Any] = [None] * len(tasks)
    if progress is not None:
        ends = [0]
        for g in groups:
            ends.append(ends[-1] + len(g))
        by_group = progress
        progress = lambda n: by_group(ends[min(n, len(groups))])  # noqa: E731 - Spark counts groups
    with watch_tasks(spark, progress, len(groups)):
        rows = df.collect()
    for row in rows:
        results[row["id"]] = json.loads(row["result"])
    return results


def _parallelism(spark: SparkSession) -> int:
    """Cores the job may use: the classic session knows; through Spark Connect, assume a small cluster."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return 16


#: seconds between two looks at Spark's task counts
POLL_SECONDS = 0.5


@contextlib.contextmanager
def watch_tasks(spark: SparkSession, progress: Callable[[int], None] | None, total: int,
                interval: float = POLL_SECONDS) -> Iterator[None]:
    """Report the tasks done by the Spark jobs started inside this block, while they run.

    Classic sessions: the block's jobs run in a job group of their own, and a thread reads their stages'
    completed-task counts from the status tracker (the caller's job group is restored after). Spark Connect
    has no status tracker; its progress handler reports the stages of the session's running operation.
    A progress display must never fail a build: errors while watching stop the watching, nothing else.
    """
    if progress is None:
        yield
        return
    report = _capped(progress, total)
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        def handler(stages: Any, inflight_tasks: int, operation_id: str | None, done: bool) -> None:
            report(sum(int(s.num_completed_tasks) for s in stages or ()))

        spark.registerProgressHandler(handler)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            spark.removeProgressHandler(handler)  # type: ignore[attr-defined]
        return
    import threading
    import uuid

    sc = spark.sparkContext
    keys = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")
    saved = {k: sc.getLocalProperty(k) for k in keys}
    group = f"dataplug-index-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "dataplug index build")
    stop = threading.Event()

    def poll() -> None:
        tracker = sc.statusTracker()
        try:
            while not stop.wait(interval):
                done = 0
                for job in tracker.getJobIdsForGroup(group):
                    info = tracker.getJobInfo(job)
                    for stage in info.stageIds if info else ():
                        st = tracker.getStageInfo(stage)
                        done += st.numCompletedTasks if st else 0
                report(done)
        except Exception:  # noqa: BLE001 - the session went away mid-poll: the build reports its own error
            return

    watcher = threading.Thread(target=poll, name="dataplug-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        for k, v in saved.items():
            sc.setLocalProperty(k, v)  # type: ignore[arg-type] - None clears it, as it was


def _capped(progress: Callable[[int], None], total: int) -> Callable[[int], None]:
    """Counts never above the stage's tasks (retried attempts count twice in Spark's numbers)."""
    def report(n: int) -> None:
        progress(min(n, total))

    return report


def up_to_date(store: IndexStore, info: ObjectInfo, fmt: Format, requested: Mapping[str, Any] | None = None) -> bool:
    """Whether the object's index can be kept: same object version and index options, and, for each build
    option in ``requested`` (those the caller named, see :func:`requested_build_params`), the same value.

    Build options left unnamed never force a rebuild: an index built with any spacing reads the same rows.
    An index from before build options were recorded is rebuilt only when one is named.
    """
    manifest = store.load_manifest(info.uri, fmt.name)
    return manifest is not None and _keeps(manifest, info, fmt, requested)


def _keeps(manifest: Mapping[str, Any], info: ObjectInfo, fmt: Format, requested: Mapping[str, Any] | None) -> bool:
    """:func:`up_to_date` for a manifest already loaded."""
    from .store import same_object

    src = manifest.get("source", {})
    built = manifest.get("build_params") or {}
    return (same_object(manifest, info) and int(src.get("size", -1)) == info.size and src.get("etag") == info.etag
            and manifest.get("index_params") == fmt.index_params()
            and all(built.get(k) == v for k, v in (requested or {}).items()))


def requested_build_params(fmt: Format, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The build options (spacings) named in the raw options of a build call, with their parsed values.

    Defaults are left out on purpose: a plain build must reuse an index built earlier with another spacing.
    """
    named = {str(k).lower() for k, v in raw.items() if v is not None}
    return {k: v for k, v in fmt.build_params().items() if k.lower() in named}


def run_tasks_locally(fmt: Format, storage: StorageOptions, kind: str, tasks: list[Any],
                      progress: Callable[[int], None] | None = None, weights: list[int] | None = None) -> list[Any]:
    """The same tasks in this process, one after the other: for the engine-agnostic API and small data."""
    import pyarrow as pa

    out: list[Any] = [None] * len(tasks)
    for k in range(len(tasks)):
        batch = pa.RecordBatch.from_arrays([pa.array([k], pa.int64())], names=["id"])
        for b in _run_task(fmt.name, fmt.params, storage, kind, tasks, iter([batch])):
            for i, r in zip(b.column("id").to_pylist(), b.column("result").to_pylist(), strict=True):
                out[i] = json.loads(r)
        if progress is not None:
            progress(k + 1)
    return out


#: ``runner(fmt, storage, kind, tasks, weights=...) -> results``; ``weights`` are the tasks' bytes; builds that
#: show progress also pass ``progress=``, a callable to call with the number of tasks done so far (every runner
#: here takes both)
Runner = Callable[..., list[Any]]


def spark_runner(spark: SparkSession) -> Runner:
    return functools.partial(run_tasks, spark)


def joblib_runner(parallel_config: Mapping[str, Any] | None = None) -> Runner:
    """A runner that sends the tasks through joblib, configured as ``joblib.parallel_config(**parallel_config)``.

    The seed Dataplug's ``preprocess(parallel_config=...)``: ``{"backend": "dask"}`` runs the tasks on the
    running Dask client's workers, ``"threading"`` in threads, ``"ray"`` on Ray, ``"loky"`` (joblib's default)
    in worker processes. A config that names a backend but no ``n_jobs`` uses all of the backend's workers
    (joblib alone would run one job at a time); ``{}`` is joblib's default, one job in this process. Checked
    here, before any task runs (:func:`check_parallel_config`).
    """
    config = check_parallel_config(parallel_config)
    with contextlib.ExitStack() as stack:  # a dask backend without a client fails here, before any listing
        _enter_parallel_config(stack, config)
    return functools.partial(run_tasks_joblib, config)


def _enter_parallel_config(stack: contextlib.ExitStack, config: Mapping[str, Any]) -> None:
    import joblib

    from ..errors import OptionError

    try:
        stack.enter_context(joblib.parallel_config(**config))
    except ValueError as e:  # joblib's dask backend without a running client, and the like
        what = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if config.get("backend") == "dask":
            what += ": from dask.distributed import Client; client = Client() (or Client('scheduler:8786'))"
        raise OptionError(f"parallel_config {dict(config)!r}: {what}") from e


def run_tasks_joblib(config: Mapping[str, Any], fmt: Format, storage: StorageOptions, kind: str, tasks: list[Any],
                     progress: Callable[[int], None] | None = None, weights: list[int] | None = None) -> list[Any]:
    """One stage through joblib: each task crosses as (format name, params, storage, descriptor), all plain
    picklable data, and comes back as JSON, as from a Spark task. Results keep the descriptors' order
    (joblib batches small tasks itself: ``weights`` are not needed)."""
    import joblib
    from joblib.parallel import get_active_backend

    if not tasks:
        return []
    with contextlib.ExitStack() as stack:
        _enter_parallel_config(stack, config)
        # results as they come, in order, for progress; backends that cannot stream (ray's) give them at the end
        streams = getattr(get_active_backend()[0], "supports_return_generator", False)
        jobs = (joblib.delayed(_run_one)(fmt.name, fmt.params, storage, kind, t) for t in tasks)
        out: list[Any] = []
        for k, result in enumerate(joblib.Parallel(return_as="generator" if streams else "list")(jobs)):
            out.append(json.loads(result))
            if progress is not None:
                progress(k + 1)
    return out


def _run_one(fmt_name: str, params: Mapping[str, Any], storage: StorageOptions, kind: str, task: Any) -> str:
    """Worker side of :func:`run_tasks_joblib`: the format is rebuilt from its name and params, as on Spark."""
    from ..formats import get_format

    return _task_result(get_format(fmt_name, params), storage, kind, task)


#: backends joblib knows by name once their library registers them, and the pip extra that brings the library
_EXTERNAL_BACKENDS = {"dask": ("distributed", "dask"), "ray": ("ray", "ray")}


def check_parallel_config(parallel_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``parallel_config`` checked against joblib's own parameters and the backend's, with a named backend's
    library registered (``dask``, ``ray``), and ``n_jobs=-1`` added when a backend is named without it.

    joblib passes unknown keys on to the backend's constructor, where a typo (``"backed"``) is ignored or
    fails inside a worker; here it fails at once, with the valid keys.
    """
    import joblib
    from joblib import parallel as jp

    from ..errors import OptionError

    if parallel_config is None:
        return {}
    if not isinstance(parallel_config, Mapping):
        raise OptionError(f"parallel_config must be a dict of joblib.parallel_config arguments, such as "
                          f"{{'backend': 'dask'}}; got {type(parallel_config).__name__} {parallel_config!r}")
    config = dict(parallel_config)
    backend = config.get("backend")
    valid = _named_params(joblib.parallel_config)
    if isinstance(backend, str):
        if backend in _EXTERNAL_BACKENDS:
            _register_backend(backend)
        known = sorted(set(jp.BACKENDS) | set(jp.EXTERNAL_BACKENDS) | set(_EXTERNAL_BACKENDS))
        if backend not in jp.BACKENDS:
            raise OptionError(f"parallel_config backend {backend!r} is not a joblib backend; valid: {', '.join(known)}")
        valid |= _named_params(jp.BACKENDS[backend].__init__) | _named_params(jp.ParallelBackendBase.__init__)
    elif backend is not None and not isinstance(backend, jp.ParallelBackendBase):
        raise OptionError(f"parallel_config backend must be a joblib backend name or instance, got {backend!r}")
    unknown = sorted(set(config) - valid)
    if unknown:
        raise OptionError(f"parallel_config key(s) {', '.join(map(repr, unknown))} are not joblib.parallel_config "
                          f"arguments{f' nor {backend!r} backend ones' if isinstance(backend, str) else ''}; valid: "
                          f"{', '.join(sorted(valid))}")
    if backend is not None:
        config.setdefault("n_jobs", -1)
    return config


def _named_params(fn: Callable[..., Any]) -> set[str]:
    import inspect

    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _register_backend(name: str) -> None:
    """Make joblib know ``dask`` or ``ray`` by name, or fail with the extra to install."""
    from joblib import parallel as jp

    from ..formats._base import missing_dependency

    module, extra = _EXTERNAL_BACKENDS[name]
    try:
        if name == "ray":
            import ray  # noqa: F401 - first: a cached ray.util.joblib imports even when ray itself cannot
            from ray.util.joblib import register_ray

            register_ray()
        elif name not in jp.BACKENDS:
            jp.EXTERNAL_BACKENDS[name]()
    except ImportError as e:
        raise missing_dependency(module, extra, f"joblib's {name!r} backend") from e


def build_indexes(runner: Runner, fmt: Format, objects: list[ObjectInfo], store: IndexStore,
                  storage: StorageOptions, force: bool = False,
                  requested: Mapping[str, Any] | None = None,
                  progress: ProgressCallback | None = None) -> BuildSummary:
    """Build the indexes of ``objects`` that are missing or out of date (see :func:`up_to_date`).

    ``progress`` receives :class:`BuildProgress` snapshots while the build runs.
    """
    t0 = time.perf_counter()
    summary = BuildSummary(fmt.name)
    todo = []

    def existing(info: ObjectInfo) -> tuple[dict[str, Any] | None, Index | None]:
        manifest = None if force else store.load_manifest(info.uri, fmt.name)
        side = fmt.sidecar_index(info, storage) if not force and manifest is None else None
        return manifest, side

    for info, (manifest, side) in zip(objects, _parallel(existing, objects), strict=True):
        if manifest is not None and _keeps(manifest, info, fmt, requested):
            summary.skipped.append(info.uri)
            summary.objects.append(ObjectBuild(info.uri, "up to date", info.size, _int(manifest.get("records")),
                                               _int(manifest.get("index_bytes"))))
        elif side is not None:
            summary.skipped.append(info.uri)
            summary.objects.append(ObjectBuild(info.uri, "sidecar", info.size, _int(side.manifest.get("records"))))
        else:
            todo.append(info)
    tracker = _Tracker(progress, todo, len(summary.skipped), t0) if progress is not None else None
    tasks: list[dict[str, Any]] = []
    owner: list[int] = []

    def plan_object(info: ObjectInfo) -> list[Any]:
        # the first 64 KiB: enough for every format's magic and for a line format's header and first records
        head = b"" if fmt.folder_marker else get_storage(info.uri, storage).read(
            info.uri, 0, min(info.size, FIRST_BYTES), etag=info.etag)
        return fmt.build_tasks(info, head, store.dir(info.uri, fmt.name), storage)

    sizes = [info.size for info in todo]
    for i, object_tasks in enumerate(_parallel(plan_object, todo)):
        for t in object_tasks:
            tasks.append(t)
            owner.append(i)
    results = _stage(runner, fmt, storage, "map", tasks, tracker, "map", owner, sizes)
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
    for i, rows in zip(more_owner, _stage(runner, fmt, storage, "map", more, tracker, "follow-up", more_owner,
                                                    sizes),
                       strict=True):
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
        stats = _stage(runner, fmt, storage, "stats", stat_tasks, tracker, "stats", stat_owner, sizes)
        grouped: dict[int, list[Any]] = defaultdict(list)
        for i, row in zip(stat_owner, stats, strict=True):
            grouped[i].append(row)
        for i, index in enumerate(indexes):
            fmt.stats_reduce(index, grouped[i])
    written = 0
    lock = threading.Lock()

    def save(k: int) -> str:
        nonlocal written
        info, index = todo[k], indexes[k]
        index.manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
        location = store.save(info, fmt.name, index)
        if tracker is not None:
            with lock:
                written += 1
                if written < len(todo):  # the last one is "done"
                    tracker.written(written)
        return location

    if tracker is not None and todo:
        tracker.written(0)
    locations = _parallel(save, list(range(len(todo))))
    for info, index, location in zip(todo, indexes, locations, strict=True):
        summary.locations[info.uri] = location
        summary.indexed.append(info.uri)
        summary.bytes_scanned += info.size
        index_bytes = int(index.manifest.get("index_bytes", 0))
        summary.index_bytes += index_bytes
        summary.records += index.records
        summary.objects.append(ObjectBuild(info.uri, "indexed", info.size, index.records, index_bytes))
    if tracker is not None:
        tracker.finished()
    summary.seconds = time.perf_counter() - t0
    return summary


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


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

    def run(self, runner: Runner, force: bool = False, progress: ProgressCallback | None = None) -> BuildSummary:
        return build_indexes(runner, self.fmt, self.objects, self.store, self.storage, force=force,
                             requested=self.requested, progress=progress)


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
