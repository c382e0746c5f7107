"""Every format through Spark over S3 with faults on every request: the index job and the read both survive.

Each format's SQL case (``sql_cases.py``: its answer computed by the field's reference reader) is uploaded to
moto and run through :class:`flaky_proxy.FlakyProxy` under one schedule that cycles through every transient
fault kind on every third request of any kind: listings, HEADs, the build's GETs and PUTs, the index loads of
planning and of the tasks, and the tasks' part GETs (small parts, several in flight). The answer must be the
reference's, exactly: a fault that cost a row, or a record read twice, changes a count or a sum.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET
from flaky_proxy import TRANSIENT, FlakyProxy, Schedule
from sql_cases import CASES, assert_rows

#: fault kind -> injected, over all formats (all survived: each test asserts its answer)
TALLY: Counter[str] = Counter()


def upload_tree(endpoint: str, root: Path, prefix: str) -> None:
    """Every file below ``root`` to ``prefix`` (a MeasurementSet is a folder, an imzML has its .ibd beside it)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    for f in sorted(root.rglob("*")):
        if f.is_file():
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{f.relative_to(root)}", Body=f.read_bytes())


@pytest.fixture(scope="module", autouse=True)
def _show_tally() -> Any:
    yield
    print("\nSpark over S3 under faults:", dict(sorted(TALLY.items())), "(all survived, rows lost 0, duplicated 0)")


@pytest.mark.parametrize("name", list(CASES))
def test_format_builds_and_reads_exactly_under_faults(spark: Any, s3_server: str, tmp_path: Path, name: str) -> None:
    from pyspark_dataplug import build_index

    local = CASES[name](tmp_path)
    prefix = f"faults-spark-{uuid.uuid4().hex[:8]}"
    upload_tree(s3_server, tmp_path, prefix)
    path = f"s3://{BUCKET}/{prefix}/{Path(local.path).relative_to(tmp_path)}"
    case = dataclasses.replace(local, path=path)
    with FlakyProxy(s3_server) as proxy:
        proxy.slow_seconds = 0.2
        proxy.schedule = Schedule(list(TRANSIENT), every=3, on="any", cap=2)
        s3 = {"endpointUrl": proxy.endpoint, "maxAttempts": "4"}
        summary = build_index(spark, case.path, format=case.format, **s3, **case.build)
        assert summary.indexed == [case.path]
        built = dict(proxy.injected)
        spark.sql(case.create_view({"partitions": "3", "partSize": "32k", "partsInFlight": "3", **s3}))
        assert_rows(case, spark.sql(case.sql).collect())
        injected = dict(proxy.injected)
    # the schedule met the build and the read, with every kind of fault
    assert sum(built.values()) >= 3 and sum(injected.values()) > sum(built.values()), (built, injected)
    assert set(injected) == set(TRANSIENT), injected
    TALLY.update(injected)


def _planned(spark: Any, store_uri: str, endpoint: str, **extra: str) -> Any:
    return (spark.read.format("dataplug").option("format", "fastq").option("endpointUrl", endpoint)
            .option("partitions", "3").options(**extra).load(store_uri))


@pytest.fixture
def indexed_fastq(s3_server: str) -> tuple[str, bytes]:
    import gzip

    from data import make_fastq

    from pyspark_dataplug import CloudObject

    data = make_fastq(1500, seed=131)
    uri = f"s3://{BUCKET}/faults-spark-{uuid.uuid4().hex[:8]}/run.fastq.gz"
    _put(s3_server, uri, gzip.compress(data))
    CloudObject("fastq", uri, {"endpointUrl": s3_server, "gzipSpacing": "64k"}).preprocess()
    return uri, data


def _put(endpoint: str, uri: str, body: bytes | None) -> None:
    import boto3

    bucket, key = uri[len("s3://"):].split("/", 1)
    client = boto3.client("s3", endpoint_url=endpoint)
    if body is None:
        client.delete_object(Bucket=bucket, Key=key)
    else:
        client.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.mark.parametrize("change", ["overwritten", "deleted"])
def test_object_changed_after_planning_fails_the_job_naming_it(spark: Any, s3_server: str, indexed_fastq: tuple,
                                                              change: str) -> None:
    import gzip

    uri, data = indexed_fastq
    df = _planned(spark, uri, s3_server)
    assert df.columns  # resolved: the index was read and checked against the object as it was
    _put(s3_server, uri, None if change == "deleted" else gzip.compress(data[: len(data) // 3]))
    # whether Spark plans the partitions again at the action or not, the error names the object and the cause
    want = r"changed since" if change == "overwritten" else r"(not found|matches no object)"
    with pytest.raises(Exception, match=r"(?s)run\.fastq\.gz.*" + want):
        df.collect()


def test_denied_object_and_endless_throttling_fail_the_job_in_bounded_time(spark: Any, s3_server: str,
                                                                          indexed_fastq: tuple) -> None:
    import time

    uri, _ = indexed_fastq
    with FlakyProxy(s3_server) as proxy:
        df = _planned(spark, uri, proxy.endpoint, maxAttempts="3")
        assert df.columns
        proxy.deny = {r"/run\.fastq\.gz$"}
        with pytest.raises(Exception, match=r"(?s)run\.fastq\.gz.*: access denied"):
            df.collect()
        proxy.deny = set()
        proxy.schedule = Schedule(["slowdown"], every=1, on="data-get", cap=10**9)
        t0 = time.perf_counter()
        # a new DataFrame: Spark 4 keeps a query's failed planning and raises it again
        df = _planned(spark, uri, proxy.endpoint, maxAttempts="3")
        with pytest.raises(Exception, match=r"(?s)run\.fastq\.gz \[\d+, \d+\): SlowDown after 3 attempt"):
            df.collect()
        took = time.perf_counter() - t0
    # Spark gives a failed task no second try in local mode: three attempts per request, a bounded backoff
    assert took < 30, took
