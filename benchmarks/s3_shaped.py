"""One slice through an S3 that behaves like S3 from a cluster, against the same slice from local disk.

A shaping proxy (tests/flaky_proxy.py) in front of moto's server on 127.0.0.1 adds a first-byte latency to
every response and caps each connection's bandwidth. Defaults: 30 ms and 80 MB/s per connection -- AWS's
performance guidelines describe S3 as a large distributed system reached over many connections, with
first-byte latencies of tens of milliseconds (100-200 ms for small objects is the figure usually quoted) and
byte-range fetches of 8-16 MB in parallel; a single connection is commonly measured at 50-100 MB/s.

The slice is a whole FASTQ object (one slice, ``--size-mb``), read in this process through the slice API
three ways: local path; S3 with one part in flight (one GET at a time); S3 with ``partsInFlight`` parts.
Prints a Markdown table. Usage::

    python benchmarks/s3_shaped.py [--size-mb 128] [--latency-ms 30] [--mbps 80] [--in-flight 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=128)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--mbps", type=float, default=80.0, help="MB/s per connection")
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--part", default="8m")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import boto3
    from data import make_fastq
    from flaky_proxy import FlakyProxy
    from s3_fastq_read import s3_server

    from pyspark_dataplug import CloudObject

    work = Path(tempfile.mkdtemp(prefix="dataplug-shaped-"))
    chunk = make_fastq(20_000, seed=5)
    reps = max(1, args.size_mb * 10**6 // len(chunk))
    local = work / "slice.fastq"
    with open(local, "wb") as f:
        for _ in range(reps):
            f.write(chunk)
    size = local.stat().st_size
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="bench")
        s3.upload_file(str(local), "bench", "slice.fastq")
        uri = "s3://bench/slice.fastq"
        CloudObject("fastq", str(local)).preprocess()
        CloudObject("fastq", uri, {"endpointUrl": endpoint}).preprocess()

        def timed(path: str, options: dict) -> float:
            s = CloudObject("fastq", path, options).slices(num_slices=1)[0]
            t0 = time.perf_counter()
            rows = sum(b.num_rows for b in s.batches())
            dt = time.perf_counter() - t0
            assert rows == reps * 20_000, rows
            return dt

        results: dict[str, list[float]] = {"local disk": [], "S3, 1 part in flight": [],
                                           f"S3, {args.in_flight} parts in flight": []}
        with FlakyProxy(endpoint) as proxy:
            proxy.latency = args.latency_ms / 1000
            proxy.bandwidth = args.mbps * 1e6
            opts = {"endpointUrl": proxy.endpoint, "partSize": args.part}
            for _ in range(args.runs):  # interleaved, so drift hits every competitor alike
                results["local disk"].append(timed(str(local), {}))
                results["S3, 1 part in flight"].append(timed(uri, {**opts, "partsInFlight": "1"}))
                results[f"S3, {args.in_flight} parts in flight"].append(
                    timed(uri, {**opts, "partsInFlight": str(args.in_flight)}))
    base = statistics.median(results["local disk"])
    print(f"\n### One {size / 1e6:.0f} MB FASTQ slice: local disk vs S3 shaped to {args.latency_ms:.0f} ms first byte, "
          f"{args.mbps:.0f} MB/s per connection (parts of {args.part})\n")
    print("| read | median s | MB/s | time / local |")
    print("|---|---:|---:|---:|")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"| {name} | {med:.2f} | {size / med / 1e6:.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
