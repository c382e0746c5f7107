"""Benchmark: read a ~100 MB FASTQ object from an S3 endpoint through dataplug, counting every byte fetched.

Why this exists: dataplug's promise is that an indexed read fetches each byte of the object about once,
whatever the number of partitions, plus a small index -- never the whole object per task -- and that more
partitions buy parallelism without multiplying traffic. Wall time alone cannot show that, and the
package's own ``IO_STATS`` counters are per process (Spark's Python workers are other processes). So this
script puts a counting HTTP proxy in front of a real S3 server (moto, over HTTP on 127.0.0.1) and routes
all dataplug traffic -- index build and reads -- through it, then reports, per partition count, wall time
and the exact bytes of data-object and index GETs. It also checks the answers (read count, total bases)
against what it generated, so a fast wrong result cannot pass as a good number.

Self-contained and deterministic: the FASTQ file is generated from a fixed seed (and reused when it
already exists with the expected size), the S3 server and the proxy run in this process, and nothing but
127.0.0.1 is contacted. Absolute throughput is that of moto + a Python proxy sharing this process's GIL,
not of real S3; the byte counts are exact whatever the backend.

Run::

    .venv/bin/python benchmarks/s3_fastq_read.py [--size-mb 100] [--data bench-data/]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "s3_fastq_read.json"
BUCKET = "dataplug-bench"
SEED = 20240607
MIN_LEN, MAX_LEN = 50, 150
#: reads generated per write; bounds memory while keeping Python work per read tiny
GEN_CHUNK = 50_000
#: random bytes -> bases / Phred+33 qualities (Q2..Q41), via bytes.translate: no per-base Python work
BASES = bytes(b"ACGT"[i % 4] for i in range(256))
QUALS = bytes(33 + 2 + i % 40 for i in range(256))
T = TypeVar("T")


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class FastqPlan:
    """The reads to generate (their lengths), enough to know the file's size and contents' totals."""

    lengths: list[int]

    @property
    def reads(self) -> int:
        return len(self.lengths)

    @property
    def bases(self) -> int:
        return sum(self.lengths)

    @property
    def size(self) -> int:
        return sum(len(header(i, n)) + 2 * n + 4 for i, n in enumerate(self.lengths, 1))


def header(i: int, n: int) -> bytes:
    """Header line (with newline) of read ``i`` of length ``n``, SRA style."""
    return f"@SRR000001.{i} {i} length={n}\n".encode()


def plan_fastq(size_mb: float, seed: int = SEED) -> FastqPlan:
    """Read lengths until the file reaches ``size_mb`` MB (10**6 bytes); deterministic for a seed."""
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    lengths: list[int] = []
    total = 0
    while total < target:
        n = rng.randint(MIN_LEN, MAX_LEN)
        lengths.append(n)
        total += len(header(len(lengths), n)) + 2 * n + 4
    return FastqPlan(lengths)


def write_fastq(path: Path, plan: FastqPlan, seed: int = SEED) -> None:
    """Write the planned reads; bases and qualities come from seeded ``random.randbytes`` in big blocks."""
    rng = random.Random(seed + 1)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb", buffering=8 << 20) as f:
        for lo in range(0, plan.reads, GEN_CHUNK):
            lengths = plan.lengths[lo: lo + GEN_CHUNK]
            total = sum(lengths)
            seq = rng.randbytes(total).translate(BASES)
            qual = rng.randbytes(total).translate(QUALS)
            parts: list[bytes] = []
            pos = 0
            for i, n in enumerate(lengths, lo + 1):
                parts += (header(i, n), seq[pos: pos + n], b"\n+\n", qual[pos: pos + n], b"\n")
                pos += n
            f.write(b"".join(parts))
    os.replace(tmp, path)


def ensure_fastq(folder: Path, size_mb: float) -> tuple[Path, FastqPlan, float, bool]:
    """The benchmark file, generated unless it already exists with the planned size."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{size_mb:g}mb.fastq"
    t0 = time.perf_counter()
    plan = plan_fastq(size_mb)
    reused = path.exists() and path.stat().st_size == plan.size
    if not reused:
        write_fastq(path, plan)
    if path.stat().st_size != plan.size:
        raise AssertionError(f"{path}: wrote {path.stat().st_size} bytes, planned {plan.size}")
    return path, plan, time.perf_counter() - t0, reused


# --------------------------------------------------------------------------------------------- proxy

#: hop-by-hop headers that must not be forwarded
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "host"}


@dataclass(frozen=True)
class Request:
    """One proxied request and how many body bytes went each way."""

    method: str
    path: str
    range: str | None
    status: int
    request_bytes: int
    response_bytes: int

    @property
    def is_index(self) -> bool:
        """Index objects live under ``<object>.dataplug/<format>/``."""
        return ".dataplug/" in unquote(self.path)


@dataclass(frozen=True)
class Traffic:
    """Totals over the requests of one phase, data-object and index traffic apart."""

    requests: dict[str, int]
    statuses: dict[str, int]
    get_requests: int
    data_get_requests: int
    index_get_requests: int
    data_get_bytes: int
    index_get_bytes: int
    put_bytes: int

    @classmethod
    def of(cls, log: list[Request]) -> Traffic:
        gets = [r for r in log if r.method == "GET"]
        # A 404 on an index manifest is how a build learns there is no index yet; anything else failing
        # (5xx retried by dataplug, 412 stale, 416 range) is worth seeing.
        errors = [r for r in log if r.status >= 400 and not (r.status == 404 and r.is_index)]
        if errors:
            print(f"  warning: {len(errors)} request(s) failed, first: {errors[0]}", file=sys.stderr)
        return cls(
            requests=dict(Counter(r.method for r in log)),
            statuses={str(k): v for k, v in Counter(r.status for r in log).items()},
            get_requests=len(gets),
            data_get_requests=sum(not r.is_index for r in gets),
            index_get_requests=sum(r.is_index for r in gets),
            data_get_bytes=sum(r.response_bytes for r in gets if not r.is_index),
            index_get_bytes=sum(r.response_bytes for r in gets if r.is_index),
            put_bytes=sum(r.request_bytes for r in log if r.method == "PUT"),
        )


class CountingProxy:
    """A streaming HTTP proxy to ``upstream`` that logs every request with its body sizes.

    Unlike ``tests/flaky_proxy.py`` it injects no faults and streams bodies in 1 MiB chunks instead of
    buffering whole responses, so large ranged GETs are not delayed by a full copy in the proxy.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self._log: list[Request] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Host"] = f"{proxy.upstream.hostname}:{proxy.upstream.port}"
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=300)
                status, sent = 0, 0
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    status = resp.status
                    has_body = self.command != "HEAD" and status not in (204, 304)
                    # A chunked upstream body (no Content-Length) is buffered to learn its length.
                    buffered = resp.read() if has_body and resp.getheader("Content-Length") is None else None
                    self.send_response(status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and not (buffered is not None and k.lower() == "content-length"):
                            self.send_header(k, v)
                    if buffered is not None:
                        self.send_header("Content-Length", str(len(buffered)))
                    self.end_headers()
                    if buffered is not None:
                        self.wfile.write(buffered)
                        sent = len(buffered)
                    elif has_body:
                        while chunk := resp.read(1 << 20):
                            self.wfile.write(chunk)
                            sent += len(chunk)
                finally:
                    conn.close()
                    with proxy._lock:  # logged even when the client hangs up part-way
                        proxy._log.append(Request(self.command, self.path, self.headers.get("Range"), status,
                                                  length, sent))

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="counting-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def take(self) -> Traffic:
        """Traffic since the last call (and clear the log): one phase's worth."""
        with self._lock:
            log, self._log = self._log, []
        return Traffic.of(log)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------- phases


@dataclass
class Measurement:
    """One timed operation and the S3 traffic it caused."""

    partitions: int | None
    spark_partitions: int | None
    op: str
    seconds: float
    result: Any
    traffic: Traffic
    object_size: int

    @property
    def data_ratio(self) -> float:
        return self.traffic.data_get_bytes / self.object_size

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "data_ratio": round(self.data_ratio, 4)}


def timed(proxy: CountingProxy, fn: Callable[[], T]) -> tuple[T, float, Traffic]:
    """Run ``fn``; its wall time and the proxy traffic it caused (the log is cleared first)."""
    proxy.take()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, proxy.take()


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server over HTTP on 127.0.0.1 (a free port), in this process."""
    from moto.server import ThreadedMotoServer

    # verbose=False does not stop werkzeug's per-request access log on stderr
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def spark_session() -> SparkSession:
    """``local[2]``, quiet; workers run this interpreter (set before the JVM starts)."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("dataplug-bench-s3-fastq")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_with_spark(spark: SparkSession, proxy: CountingProxy, uri: str, n: int, size: int,
                    plan: FastqPlan) -> list[Measurement]:
    """Plan, ``count()`` and a full materialisation with ``partitions=n``; checks both answers."""
    def load() -> Any:
        df = spark.read.format("dataplug").option("endpointUrl", proxy.endpoint).option("partitions", n).load(uri)
        return df, df.rdd.getNumPartitions()

    (df, parts), secs, traffic = timed(proxy, load)
    out = [Measurement(n, parts, "plan", secs, None, traffic, size)]
    count, secs, traffic = timed(proxy, df.count)
    if count != plan.reads:
        raise AssertionError(f"partitions={n}: count() = {count}, generated {plan.reads} reads")
    out.append(Measurement(n, parts, "count", secs, count, traffic, size))
    row, secs, traffic = timed(proxy, lambda: df.selectExpr("sum(length(sequence)) AS bases",
                                                            "count(quality) AS q").collect()[0])
    if (row["bases"], row["q"]) != (plan.bases, plan.reads):
        raise AssertionError(f"partitions={n}: materialised {tuple(row)}, generated {plan.bases} bases in "
                             f"{plan.reads} reads")
    out.append(Measurement(n, parts, "materialise", secs, int(row["bases"]), traffic, size))
    return out


def read_agnostic(proxy: CountingProxy, uri: str, slices: int, size: int, plan: FastqPlan) -> Measurement:
    """The same count through the engine-agnostic API, in this process, slice after slice."""
    from pyspark_dataplug import CloudObject
    from pyspark_dataplug.formats.fastq import FASTQ, partition_reads_batches

    def run() -> tuple[int, int]:
        co = CloudObject.from_s3(FASTQ, uri, s3_config={"endpoint_url": proxy.endpoint})
        parts = co.partition(partition_reads_batches, num_batches=slices)
        return len(parts), sum(s.get().num_rows for s in parts)

    (n, count), secs, traffic = timed(proxy, run)
    if count != plan.reads:
        raise AssertionError(f"CloudObject, {slices} slices: {count} reads, generated {plan.reads}")
    return Measurement(slices, n, "cloudobject count", secs, count, traffic, size)


# --------------------------------------------------------------------------------------------- report


def table(build: dict[str, Any], rows: list[Measurement]) -> str:
    """The results as a markdown table (MB = 10**6 bytes, kB = 10**3 bytes)."""
    lines = [
        "| partitions | spark partitions | op | wall s | data GET MB | data / object | index GET kB | GETs |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
        f"| - | - | build_index | {build['seconds']:.2f} | {build['traffic']['data_get_bytes'] / 1e6:.1f} | "
        f"{build['traffic']['data_get_bytes'] / build['object_size']:.3f} | "
        f"{build['traffic']['index_get_bytes'] / 1e3:.1f} | {build['traffic']['get_requests']} |",
    ]
    for m in rows:
        t = m.traffic
        lines.append(f"| {m.partitions} | {m.spark_partitions} | {m.op} | {m.seconds:.2f} | "
                     f"{t.data_get_bytes / 1e6:.1f} | {m.data_ratio:.3f} | {t.index_get_bytes / 1e3:.1f} | "
                     f"{t.get_requests} |")
    return "\n".join(lines)


def code_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the files that differ from it (numbers of a dirty tree
    describe that tree, not the commit)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""

    digest = hashlib.sha256()
    for f in sorted((REPO / "pyspark_dataplug").rglob("*.py")):
        digest.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "pyspark_dataplug").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "dirty_package_files": dirty,
            "package_sha256": digest.hexdigest()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=100, help="FASTQ size in MB (10**6 bytes); default 100")
    parser.add_argument("--data", type=Path, default=REPO / "bench-data", help="folder of the generated FASTQ")
    parser.add_argument("--partitions", default="1,2,4,8,32", help="comma-separated partition counts")
    parser.add_argument("--slices", type=int, default=4, help="slices for the engine-agnostic read")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    partition_counts = [int(p) for p in args.partitions.split(",")]

    # Before Spark starts: its Python workers inherit this environment (credentials and interpreter).
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)

    code = code_state()
    load_start = os.getloadavg()
    if code["dirty_package_files"]:
        print(f"note: measuring an uncommitted tree; changed: {', '.join(code['dirty_package_files'])}")
    path, plan, gen_secs, reused = ensure_fastq(args.data, args.size_mb)
    size = plan.size
    print(f"data: {path} ({size / 1e6:.1f} MB, {plan.reads} reads, {plan.bases} bases; "
          f"{'reused' if reused else 'generated'} in {gen_secs:.1f} s)")

    import boto3

    import pyspark_dataplug

    with s3_server() as s3, CountingProxy(s3) as proxy:
        key = path.name
        uri = f"s3://{BUCKET}/{key}"
        t0 = time.perf_counter()
        client = boto3.client("s3", endpoint_url=s3)  # straight to moto: the upload is not counted
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        print(f"upload: {uri} in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        spark = spark_session()
        print(f"spark: {spark.version} local[2] started in {time.perf_counter() - t0:.1f} s")
        try:
            summary, secs, traffic = timed(proxy, lambda: pyspark_dataplug.build_index(
                spark, uri, format="fastq", endpointUrl=proxy.endpoint))
            if summary.records != plan.reads:
                raise AssertionError(f"index counts {summary.records} reads, generated {plan.reads}")
            build = {"seconds": secs, "summary_seconds": summary.seconds, "index_bytes": summary.index_bytes,
                     "records": summary.records, "object_size": size, "traffic": asdict(traffic)}
            print(f"build: {summary}")
            # Untimed: the first data source query and the first read job start Python workers (several
            # seconds) that would otherwise be charged to whichever partition count happens to run first.
            _, warmup_secs, _ = timed(proxy, lambda: spark.read.format("dataplug").option(
                "endpointUrl", proxy.endpoint).option("partitions", 2).load(uri).count())
            print(f"warm-up read (untimed): {warmup_secs:.1f} s")
            rows: list[Measurement] = []
            for n in partition_counts:
                rows += read_with_spark(spark, proxy, uri, n, size, plan)
                print(f"read: partitions={n} done")
            rows.append(read_agnostic(proxy, uri, args.slices, size, plan))
        finally:
            spark.stop()

    code["package_changed_during_run"] = code_state()["package_sha256"] != code["package_sha256"]
    if code["package_changed_during_run"]:
        print("warning: pyspark_dataplug/ changed while the benchmark ran; the numbers may mix two versions",
              file=sys.stderr)
    md = table(build, rows)
    print()
    print(md)
    results = {
        "benchmark": "s3_fastq_read",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {"python": platform.python_version(), "pyspark": spark.version,
                        "platform": platform.platform(), "cpus": os.cpu_count(), "master": "local[2]",
                        # other processes' load makes wall times noisy; byte counts are unaffected
                        "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "code": code,
        "data": {"path": str(path), "size": size, "reads": plan.reads, "bases": plan.bases, "seed": SEED,
                 "generated_seconds": round(gen_secs, 3), "reused": reused},
        "build": build,
        "warmup_read_seconds": round(warmup_secs, 3),
        "reads": [m.row() for m in rows],
        "table": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
