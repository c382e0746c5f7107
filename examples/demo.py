"""The first five minutes: one ``.fastq.gz`` read by many Spark tasks, then FASTQ, CSV and text through the index.

Run with ``make demo`` (it creates the virtualenv first). Needs no server: local paths are the embedded
default. Point the same calls at ``s3://`` URIs to read from object storage.

Step 1 is the reason this project exists: Spark reads a gzip object as one task whatever its size, and
rewriting petabytes of ``.fastq.gz`` into Parquet is not an option. One Spark job indexes the object (seek
points every 8 MiB of its uncompressed bytes, tied to the reads after them); reads then cut it into exact
slices that run as separate tasks. The demo prints both reads side by side: tasks, seconds and record counts.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

DATA = Path(__file__).resolve().parent.parent / "demo-data"
#: 250,000 reads of 150 bases: 82 MB of FASTQ, ~26 MB gzipped -- ten seek points at the default 8 MiB spacing
GZ_READS = 250_000
READ_LENGTH = 150


def write_fastq_gz(path: Path, reads: int = GZ_READS, length: int = READ_LENGTH, seed: int = 42) -> Path:
    """A gzip FASTQ of fixed-length reads, written in about a second with numpy (kept if already there).

    Every record has the same width, so the whole file is one ``(reads, width)`` byte matrix. Qualities drift
    along a read as in a sequencer run. ``isal`` (a dependency) writes the same gzip format as ``gzip -2``,
    several times faster than Python's zlib.
    """
    import numpy as np
    from isal import igzip

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    header = "".join(f"@DEMO.{i:08d} length={length}\n" for i in range(reads)).encode()
    heads = np.frombuffer(header, np.uint8).reshape(reads, -1)
    bases = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (reads, length), dtype=np.uint8)]
    steps = rng.integers(-2, 3, (reads, length), dtype=np.int8).cumsum(axis=1, dtype=np.int16) // 4
    quals = (np.clip(35 + steps, 2, 40) + 33).astype(np.uint8)  # Phred+33: 'C'..'I' mostly
    col = np.full((reads, 1), ord("\n"), np.uint8)
    plus = np.tile(np.frombuffer(b"+\n", np.uint8), (reads, 1))
    records = np.concatenate([heads, bases, col, plus, quals, col], axis=1)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(igzip.compress(records.tobytes(), compresslevel=2))
    tmp.replace(path)
    return path


def _timed_count(df: Any, runs: int) -> tuple[int, float]:
    """Rows of ``df`` and the best of ``runs`` timed counts, after one untimed count that starts the workers."""
    rows = df.count()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        if df.count() != rows:
            raise AssertionError("two counts of one file differ")
        best = min(best, time.perf_counter() - t)
    return rows, best


def gzip_split(spark: Any, path: Path, partitions: int = 8, runs: int = 2, **build: Any) -> dict[str, Any]:
    """Index ``path`` with the Spark job, then count its reads with ``spark.read.text`` and with dataplug.

    ``spark.read.text`` gives one line per row (4 per read) from one task: a gzip stream has no place to
    start but its beginning. dataplug reads ``partitions`` slices, each inflating from its own seek point.
    """
    import pyspark_dataplug

    t = time.perf_counter()
    summary = pyspark_dataplug.build_index(spark, str(path), format="fastq", **build)
    build_s = time.perf_counter() - t
    text = spark.read.text(str(path))
    lines, text_s = _timed_count(text, runs)
    plug = spark.read.format("dataplug").option("partitions", partitions).load(str(path))
    reads, plug_s = _timed_count(plug, runs)
    return {"summary": summary, "build_seconds": build_s, "gz_bytes": path.stat().st_size,
            "text_tasks": text.rdd.getNumPartitions(), "text_lines": lines, "text_seconds": text_s,
            "dataplug_tasks": plug.rdd.getNumPartitions(), "reads": reads, "dataplug_seconds": plug_s}


def show_split(r: dict[str, Any], width: int = 48) -> None:
    """The two reads as bars: one task across the whole object, or one per slice."""
    n, room = r["dataplug_tasks"], width - r["dataplug_tasks"] + 1
    bar = "|".join("=" * (room * (i + 1) // n - room * i // n) for i in range(n))
    print(f"   {r['gz_bytes'] / 1e6:.1f} MB .fastq.gz; index built in {r['build_seconds']:.1f} s: {r['summary']}")
    print(f"   {'spark.read.text':28s}[{'=' * width}] {r['text_tasks']:2d} task(s) {r['text_seconds']:6.2f} s  "
          f"{r['text_lines']:,} lines = {r['text_lines'] // 4:,} reads")
    print(f"   {'spark.read.format(dataplug)':28s}[{bar}] {n:2d} task(s) {r['dataplug_seconds']:6.2f} s  "
          f"{r['reads']:,} reads")


def write_samples() -> dict[str, Path]:
    """Deterministic samples: ~20 MB of FASTQ, a CSV with quoted newlines, a text log."""
    DATA.mkdir(exist_ok=True)
    rng = random.Random(42)
    files = {"fastq": DATA / "sample_1.fastq", "csv": DATA / "stations.csv", "text": DATA / "app.log"}
    if not files["fastq"].exists():
        with files["fastq"].open("w") as f:
            for i in range(100_000):
                n = rng.randint(50, 150)
                seq = "".join(rng.choices("ACGT", k=n))
                qual = "".join(rng.choices("!#+@ABCDEFGHIJ", k=n))
                f.write(f"@SRR000001.{i} {i} length={n}\n{seq}\n+\n{qual}\n")
    if not files["csv"].exists():
        with files["csv"].open("w") as f:
            f.write("station,lat,lon,elevation,active,remark\n")
            for i in range(20_000):
                remark = rng.choice(["", "ok", '"moved, twice"', '"line one\nline two"'])
                f.write(f"ST{i:05d},{rng.uniform(-90, 90):.4f},{rng.uniform(-180, 180):.4f},"
                        f"{rng.randint(0, 4000)},{rng.choice(['true', 'false'])},{remark}\n")
    if not files["text"].exists():
        with files["text"].open("w") as f:
            for i in range(200_000):
                f.write(f"2026-11-26T12:{i // 6000 % 60:02d}:{i // 100 % 60:02d} level={rng.choice(['INFO', 'WARN'])} "
                        f"request={i} latency_ms={rng.randint(1, 900)}\n")
    return files


def main() -> None:
    from pyspark.sql import SparkSession

    import pyspark_dataplug

    spark = (SparkSession.builder.master("local[2]").appName("dataplug-demo")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    print("\n== 1. One .fastq.gz: Spark's one task, or dataplug's slices (local[2]; best of 2 counts each)")
    gz_path = write_fastq_gz(DATA / "reads_1.fastq.gz")
    result = gzip_split(spark, gz_path, partitions=8)
    show_split(result)
    if result["reads"] * 4 != result["text_lines"]:
        raise AssertionError(f"{result['reads']} reads but {result['text_lines']} lines")
    print("   The same reads, in 8 tasks instead of 1. Here the 8 take turns on 2 cores, each paying a Python data")
    print("   source's fixed costs (a worker, rows moved into the JVM); on a cluster each slice gets a core of its")
    print("   own, while Spark's reader gives a .gz one core whatever the cluster's size.")

    files = write_samples()
    print("\n== 2. Build the indexes (one Spark job per format; reruns skip up-to-date indexes)")
    options = {"csv": {"header": "true", "inferSchema": "true"}}
    for fmt, path in files.items():
        # the samples are small: an index point every 128 KiB (default 1 MiB) lets them split 16 ways
        summary = pyspark_dataplug.build_index(spark, str(path), format=fmt, indexSpacing="128k",
                                               **options.get(fmt, {}))
        print("  ", summary)

    print("\n== 3. Read each through spark.read.format('dataplug') with several partition counts")
    for fmt, path in files.items():
        for n in (1, 4, 16):
            t = time.perf_counter()
            reader = spark.read.format("dataplug").option("partitions", n)
            for k, v in options.get(fmt, {}).items():
                reader = reader.option(k, v)
            df = reader.load(str(path))
            rows = df.count()
            print(f"   {fmt:5s} partitions={n:2d}: {df.rdd.getNumPartitions():2d} Spark partitions, {rows:7d} rows "
                  f"in {time.perf_counter() - t:.2f} s")
        df.show(3, truncate=60)

    print("== 4. Spark SQL over the .fastq.gz")
    spark.sql(f"CREATE TEMPORARY VIEW reads USING dataplug OPTIONS (path '{gz_path}')")
    spark.sql("SELECT count(*) AS reads, avg(length(sequence)) AS mean_length, "
              "avg(1 - length(translate(sequence, 'GC', '')) / length(sequence)) AS gc FROM reads").show()
    spark.stop()


if __name__ == "__main__":
    main()
