"""Allele frequencies in one region of a cohort VCF: index it once, then read only the region's bytes.

    python examples/vcf_region_spark.py s3://cohort/calls.vcf.gz chr2:1000000-2000000
    python examples/vcf_region_spark.py                  # makes a small local VCF first

The ``region`` option reads only the index points whose variants can overlap the region and returns
exactly the overlapping variants (as ``tabix``); rows have Glow's schema, so Glow-style queries carry over.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def sample(path: Path, per_contig: int = 3000, samples: int = 20) -> str:
    rng = random.Random(3)
    lines = ["##fileformat=VCFv4.2",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(samples))]
    for contig in ("chr1", "chr2", "chr3"):
        pos = 0
        for _ in range(per_contig):
            pos += rng.randint(100, 1500)
            af = rng.random()
            gts = "\t".join(f"{int(rng.random() < af)}/{int(rng.random() < af)}:{rng.randint(5, 60)}"
                            for _ in range(samples))
            lines.append(f"{contig}\t{pos}\t.\tA\tG\t50\tPASS\t.\tGT:DP\t{gts}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(spark: Any, uri: str, region: str, **options: Any) -> dict[str, Any]:
    """Variants in ``region`` and their mean alternate-allele frequency over the called genotypes."""
    from pyspark.sql import functions as F

    import pyspark_dataplug

    print(pyspark_dataplug.build_index(spark, uri, format="vcf", **options))
    reader = spark.read.format("dataplug").option("format", "vcf").option("region", region)
    for k, v in options.items():
        reader = reader.option(k, v)
    df = reader.load(uri)
    calls = F.flatten(F.transform("genotypes", lambda g: g["calls"]))
    called = F.filter(calls, lambda c: c >= 0)
    per_variant = df.select("contigName", "start", (F.aggregate(called, F.lit(0), lambda a, c: a + c)
                                                   / F.size(called)).alias("af"))
    row = per_variant.agg(F.count("*").alias("variants"), F.avg("af").alias("mean_af"),
                          F.min("start").alias("first_start"), F.max("start").alias("last_start")).collect()[0]
    result = row.asDict()
    print(result)
    return result


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", nargs="?", help="a .vcf / .vcf.gz (local path or s3://); default: a sample")
    parser.add_argument("region", nargs="?", default="chr2:1000000-2000000")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    args = parser.parse_args()
    if args.uri:
        uri = args.uri
    else:
        Path("demo-data").mkdir(exist_ok=True)
        uri = sample(Path("demo-data") / "cohort.vcf")
    spark = SparkSession.builder.master("local[*]").appName("vcf-region").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    options = {"endpointUrl": args.endpoint_url} if args.endpoint_url else {}
    run(spark, uri, args.region, **options)
    spark.stop()


if __name__ == "__main__":
    main()
