"""Points of a LiDAR tile inside a box, in SQL: heights per class, reading only the chunks that meet the box.

    python examples/lidar_box_sql.py s3://lidar/tile.laz 500100,4600100,500300,4600300
    python examples/lidar_box_sql.py                  # makes a small local LAZ first (flight-line strips)

The view's ``bbox`` skips every LAZ chunk whose bounds (kept in the index) miss the box and keeps exactly the
points inside it; ``WHERE x BETWEEN ...`` on a view without ``bbox`` gives the same rows, and prunes the same
way when ``spark.sql.python.filterPushdown.enabled`` is true.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def sample(path: Path, points: int = 400_000) -> str:
    """A LAZ (point format 6) flown in 10 strips over 500 m x 500 m: chunks are spatially coherent."""
    import laspy

    rng = np.random.default_rng(4)
    strip = np.repeat(np.arange(10), points // 10)
    x = 500_000 + strip * 50 + rng.random(len(strip)) * 50
    y = 4_600_000 + np.tile(np.sort(rng.random(points // 10)), 10) * 500
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales, header.offsets = np.array([0.01, 0.01, 0.01]), np.array([500_000, 4_600_000, 0])
    las = laspy.LasData(header)
    las.x, las.y = x, y
    las.z = 100 + 20 * np.sin(x / 40) + rng.random(len(x))
    las.classification = np.where(las.z > 110, 5, 2).astype(np.uint8)
    las.intensity = rng.integers(0, 4000, len(x)).astype(np.uint16)
    las.write(str(path))
    return str(path)


def run(spark: Any, uri: str, bbox: str, **options: Any) -> list[dict[str, Any]]:
    """Point counts and heights per class inside ``bbox``, with SQL over a view of the box."""
    import pyspark_dataplug

    print(pyspark_dataplug.build_index(spark, uri, format="laz", **options))
    opts = ", ".join(f"{k} '{v}'" for k, v in {"path": uri, "format": "laz", "bbox": bbox, **options}.items())
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW box USING dataplug OPTIONS ({opts})")
    rows = spark.sql("SELECT classification, count(*) AS points, avg(z) AS mean_z, max(z) AS max_z "
                     "FROM box GROUP BY classification ORDER BY classification").collect()
    result = [r.asDict() for r in rows]
    for r in result:
        print(r)
    return result


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", nargs="?", help="a .laz / .las (local path or s3://); default: a sample")
    parser.add_argument("bbox", nargs="?", default="500100,4600100,500300,4600300")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    args = parser.parse_args()
    if args.uri:
        uri = args.uri
    else:
        Path("demo-data").mkdir(exist_ok=True)
        uri = sample(Path("demo-data") / "tile.laz")
    spark = SparkSession.builder.master("local[*]").appName("lidar-box").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    options = {"endpointUrl": args.endpoint_url} if args.endpoint_url else {}
    run(spark, uri, args.bbox, **options)
    spark.stop()


if __name__ == "__main__":
    main()
