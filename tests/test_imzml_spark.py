"""imzML through Spark over the S3 endpoint: the index job, exact rows for any partitioning, bbox and
pushed x/y filters (pushdown on and off), SQL, and a folder whose .ibd files are never objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import read_dataplug
from test_imzml import grid_spectra, write


def _put(store: Any, local: Path, name: str) -> str:
    uri = store.put(f"{name}.imzML", local.with_suffix(".imzML").read_bytes())
    store.put(f"{name}.ibd", local.with_suffix(".ibd").read_bytes())
    return uri


@pytest.mark.parametrize("pushdown", ["false", "true"])
def test_spark_reads_imzml_from_s3(spark: Any, s3_store: Any, tmp_path: Path, pushdown: str) -> None:
    from pyspark_dataplug import build_index

    want = {}
    for name, mode, zlib in (("cont", "continuous", False), ("proc", "processed", True)):
        local = tmp_path / f"{name}.imzML"
        want[name] = write(local, grid_spectra(30, 20, points=50, seed=len(name), processed=mode == "processed"),
                           mode=mode, int_zlib=zlib, mz_zlib=zlib)
        _put(s3_store, local, f"msi/{name}")
    # the folder holds .imzML and .ibd files: the .ibd files are read through their .imzML, never as objects
    summary = build_index(spark, f"{s3_store.root}/msi/", format="imzml", **s3_store.options)
    assert len(summary.indexed) == 2
    spark.conf.set("spark.sql.python.filterPushdown.enabled", pushdown)
    try:
        for name, rows in want.items():
            uri = f"{s3_store.root}/msi/{name}.imzML"
            total = float(sum(r["intensity"].astype(np.float64).sum() for r in rows))
            for parts in (1, 2, 7, 700):
                df = read_dataplug(spark, uri, {"format": "imzml", "partitions": parts, **s3_store.options})
                got = df.selectExpr("count(*)", "sum(x * 1000 + y)", "sum(aggregate(intensity, 0D, (a, v) -> a + v))",
                                    "sum(size(mz))").collect()[0]
                assert got[0] == len(rows), (name, parts)
                assert got[1] == sum(r["x"] * 1000 + r["y"] for r in rows)
                assert got[2] == pytest.approx(total, rel=1e-9)
                assert got[3] == sum(len(r["mz"]) for r in rows)
            # one region three ways: the bbox option, SQL filters (pruned with pushdown on), and exact rows
            box = (5, 3, 12, 9)
            inside = {r["index"]: r for r in rows if box[0] <= r["x"] <= box[2] and box[1] <= r["y"] <= box[3]}
            opts = {"format": "imzml", "partitions": 4, **s3_store.options}
            by_option = read_dataplug(spark, uri, {**opts, "bbox": ",".join(map(str, box))})
            by_filter = read_dataplug(spark, uri, opts).where(
                f"x BETWEEN {box[0]} AND {box[2]} AND y BETWEEN {box[1]} AND {box[3]}")
            for df in (by_option, by_filter):
                got_rows = df.collect()
                assert sorted(r["index"] for r in got_rows) == sorted(inside)
                for r in got_rows:
                    w = inside[r["index"]]
                    assert (r["x"], r["y"]) == (w["x"], w["y"])
                    assert np.array_equal(np.asarray(r["mz"]), w["mz"])
                    assert np.array_equal(np.asarray(r["intensity"], dtype=w["intensity"].dtype), w["intensity"])
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")


def test_spark_sql_ion_image_local(spark: Any, tmp_path: Path) -> None:
    """What an imaging user asks first: the ion image of one m/z window (summed intensity per pixel), in SQL."""
    from pyspark_dataplug import build_index

    local = tmp_path / "img.imzML"
    rows = write(local, grid_spectra(16, 12, points=80, seed=3))
    build_index(spark, str(local), format="imzml")
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW msi USING dataplug OPTIONS (path '{local}', format 'imzml', "
              "partitions '5')")
    lo, hi = 400.0, 450.0
    got = spark.sql(f"""
        SELECT x, y, aggregate(zip_with(mz, intensity, (m, i) -> IF(m BETWEEN {lo} AND {hi}, i, 0)), 0D,
                               (a, v) -> a + v) AS ion
        FROM msi ORDER BY y, x""").collect()
    want = sorted(((r["y"], r["x"]), float(r["intensity"][(r["mz"] >= lo) & (r["mz"] <= hi)].astype(np.float64).sum()))
                  for r in rows)
    assert [(r["x"], r["y"]) for r in got] == [(x, y) for (y, x), _ in want]
    assert [r["ion"] for r in got] == pytest.approx([v for _, v in want], rel=1e-6)
