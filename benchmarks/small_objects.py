"""Many small objects through an S3 with first-byte latency: slices read one after the other, then fetched ahead.

A task of many small slices waits for each object's first byte; ``slices.prefetched`` (what the Spark reader
uses) keeps the next ``partsInFlight`` small slices in flight while one decodes. The shaping proxy
(tests/flaky_proxy.py) in front of moto adds ``--latency-ms`` to every response. Reads run in this process,
partition by partition as Spark tasks would. Usage::

    python benchmarks/small_objects.py [--objects 200] [--latency-ms 30] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()

    import boto3
    from data import make_fastq
    from flaky_proxy import FlakyProxy
    from s3_fastq_read import s3_server

    from pyspark_dataplug.index.build import plan_build, run_tasks_locally
    from pyspark_dataplug.plan import open_dataset
    from pyspark_dataplug.slices import prefetched

    with s3_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.put_object(Bucket="bench", Key=f"many/o{i:05d}.fastq",
                                                      Body=make_fastq(5, seed=i)), range(args.objects)))
        plan_build("s3://bench/many/", "fastq", endpointUrl=endpoint).run(run_tasks_locally)
        rows: dict[str, list[float]] = {"one after the other": [], "fetched ahead": []}
        with FlakyProxy(endpoint) as proxy:
            proxy.latency = args.latency_ms / 1000
            parts = open_dataset({"path": "s3://bench/many/", "format": "fastq",
                                  "endpointUrl": proxy.endpoint}).plan()
            for _ in range(args.runs):
                t0 = time.perf_counter()
                n1 = sum(b.num_rows for part in parts for s in part for b in s.batches())
                rows["one after the other"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                n2 = sum(b.num_rows for part in parts for s, r in prefetched(part) for b in s.batches(r))
                rows["fetched ahead"].append(time.perf_counter() - t0)
                assert n1 == n2 == 5 * args.objects
    print(f"{args.objects} small FASTQ objects, {len(parts)} partitions, {args.latency_ms:.0f} ms to the first byte")
    print("| read | seconds (min of runs) |\n|---|---:|")
    for name, times in rows.items():
        print(f"| {name} | {min(times):.2f} |")


if __name__ == "__main__":
    main()
