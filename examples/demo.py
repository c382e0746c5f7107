"""The quick start: sample FASTQ, CSV and text in a local folder, indexed by the Spark job, read by Spark.

Run with ``make demo`` (it creates the virtualenv first). Needs no server: local paths are the embedded
default. Point the same calls at ``s3://`` URIs to read from object storage.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

DATA = Path(__file__).resolve().parent.parent / "demo-data"


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

    files = write_samples()
    spark = (SparkSession.builder.master("local[2]").appName("dataplug-demo")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    print("\n== 1. Build the indexes (one Spark job per format; reruns skip up-to-date indexes)")
    options = {"csv": {"header": "true", "inferSchema": "true"}}
    for fmt, path in files.items():
        # the samples are small: an index point every 128 KiB (default 1 MiB) lets them split 16 ways
        summary = pyspark_dataplug.build_index(spark, str(path), format=fmt, indexSpacing="128k",
                                               **options.get(fmt, {}))
        print("  ", summary)

    print("\n== 2. Read each through spark.read.format('dataplug') with several partition counts")
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

    print("== 3. Spark SQL over the same files")
    spark.sql(f"CREATE TEMPORARY VIEW reads USING dataplug OPTIONS (path '{files['fastq']}')")
    spark.sql("SELECT count(*) AS reads, avg(length(sequence)) AS mean_length FROM reads").show()
    spark.stop()


if __name__ == "__main__":
    main()
