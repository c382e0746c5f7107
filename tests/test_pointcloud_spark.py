"""LAZ and COPC through Spark over the S3 endpoint: the index job, exact rows, bbox, pushdown on and off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import laspy  # the test extra installs it: a missing one must fail, not skip
import numpy as np
import pytest
from conftest import read_dataplug
from pointcloud_data import EXTENT, las_bytes, make_las, write_copc


def _box(fraction: float) -> tuple[float, float, float, float]:
    x0, y0, _, x1, y1, _ = EXTENT
    side = fraction ** 0.5
    return (x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0), x0 + (0.3 + side) * (x1 - x0), y0 + (0.3 + side) * (y1 - y0))


@pytest.mark.parametrize("pushdown", ["false", "true"])
def test_spark_reads_laz_and_copc_from_s3(spark: Any, s3_store: Any, tmp_path: Path, pushdown: str) -> None:
    from pyspark_dataplug import build_index

    las = make_las(6, "1.4", 120_000, seed=5)
    laz_uri = s3_store.put("lidar/a.laz", las_bytes(las, compress=True))
    copc_path = tmp_path / "b.copc.laz"
    write_copc(str(copc_path), 6, 60_000)
    copc_uri = s3_store.put("lidar/b.copc.laz", copc_path.read_bytes())
    build_index(spark, laz_uri, format="laz", **s3_store.options)
    build_index(spark, copc_uri, format="copc", **s3_store.options)
    with laspy.CopcReader(open(copc_path, "rb")) as reader:  # noqa: SIM115 - the reader closes it
        copc_points = reader.query()
    box = _box(0.05)
    spark.conf.set("spark.sql.python.filterPushdown.enabled", pushdown)
    try:
        for uri, fmt, pts in ((laz_uri, "laz", las.points), (copc_uri, "copc", copc_points)):
            x, y, z = (np.asarray(pts[c]) for c in ("x", "y", "z"))
            gps = np.asarray(pts["gps_time"])
            for parts in (1, 2, 7, 40):
                df = read_dataplug(spark, uri, {"format": fmt, "partitions": parts, **s3_store.options})
                got = df.selectExpr("count(*)", "sum(gps_time)", "sum(x)", "max(z)").collect()[0]
                assert got[0] == len(x) and got[1] == pytest.approx(gps.sum(), rel=1e-12), (fmt, parts)
                assert got[2] == pytest.approx(x.sum(), rel=1e-12) and got[3] == z.max()
            inside = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
            assert 0 < inside.sum() < len(x)
            # the same box three ways: the bbox option, SQL filters (pruned when pushdown is on), both
            opts = {"format": fmt, "partitions": 5, **s3_store.options}
            by_option = read_dataplug(spark, uri, {**opts, "bbox": ",".join(map(str, box))})
            by_filter = read_dataplug(spark, uri, opts).where(
                f"x >= {box[0]} AND x <= {box[2]} AND y >= {box[1]} AND y <= {box[3]}")
            want = sorted(gps[inside].tolist())
            for df in (by_option, by_filter):
                assert sorted(r[0] for r in df.select("gps_time").collect()) == want, fmt
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")
