"""The ion image of one m/z window of a mass-spectrometry image (imzML), in Spark SQL.

    python examples/imzml_ion_image_spark.py s3://lab/run1.imzML 400 450
    python examples/imzml_ion_image_spark.py                 # makes a small local imzML + .ibd first

Each task reads only its spectra's bytes from the ``.ibd`` (ranged reads, checked against the ``.ibd``'s
indexed ETag); the sum over the window runs in Spark, one value per pixel.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def sample(path: Path, width: int = 40, height: int = 30, points: int = 200) -> str:
    """A continuous-mode image whose peak near m/z 425 grows from left to right (pyimzML's writer)."""
    from pyimzml.ImzMLWriter import ImzMLWriter

    rng = np.random.default_rng(11)
    axis = np.linspace(100.0, 1000.0, points)
    with ImzMLWriter(str(path), mz_dtype=np.float64, intensity_dtype=np.float32, mode="continuous") as w:
        for y in range(1, height + 1):
            for x in range(1, width + 1):
                peak = x * np.exp(-((axis - 425.0) / 5.0) ** 2)
                w.addSpectrum(axis, (peak + rng.random(points)).astype(np.float32), (x, y, 1))
    return str(path)


def run(spark: Any, uri: str, lo: float, hi: float, **options: Any) -> list[dict[str, Any]]:
    """Summed intensity in ``[lo, hi]`` per pixel."""
    import pyspark_dataplug

    print(pyspark_dataplug.build_index(spark, uri, format="imzml", **options))
    opts = ", ".join(f"{k} '{v}'" for k, v in {"path": uri, "format": "imzml", **options}.items())
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW msi USING dataplug OPTIONS ({opts})")
    rows = spark.sql(f"""
        SELECT x, y, aggregate(zip_with(mz, intensity, (m, i) -> IF(m BETWEEN {lo} AND {hi}, i, 0)), 0D,
                               (a, v) -> a + v) AS ion
        FROM msi ORDER BY y, x""").collect()
    result = [r.asDict() for r in rows]
    print(f"{len(result)} pixels; brightest: {max(result, key=lambda r: r['ion'])}")
    return result


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", nargs="?", help="an .imzML (local path or s3://), its .ibd beside it; default: a sample")
    parser.add_argument("lo", nargs="?", type=float, default=415.0)
    parser.add_argument("hi", nargs="?", type=float, default=435.0)
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    args = parser.parse_args()
    if args.uri:
        uri = args.uri
    else:
        Path("demo-data").mkdir(exist_ok=True)
        uri = sample(Path("demo-data") / "image.imzML")
    spark = SparkSession.builder.master("local[*]").appName("imzml-ion-image").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    run(spark, uri, args.lo, args.hi, **({"endpointUrl": args.endpoint_url} if args.endpoint_url else {}))
    spark.stop()


if __name__ == "__main__":
    main()
