"""Preprocess time and bytes fetched against the original Dataplug, on the file of issue 10's measurement.

The original (CLOUDLAB-URV/dataplug) was measured once in this project's environment on a 200 MB FASTQ
(99 MB as gzip -6) behind the same local moto endpoint with a 2-process pool: preprocess 0.82 s, 2 GETs,
98.7 MB fetched, index 0.31 % of the ``.gz``; slices evaluated at 181 MB/s. It cannot be installed here
any more (its gzip indexing shells out to a ``gztool`` binary we do not ship), so those figures are the fixed
reference; this script measures our side on an equivalent file: the benchmark's own seeded FASTQ cut to
200 MB and compressed with gzip -6, put in moto's S3 on 127.0.0.1 and indexed through boto3 as in
production (``CloudObject.preprocess``: in this process; a ``.gz`` build is one task whatever the pool).
It reports build seconds, GETs and bytes fetched while building, index bytes / compressed size, and bytes
fetched / object size for 8, 64 and 200 slices by Dataplug's ``partition_reads_batches`` (``records``),
with the default spacing and with ``gzipSpacing=512k``; then the time to evaluate all 8 slices.

Run: ``python benchmarks/vs_dataplug.py [--size-mb 200] [--runs 3]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

#: the original Dataplug on the 200 MB FASTQ / 99 MB .gz (issue 10, measured in this environment)
ORIGINAL = {"preprocess_s": 0.82, "gets": 2, "fetched_mb": 98.7, "index_pct": 0.31, "slices_mbps": 181}


def make_file(size_mb: int) -> Path:
    from run import DATA, prepare_data

    path = DATA / f"vs-dataplug-{size_mb}mb.fastq.gz"
    if not path.exists():
        src = prepare_data(max(300, size_mb), ["gz"]).fastq
        with open(src, "rb") as f:
            data = f.read(size_mb * 1_000_000)
        data = data[: data.rfind(b"\n@") + 1]  # whole records only
        path.write_bytes(gzip.compress(data, 6))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from pyspark_dataplug import CloudObject
    from pyspark_dataplug.formats.fastq import FASTQGZip, partition_reads_batches
    from pyspark_dataplug.storage import IO_STATS

    path = make_file(args.size_mb)
    size = path.stat().st_size
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="genomics")
        s3.upload_file(str(path), "genomics", path.name)
        uri = f"s3://genomics/{path.name}"
        rows = []
        for spacing in (None, "512k"):
            opts = {"endpointUrl": endpoint, **({"gzipSpacing": spacing} if spacing else {})}
            times, gets, fetched = [], 0, 0
            for _ in range(args.runs):
                co = CloudObject.from_s3(FASTQGZip, uri, **opts)
                IO_STATS.reset()
                t = time.perf_counter()
                co.preprocess(force=True)
                times.append(time.perf_counter() - t)
                gets = sum(n for u, n in IO_STATS.read_calls.items() if u == uri)
                fetched = sum(n for u, n in IO_STATS.bytes_read.items() if u == uri)
            index_bytes = sum(o["Size"] for o in s3.list_objects_v2(Bucket="genomics", Prefix=path.name + ".dataplug/")
                              .get("Contents", []))
            row = {"spacing": spacing or "default", "preprocess_s": round(statistics.median(times), 2),
                   "gets": gets, "fetched_mb": round(fetched / 1e6, 1),
                   "index_pct": round(100 * index_bytes / size, 3)}
            for n in (8, 64, 200):
                slices = co.partition(partition_reads_batches, num_batches=n)
                row[f"fetched_per_object_{n}"] = round(sum(s.nbytes for s in slices) / size, 3)
            slices = co.partition(partition_reads_batches, num_batches=8)
            usize = int(co.dataset().indexes[0].manifest["uncompressed_size"])
            t = time.perf_counter()
            for s in slices:  # one after the other, in this process: uncompressed MB per second of one core
                s.get()
            row["slices_mbps"] = round(usize / 1e6 / (time.perf_counter() - t))
            rows.append(row)
            print(json.dumps(row))
    finally:
        server.stop()
    print(f"\n{path.name}: {size / 1e6:.1f} MB compressed; the original Dataplug (fixed reference): "
          f"{json.dumps(ORIGINAL)}")
    print("| | preprocess s | GETs | MB fetched | index % | fetched/object 8 / 64 / 200 slices | slices MB/s |")
    print("|---|---:|---:|---:|---:|---|---:|")
    print(f"| original Dataplug | {ORIGINAL['preprocess_s']} | {ORIGINAL['gets']} | {ORIGINAL['fetched_mb']} | "
          f"{ORIGINAL['index_pct']} | | {ORIGINAL['slices_mbps']} |")
    for r in rows:
        print(f"| dataplug, gzipSpacing {r['spacing']} | {r['preprocess_s']} | {r['gets']} | {r['fetched_mb']} | "
              f"{r['index_pct']} | {r['fetched_per_object_8']} / {r['fetched_per_object_64']} / "
              f"{r['fetched_per_object_200']} | {r['slices_mbps']} |")


if __name__ == "__main__":
    main()
