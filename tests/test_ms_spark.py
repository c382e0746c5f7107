"""MeasurementSets through Spark: folders on the S3 endpoint and local, the index job, exact rows, SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import casacore.tables as ct  # the test extra installs python-casacore: a missing one must fail, not skip
import numpy as np
import pyarrow as pa
import pytest
from conftest import read_dataplug
from test_ms import assert_equal_to_casacore, write_ms


def _upload(store: Any, folder: Path, name: str) -> str:
    """Every file of a MeasurementSet folder (sub-tables included) under ``name``: one S3 prefix per MS."""
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            store.put(f"{name}/{f.relative_to(folder)}", f.read_bytes())
    return f"{store.root}/{name}"


@pytest.fixture(scope="module")
def ms_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ms-spark")
    out = {}
    for i, layout in enumerate(("tiled", "ssm")):
        write_ms(root / f"{layout}.ms", layout, seed=10 + i, nslots=12)
        out[layout] = root / f"{layout}.ms"
    return out


def _casacore(path: Path, *cols: str) -> dict[str, np.ndarray]:
    with ct.table(str(path), ack=False) as t:
        return {c: t.getcol(c) for c in cols}


@pytest.mark.parametrize("pushdown", ["false", "true"])
def test_spark_reads_measurement_sets_from_s3(spark: Any, s3_store: Any, ms_files: dict[str, Path],
                                              pushdown: str) -> None:
    from pyspark_dataplug import build_index

    uris = {k: _upload(s3_store, p, f"night1/{k}.ms") for k, p in ms_files.items()}
    # the prefix holding both MeasurementSets is a dataset of two objects (their sub-tables are not objects)
    summary = build_index(spark, f"{s3_store.root}/night1/", format="ms", **s3_store.options)
    assert sorted(summary.indexed) == sorted(uris.values())
    ref = {k: _casacore(p, "TIME", "ANTENNA1", "ANTENNA2", "DATA", "FLAG") for k, p in ms_files.items()}
    spark.conf.set("spark.sql.python.filterPushdown.enabled", pushdown)
    try:
        for parts in (1, 2, 7, 40):
            df = read_dataplug(spark, uris["tiled"], {"format": "ms", "partitions": parts, **s3_store.options})
            got = df.selectExpr("count(*)", "sum(TIME)", "sum(ANTENNA1 * 100 + ANTENNA2)",
                                "sum(aggregate(DATA_real, 0D, (a, x) -> a + x))",
                                "sum(size(filter(FLAG, f -> f)))").collect()[0]
            r = ref["tiled"]
            assert got[0] == len(r["TIME"]), parts
            assert got[1] == pytest.approx(r["TIME"].sum(), rel=1e-13)
            assert got[2] == int((r["ANTENNA1"].astype(np.int64) * 100 + r["ANTENNA2"]).sum())
            assert got[3] == pytest.approx(float(r["DATA"].real.astype(np.float64).sum()), rel=1e-9, abs=1e-6)
            assert got[4] == int(r["FLAG"].sum())
        # both MeasurementSets by glob: every row, and each row exactly as casacore has it
        both = read_dataplug(spark, f"{s3_store.root}/night1/*.ms",
                             {"format": "ms", "partitions": 5, "columns": "TIME,ANTENNA1,ANTENNA2,DATA_imag",
                              **s3_store.options})
        rows = both.collect()
        assert len(rows) == sum(len(r["TIME"]) for r in ref.values())
        want = sorted((float(t), int(a), int(b), tuple(np.asarray(d.imag, np.float32).ravel().tolist()))
                      for r in ref.values() for t, a, b, d in zip(r["TIME"], r["ANTENNA1"], r["ANTENNA2"], r["DATA"],
                                                                  strict=True))
        assert sorted((r[0], r[1], r[2], tuple(r[3])) for r in rows) == want
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")


def test_spark_sql_one_baseline_local(spark: Any, ms_files: dict[str, Path]) -> None:
    """What a radio astronomer asks first: the visibilities of one baseline over time, in SQL."""
    from pyspark_dataplug import build_index

    path = str(ms_files["ssm"])
    build_index(spark, path, format="ms")
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW vis USING dataplug OPTIONS (path '{path}', format 'ms', "
              "partitions '3')")
    ref = _casacore(ms_files["ssm"], "TIME", "ANTENNA1", "ANTENNA2", "DATA", "FLAG_ROW")
    a1, a2 = int(ref["ANTENNA1"][0]), int(ref["ANTENNA2"][0])
    got = spark.sql(f"SELECT TIME, DATA_real, DATA_imag FROM vis WHERE ANTENNA1 = {a1} AND ANTENNA2 = {a2} "
                    "AND NOT FLAG_ROW ORDER BY TIME").collect()
    sel = (ref["ANTENNA1"] == a1) & (ref["ANTENNA2"] == a2) & ~ref["FLAG_ROW"]
    assert len(got) == int(sel.sum()) > 0
    order = np.argsort(ref["TIME"][sel], kind="stable")
    data = ref["DATA"][sel][order]
    assert [r[0] for r in got] == ref["TIME"][sel][order].tolist()
    for r, d in zip(got, data, strict=True):
        assert np.array_equal(np.asarray(r[1], np.float32), d.real.ravel())
        assert np.array_equal(np.asarray(r[2], np.float32), d.imag.ravel())


def test_slices_over_s3_equal_casacore(s3_store: Any, ms_files: dict[str, Path]) -> None:
    """Every column of the tiled MeasurementSet read as slices straight from S3 (no Spark): exact."""
    from pyspark_dataplug.index.build import plan_build, run_tasks_locally
    from pyspark_dataplug.plan import open_dataset

    uri = _upload(s3_store, ms_files["tiled"], "single/tiled.ms")
    plan_build(uri, "ms", **s3_store.options).run(run_tasks_locally)
    parts = open_dataset({"path": uri, "format": "ms", **s3_store.options}).plan(partitions=7)
    table = pa.concat_tables([s.get() for p in parts for s in p])
    assert_equal_to_casacore(str(ms_files["tiled"]), table)


def test_measurement_sets_of_one_read_agree_on_its_columns(ms_files: dict[str, Path]) -> None:
    """A read of two MeasurementSets with different columns fails naming them, unless ``columns`` leaves them out."""
    from pyspark_dataplug.errors import OptionError
    from pyspark_dataplug.index.build import plan_build, run_tasks_locally
    from pyspark_dataplug.plan import open_dataset

    root = str(ms_files["tiled"].parent)
    plan_build(f"{root}/*.ms", "ms").run(run_tasks_locally)
    with pytest.raises(OptionError, match=r"tiled\.ms: its MAIN table's .*CORRECTED_DATA.*columns option"):
        open_dataset({"path": f"{root}/*.ms", "format": "ms"}).plan(partitions=3)
    parts = open_dataset({"path": root, "format": "ms", "columns": "TIME,ANTENNA2"}).plan(partitions=3)
    got = pa.concat_tables([s.get() for p in parts for s in p])
    want = [_casacore(ms_files[k], "TIME")["TIME"] for k in ("ssm", "tiled")]
    assert got.num_rows == sum(len(w) for w in want)
    assert sorted(got.column("TIME").to_pylist()) == sorted(np.concatenate(want).tolist())
