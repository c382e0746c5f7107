"""Under load, with faults: 2,000 small objects, and one object read as 200 partitions, through Spark over S3.

Both datasets are indexed by the Spark job and read through :class:`flaky_proxy.FlakyProxy` with a schedule
of every transient fault kind on every fifth request, and must come back exact (the reference reader's
records, each once). The times are printed (``pytest -s``) and quoted in the README; they are not asserted:
on moto, whose server handles one request at a time (~7 ms each), they measure the endpoint more than us.
"""

from __future__ import annotations

import gzip
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import BUCKET
from data import fastq_reference, make_fastq
from flaky_proxy import TRANSIENT, FlakyProxy, Schedule

OBJECTS = 2000
PARTITIONS = 200


def _upload(endpoint: str, items: dict[str, bytes]) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=16))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), items.items()))


def _read(spark: Any, path: str, endpoint: str, **options: str) -> list[tuple]:
    reader = spark.read.format("dataplug").option("format", "fastq").option("endpointUrl", endpoint)
    return [tuple(r) for r in reader.options(**options).load(path).collect()]


def test_two_thousand_small_objects_under_faults(spark: Any, s3_server: str) -> None:
    from pyspark_dataplug import build_index

    prefix = f"load-{uuid.uuid4().hex[:8]}"
    objects = {f"{prefix}/run{i:04d}.fastq": make_fastq(5, seed=10_000 + i) for i in range(OBJECTS)}
    _upload(s3_server, objects)
    want = Counter(r for data in objects.values() for r in fastq_reference(data))
    with FlakyProxy(s3_server) as proxy:
        proxy.slow_seconds = 0.02
        proxy.schedule = Schedule(list(TRANSIENT), every=5, on="any", cap=2)
        t0 = time.perf_counter()
        summary = build_index(spark, f"s3://{BUCKET}/{prefix}/", format="fastq", endpointUrl=proxy.endpoint)
        t1 = time.perf_counter()
        rows = _read(spark, f"s3://{BUCKET}/{prefix}/", proxy.endpoint)
        t2 = time.perf_counter()
        injected, requests = dict(proxy.injected), len(proxy.requests)
    assert len(summary.indexed) == OBJECTS
    assert len(rows) == sum(want.values()) and Counter(rows) == want  # none lost, none twice
    assert set(injected) == set(TRANSIENT)
    print(f"\n{OBJECTS} objects: build {t1 - t0:.1f} s, read {t2 - t1:.1f} s, {requests} requests, faults {injected}")


def test_two_hundred_partitions_over_one_object_under_faults(spark: Any, s3_server: str) -> None:
    from pyspark_dataplug import build_index

    data = make_fastq(40_000, seed=1701)
    path = f"load-{uuid.uuid4().hex[:8]}/big.fastq.gz"
    _upload(s3_server, {path: gzip.compress(data, compresslevel=6)})
    want = fastq_reference(data)
    uri = f"s3://{BUCKET}/{path}"
    with FlakyProxy(s3_server) as proxy:
        proxy.slow_seconds = 0.02
        proxy.schedule = Schedule(list(TRANSIENT), every=5, on="any", cap=2)
        t0 = time.perf_counter()
        build_index(spark, uri, format="fastq", endpointUrl=proxy.endpoint, gzipSpacing="64k")
        t1 = time.perf_counter()
        df = (spark.read.format("dataplug").option("format", "fastq").option("endpointUrl", proxy.endpoint)
              .option("partitions", str(PARTITIONS)).option("strategy", "records").option("partSize", "256k")
              .load(uri))
        from pyspark.sql.functions import spark_partition_id

        tagged = df.withColumn("pid", spark_partition_id()).collect()
        t2 = time.perf_counter()
        injected = dict(proxy.injected)
    rows = [tuple(r)[:-1] for r in tagged]
    assert rows == want  # in order: partition i holds the records before partition i + 1's
    assert len({r["pid"] for r in tagged}) == PARTITIONS
    assert set(injected) == set(TRANSIENT)
    print(f"\n{PARTITIONS} partitions over one {len(data) / 1e6:.0f} MB FASTQ: build {t1 - t0:.1f} s, "
          f"read {t2 - t1:.1f} s, faults {injected}")
