"""Builds under concurrency and crashes: readers see no index or a complete one, never a half-built one.

There are no locks to go stale: a build writes files of its own and the manifest last (see
``pyspark_dataplug.index.store``). These tests run two builds of one object at once, kill a build (SIGKILL, in a
child process) at every stage, and read while builds replace the index, against a local folder and moto's S3
server. Rows are compared with independent parsers (Biopython for FASTQ, ``str.splitlines`` for text).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Store, make_store, read_dataplug
from data import fastq_reference, make_fastq, make_text

import pyspark_dataplug
from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import DataplugError, IndexMissingError
from pyspark_dataplug.index import store as store_mod
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.index.store import IndexStore
from pyspark_dataplug.plan import storage_options
from pyspark_dataplug.storage import get_storage

#: name -> (format, object name, bytes, reference rows, read options); the FASTQ is gzip, so its map tasks
#: write a blob (the seek windows) before the manifest exists; the text has tables only
_FASTQ = make_fastq(2500, seed=41)
_TEXT = make_text(4000, seed=42)
CASES: dict[str, tuple[str, str, bytes, list[tuple], dict[str, str]]] = {
    "fastq.gz": ("fastq", "reads.fastq.gz", gzip.compress(_FASTQ), fastq_reference(_FASTQ), {"gzipSpacing": "64k"}),
    "text": ("text", "lines.txt", _TEXT, [(line,) for line in _TEXT.decode().splitlines()], {"indexSpacing": "16k"}),
}


def _put(store: Store, case: str) -> tuple[str, str, list[tuple], dict[str, str]]:
    fmt, name, body, ref, opts = CASES[case]
    return fmt, store.put(name, body), ref, {**store.options, **opts}


def _rows(fmt: str, uri: str, opts: dict[str, str], n: int = 4) -> list[tuple]:
    return [tuple(r.values()) for s in CloudObject(fmt, uri, opts).slices(num_slices=n) for r in s.get().to_pylist()]


def _build(fmt: str, uri: str, opts: dict[str, str]) -> None:
    CloudObject(fmt, uri, opts).preprocess(force=True)


def _index(fmt: str, uri: str, opts: dict[str, str]) -> tuple[dict[str, Any], set[str], set[str]]:
    """The published manifest, the files it names, and every file in the index folder."""
    idx = IndexStore(None, storage_options(opts))
    manifest = idx.load_manifest(uri, fmt)
    assert manifest is not None
    location = idx.dir(uri, fmt)
    listed = set(get_storage(location, storage_options(opts)).list_folder(location))
    return manifest, store_mod._files(manifest), listed


def _assert_complete(fmt: str, uri: str, opts: dict[str, str], ref: list[tuple]) -> dict[str, Any]:
    manifest, named, listed = _index(fmt, uri, opts)
    assert named and named <= listed, f"the manifest names missing files: {sorted(named - listed)}"
    assert set(manifest["superseded"]) <= listed  # one generation back stays readable
    assert _rows(fmt, uri, opts) == ref
    return manifest


def _clean_up(fmt: str, uri: str, opts: dict[str, str], ref: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild with every unnamed file counted as old (no other build runs now) leaves exactly one index."""
    monkeypatch.setattr(store_mod, "LEFTOVER_GRACE_SECONDS", -1.0)
    _build(fmt, uri, opts)
    manifest, named, listed = _index(fmt, uri, opts)
    assert listed == named | set(manifest["superseded"]) | {store_mod.MANIFEST}
    assert _rows(fmt, uri, opts) == ref


# ------------------------------------------------------------------------------------------ two builds at once


def _build_meeting(fmt: str, uri: str, opts: dict[str, str], barrier: threading.Barrier,
                   runner: Any = run_tasks_locally) -> None:
    """A build that waits after its map tasks until the other build has run its own: both are surely in
    flight at once, with their blobs stored and their saves still to come."""
    met = []

    def meeting(f: Any, storage: Any, kind: str, tasks: list[Any], progress: Any = None, **kw: Any) -> list[Any]:
        out = runner(f, storage, kind, tasks, progress, **kw)
        if not met:
            met.append(barrier.wait(120))
        return out

    plan_build(uri, fmt, **opts).run(meeting, force=True)


def _at_once(*steps: Any) -> None:
    """Run the steps in threads released together; re-raise the first failure."""
    start = threading.Barrier(len(steps))
    errors: list[BaseException] = []

    def run(step: Any) -> None:
        start.wait()
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("case", list(CASES))
def test_two_builds_at_once_publish_one_complete_index(kind: str, case: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fmt, uri, ref, opts = _put(make_store(kind, tmp_path, request), case)
    _build(fmt, uri, opts)
    builds = set()
    for _ in range(3):
        both_mapped = functools.partial(_build_meeting, fmt, uri, opts, threading.Barrier(2))
        _at_once(both_mapped, both_mapped)
        builds.add(_assert_complete(fmt, uri, opts, ref)["build_id"])
    assert len(builds) == 3
    # the losers' files are left over (fresh, within the grace period); readers ignored them above
    _clean_up(fmt, uri, opts, ref, monkeypatch)


_CHILD = r"""
import json, os, signal, sys
import pyspark_dataplug.storage as S
from pyspark_dataplug import CloudObject
from pyspark_dataplug.index.build import run_tasks_locally
from pyspark_dataplug.index.build import plan_build

fmt, uri, opts, stage = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def runner(f, storage, kind, tasks, progress=None):
    out = run_tasks_locally(f, storage, kind, tasks, progress)
    if stage == "map":
        die()  # every map task ran (blobs are stored), nothing else was written
    return out

def patch(cls):
    write = cls.write
    def patched(self, target, data):
        write(self, target, data)
        if stage == "tables" and target.endswith(".parquet"):
            die()  # the first table is written; the other tables and the manifest are not
        if stage == "manifest-written" and target.endswith("/manifest.json"):
            die()  # published, before the previous generation's files are cleaned up
    cls.write = patched

patch(S.LocalStorage)
patch(S.S3Storage)
if stage == "manifest-unrenamed":  # killed between writing the temporary file and renaming it
    rename = os.replace
    def replace(src, dst):
        if str(dst).endswith("/manifest.json"):
            die()
        rename(src, dst)
    os.replace = replace
plan_build(uri, fmt, **opts).run(runner, force=True)
print("finished")
"""


def _child(fmt: str, uri: str, opts: dict[str, str], stage: str) -> subprocess.Popen:
    root = str(Path(pyspark_dataplug.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", _CHILD, fmt, uri, json.dumps(opts), stage], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_builds_in_two_processes(tmp_path: Path, request: pytest.FixtureRequest,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fmt, uri, ref, opts = _put(make_store("local", tmp_path, request), "fastq.gz")
    _build(fmt, uri, opts)
    children = [_child(fmt, uri, opts, "none") for _ in range(2)]
    for c in children:
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0 and "finished" in out, err
    _assert_complete(fmt, uri, opts, ref)
    _clean_up(fmt, uri, opts, ref, monkeypatch)


# ------------------------------------------------------------------------------------- a build killed at each stage


#: where the child build is killed: after its map tasks (blobs stored), after its first table, after the manifest
#: is published (before cleanup), and, locally, with the manifest written to its temporary file but not renamed
STAGES = [(stage, kind) for stage in ("map", "tables", "manifest-written") for kind in ("local", "s3")]
STAGES.append(("manifest-unrenamed", "local"))  # an S3 PUT has no such moment: it is atomic


@pytest.mark.parametrize("previous", [False, True], ids=["first-build", "rebuild"])
@pytest.mark.parametrize(("stage", "kind"), STAGES)
def test_build_killed_at_a_stage(kind: str, previous: bool, stage: str, tmp_path: Path,
                                 request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    fmt, uri, ref, opts = _put(make_store(kind, tmp_path, request), "fastq.gz")
    before = None
    if previous:
        _build(fmt, uri, opts)
        before = _assert_complete(fmt, uri, opts, ref)
    child = _child(fmt, uri, opts, stage)
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, (child.returncode, out, err)
    assert "finished" not in out
    idx = IndexStore(None, storage_options(opts))
    location = idx.dir(uri, fmt)
    listed = set(get_storage(location, storage_options(opts)).list_folder(location))
    if stage == "manifest-written":  # the new index is published and complete; cleanup never ran
        after = _assert_complete(fmt, uri, opts, ref)
        assert before is None or after["build_id"] != before["build_id"]
        assert before is None or store_mod._files(before) <= listed
    elif before is None:  # no index: a clear error, and the dead build's files are there, unnamed
        assert store_mod.MANIFEST not in listed and listed
        with pytest.raises(IndexMissingError, match="no fastq index"):
            _rows(fmt, uri, opts)
    else:  # the previous complete index, with the dead build's files beside it, ignored
        after = _assert_complete(fmt, uri, opts, ref)
        assert after["build_id"] == before["build_id"]
        assert listed - store_mod._files(before) - {store_mod.MANIFEST}
    if stage == "manifest-unrenamed":
        assert any(name.startswith(store_mod.MANIFEST + ".tmp-") for name in listed)
    _clean_up(fmt, uri, opts, ref, monkeypatch)


def test_fresh_leftovers_are_kept_old_ones_deleted(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The grace period: a concurrent build's fresh files survive a save; a dead build's old files do not."""
    fmt, uri, ref, opts = _put(make_store("local", tmp_path, request), "fastq.gz")
    _build(fmt, uri, opts)
    location = IndexStore(None, storage_options(opts)).dir(uri, fmt)
    fresh, old = Path(location, "windows-fresh00000.bin"), Path(location, "points-old000000000.parquet")
    fresh.write_bytes(b"in flight")
    old.write_bytes(b"dead")
    stamp = time.time() - store_mod.LEFTOVER_GRACE_SECONDS - 60
    os.utime(old, (stamp, stamp))
    tmp = Path(location, "manifest.json.tmp-1-2")  # an interrupted local write
    tmp.write_bytes(b"{")
    os.utime(tmp, (stamp, stamp))
    _build(fmt, uri, opts)
    assert fresh.exists() and not old.exists() and not tmp.exists()
    assert _rows(fmt, uri, opts) == ref


def test_manifest_names_cannot_reach_outside_the_index_folder() -> None:
    assert store_mod._files({"tables": {"a": "../../x.parquet", "b": "ok.parquet"},
                             "blobs": {"w": "/etc/passwd", "v": "manifest.json"}}) == {"ok.parquet"}
    assert store_mod._names("not a list") == set()


# ------------------------------------------------------------------------------------------ reads during builds


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_read_survives_one_rebuild_and_fails_clearly_after_two(kind: str, tmp_path: Path,
                                                               request: pytest.FixtureRequest) -> None:
    fmt, uri, ref, opts = _put(make_store(kind, tmp_path, request), "fastq.gz")
    _build(fmt, uri, opts)
    planned = CloudObject(fmt, uri, opts).slices(num_slices=4)  # slices name the windows blob of this build
    loaded = CloudObject(fmt, uri, opts)
    loaded.dataset()  # manifest loaded, tables not yet (they load on first planning)
    _build(fmt, uri, opts)
    assert [tuple(r.values()) for s in planned for r in s.get().to_pylist()] == ref
    _build(fmt, uri, opts)
    with pytest.raises(IndexMissingError, match=r"windows-\w+\.bin, named by the index manifest .* rebuilt at least"):
        for s in planned:
            s.get()
    with pytest.raises(IndexMissingError, match="rebuilt at least twice"):
        loaded.slices(num_slices=4)
    assert _rows(fmt, uri, opts) == ref


#: rebuilds one reader loop runs through
REBUILDS = 10


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("case", list(CASES))
def test_reads_while_rebuilding_are_exact_or_clear(kind: str, case: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    fmt, uri, ref, opts = _put(make_store(kind, tmp_path, request), case)
    _build(fmt, uri, opts)
    stop = threading.Event()
    reads, errors, wrong = [0], [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                rows = _rows(fmt, uri, opts, n=3)
            except DataplugError as e:  # only when a read spans two rebuilds; it must say why
                errors.append(e)
                continue
            reads[0] += 1
            if rows != ref:
                wrong.append(len(rows))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(REBUILDS):
            _build(fmt, uri, opts)
    finally:
        stop.set()
        t.join(120)
    assert not wrong, f"wrong or short rows: {wrong}"
    assert reads[0] >= 1
    assert all(".dataplug" in str(e) for e in errors), errors  # each names the index file that went away
    print(f"\n{kind} {case}: {reads[0]} exact reads, {len(errors)} clear errors during {REBUILDS} rebuilds")
    _assert_complete(fmt, uri, opts, ref)


# ------------------------------------------------------------------------------------------------ Spark runner


def test_spark_and_in_process_builds_at_once(spark: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from pyspark_dataplug.index.build import spark_runner

    fmt, uri, ref, opts = _put(make_store("s3", tmp_path, request), "fastq.gz")
    both_mapped = threading.Barrier(2)
    _at_once(functools.partial(_build_meeting, fmt, uri, opts, both_mapped),
             functools.partial(_build_meeting, fmt, uri, opts, both_mapped, spark_runner(spark)))
    _assert_complete(fmt, uri, opts, ref)
    rows = [tuple(r) for r in read_dataplug(spark, uri, {"format": fmt, **opts}).collect()]
    assert sorted(rows, key=repr) == sorted(ref, key=repr)
