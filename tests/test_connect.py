"""Spark Connect: the index job, reads of every format and SQL over them through a local Connect server.

``SparkSession.builder.remote("local[2]")`` starts a Connect server inside a classic JVM session of the same
process and puts all of PySpark in Connect mode, so it cannot live beside the tests' classic session: one
subprocess (``connect_job.py``) runs every format through one Connect session and writes Arrow files, and the
tests here compare them with the classic reader's rows for the same files (read with the indexes the Connect
session built) and with the SQL answers of ``sql_cases.py`` (with filter pushdown on: ``test_sql_formats.py``
runs the same queries on a classic session with it off). ``SPARK_TESTING`` makes the server take a free
port (PySpark's own switch for that) instead of 15002, which another process on the machine may hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import make_store, read_dataplug
from sql_cases import CASES, SqlCase, assert_rows
from test_vcf import damaged_vcf

from pyspark_dataplug.index.build import plan_build, run_tasks_locally

JOB = Path(__file__).with_name("connect_job.py")


class ConnectRun:
    def __init__(self, cases: dict[str, SqlCase], out: Path, result: dict[str, Any], s3: dict[str, Any],
                 chr2: list[int], seconds: float) -> None:
        self.cases, self.out, self.result, self.s3, self.seconds = cases, out, result, s3, seconds
        self.chr2 = chr2  # starts of the damaged VCF's chr2 records, as pysam reads them

    def table(self, name: str, kind: str) -> pa.Table:
        return pa.ipc.open_file(str(self.out / f"{name}.{kind}.arrow")).read_all()


@pytest.fixture(scope="module")
def connect_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> ConnectRun:
    root = tmp_path_factory.mktemp("connect")
    cases = {name: make(root) for name, make in CASES.items()}
    store = make_store("s3", root, request)
    s3_path = store.put("connect/run.fastq.gz", Path(cases["fastq"].path).read_bytes())
    specs = [{"name": c.name, "path": c.path, "format": c.format, "build": c.build, "view": c.view,
              "sql": c.sql, "view_sql": c.create_view({"partitions": "3"})} for c in cases.values()]
    specs.append({"name": "fastq_s3", "path": s3_path, "format": "fastq", "build": cases["fastq"].build,
                  "view": {}, "options": store.options})
    damaged = root / "damaged.vcf"
    chr2 = damaged_vcf(damaged, lambda p: plan_build(p, "vcf", indexSpacing="8k").run(run_tasks_locally))
    spec = root / "spec.json"
    spec.write_text(json.dumps({"cases": specs, "pruning": {"path": str(damaged), "where": "contigName = 'chr2'"}}))
    out = root / "out"
    out.mkdir()
    # a fresh PySpark: never the gateway of this process's classic session, nor a Connect mode set around it
    skip = ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED",
            "SPARK_LOCAL_REMOTE", "SPARK_API_MODE")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(PYSPARK_PYTHON=sys.executable, SPARK_TESTING="1")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(JOB), str(spec), str(out)], env=env, capture_output=True, text=True,
                          timeout=900)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        pytest.fail(f"connect_job.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    result = json.loads((out / "result.json").read_text())
    return ConnectRun(cases, out, result, {"path": s3_path, "options": store.options}, sorted(k[1] for k in chr2),
                      seconds)


def test_a_connect_session_whose_workers_import_this_package(connect_run: ConnectRun) -> None:
    import pyspark_dataplug

    r = connect_run.result
    assert r["session"] == "pyspark.sql.connect.session.SparkSession"
    # the Connect server's Python workers import the same package as this process (a worktree, or the install)
    assert r["driver_file"] == r["worker_file"] == pyspark_dataplug.__file__
    print(f"Connect job: {connect_run.seconds:.1f} s in all, server start {r['seconds']['start']:.1f} s; per case:",
          {k: {s: round(v, 1) for s, v in c["seconds"].items()} for k, c in r["cases"].items()})


def test_build_index_through_connect(connect_run: ConnectRun) -> None:
    for name, c in connect_run.result["cases"].items():
        path = connect_run.s3["path"] if name == "fastq_s3" else connect_run.cases[name].path
        assert c["indexed"] == [path], name
        assert c["records"] > 0, name
    for case in connect_run.cases.values():  # sidecar indexes, written by the Connect session's job
        manifests = list(Path(case.path + ".dataplug").rglob("manifest.json"))
        assert len(manifests) == 1, case.name


@pytest.mark.parametrize("name", list(CASES))
def test_rows_equal_the_classic_reader(spark: Any, connect_run: ConnectRun, name: str) -> None:
    case = connect_run.cases[name]
    got = connect_run.table(name, "read")
    want = read_dataplug(spark, case.path, {"format": case.format, "partitions": "3", **case.view}).toArrow()
    assert got.num_rows == want.num_rows > 0
    assert got.schema.names == want.schema.names
    assert got.to_pylist() == want.to_pylist()


def test_s3_through_connect(spark: Any, connect_run: ConnectRun) -> None:
    got = connect_run.table("fastq_s3", "read")
    local = connect_run.cases["fastq"].path
    want = read_dataplug(spark, local, {"format": "fastq", "partitions": "3"}).toArrow()
    assert got.num_rows == want.num_rows > 0
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize("name", list(CASES))
def test_sql_through_connect(connect_run: ConnectRun, name: str) -> None:
    table = connect_run.table(name, "sql")
    assert_rows(connect_run.cases[name], [tuple(r.values()) for r in table.to_pylist()])


def test_register_on_a_connect_session(connect_run: ConnectRun) -> None:
    """``register(spark)`` works on Connect and its ``spark.dataplug.*`` defaults reach the reader."""
    reg = connect_run.result["registered"]
    first = connect_run.cases[next(iter(CASES))]
    assert reg["partitions"] == 5
    assert reg["rows"] == connect_run.table(first.name, "read").num_rows


def test_pushed_filters_prune_on_the_connect_server(connect_run: ConnectRun) -> None:
    """A chr2 query with pushdown on never reads chr1's damaged bytes; with it off the same query meets them."""
    pruning = connect_run.result["pruning"]
    assert sorted(pruning["on"]) == connect_run.chr2 and connect_run.chr2
    assert "damaged.vcf at byte" in pruning["off"]
