"""GC content of a reference genome in 1 Mbp windows, read with the ``.fai`` that sits next to it.

    python examples/fasta_reference_spark.py s3://refs/GRCh38.fa --partitions 64
    python examples/fasta_reference_spark.py            # makes a small local reference (+ .fai) first

A reference that has its samtools ``.fai`` needs no dataplug build: the ``.fai`` is the index. Each row is
``sequenceChunkSize`` bases of one chromosome (1 Mbp by default), so a window query is a plain group-by.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def sample(path: Path, chromosomes: int = 3, bases: int = 2_500_000) -> str:
    """A FASTA with 60-base lines and the ``.fai`` ``samtools faidx`` would write for it."""
    rng = random.Random(2)
    fai = []
    with path.open("w") as f:
        for c in range(1, chromosomes + 1):
            header = f">chr{c} sample chromosome {c}\n"
            f.write(header)
            offset = f.tell()
            gc = 0.35 + 0.1 * c  # each chromosome its own GC content
            seq = "".join(rng.choices("GCAT", weights=[gc / 2, gc / 2, (1 - gc) / 2, (1 - gc) / 2], k=bases))
            f.write("\n".join(seq[i: i + 60] for i in range(0, bases, 60)) + "\n")
            fai.append(f"chr{c}\t{bases}\t{offset}\t60\t61\n")
    Path(str(path) + ".fai").write_text("".join(fai))
    return str(path)


def run(spark: Any, uri: str, partitions: int = 8, **options: Any) -> list[dict[str, Any]]:
    """GC fraction per chromosome and 1 Mbp window; no index build when the object has its ``.fai``."""
    from pyspark.sql import functions as F

    reader = spark.read.format("dataplug").option("format", "fasta").option("partitions", partitions)
    for k, v in options.items():
        reader = reader.option(k, v)
    df = reader.load(uri)
    upper = F.upper("sequence")
    gc = F.length(F.regexp_replace(upper, "[^GC]", "")) / F.length(F.regexp_replace(upper, "N", ""))
    windows = (df.select("id", (F.col("start") / 1_000_000).cast("int").alias("window_mbp"), gc.alias("gc"))
               .orderBy("id", "window_mbp").collect())
    result = [r.asDict() for r in windows]
    for r in result:
        print(f"{r['id']}\t{r['window_mbp']} Mbp\tGC {r['gc']:.3f}")
    return result


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", nargs="?", help="a FASTA with its .fai (local path or s3://); default: a sample")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    args = parser.parse_args()
    if args.uri:
        uri = args.uri
    else:
        Path("demo-data").mkdir(exist_ok=True)
        uri = sample(Path("demo-data") / "reference.fa")
    spark = SparkSession.builder.master("local[*]").appName("fasta-gc").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    options = {"endpointUrl": args.endpoint_url} if args.endpoint_url else {}
    run(spark, uri, args.partitions, **options)
    spark.stop()


if __name__ == "__main__":
    main()
