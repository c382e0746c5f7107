"""What a Spark Connect user runs, in a process of its own: ``python connect_job.py SPEC.json OUT_DIR``.

A local Connect server (``SparkSession.builder.remote("local[2]")``) starts a classic session inside this
process's JVM and switches PySpark into Connect mode for the whole process, so it cannot share a process with
the tests' classic session: ``test_connect.py`` runs this script and checks what it writes. Everything here goes
through the Connect client only: the index job (``build_index``), reads of every format, SQL views, and
``pyspark_dataplug.register``. Results are Arrow IPC files plus ``result.json``; the checks live in the test.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def _worker_file(spark: Any) -> str:
    """``pyspark_dataplug.__file__`` as a Python worker of the Connect server imports it."""

    def where(batches: Any) -> Any:
        import pyarrow as pa

        import pyspark_dataplug

        for _ in batches:
            yield pa.RecordBatch.from_arrays([pa.array([pyspark_dataplug.__file__])], names=["file"])

    return spark.range(1).mapInArrow(where, "file string").collect()[0]["file"]


def _write(table: Any, path: Path) -> None:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _partition_count(df: Any) -> int:
    """Spark partitions a read has, without the RDD API (Connect has none): tasks that returned rows."""
    from pyspark.sql.functions import spark_partition_id

    return df.select(spark_partition_id().alias("p")).distinct().count()


def main(spec_path: str, out: str) -> None:
    from pyspark.sql import SparkSession

    import pyspark_dataplug

    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(out)
    result: dict[str, Any] = {"seconds": {}, "cases": {}}
    t0 = time.perf_counter()
    spark = (SparkSession.builder.remote("local[2]")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    result["seconds"]["start"] = time.perf_counter() - t0
    result["session"] = f"{type(spark).__module__}.{type(spark).__name__}"
    result["driver_file"] = pyspark_dataplug.__file__
    result["worker_file"] = _worker_file(spark)

    # "dataplug" is found by Spark's discovery of pyspark_* modules: nothing is registered until the end.
    # Filter pushdown on (the classic SQL tests run with it off): WHERE clauses on x/y, contigName/start, level
    # prune through the pushdown worker of the Connect server, and the answers must not change.
    spark.conf.set("spark.sql.python.filterPushdown.enabled", "true")
    for case in spec["cases"]:
        name, path, fmt = case["name"], case["path"], case["format"]
        t = time.perf_counter()
        summary = pyspark_dataplug.build_index(spark, path, format=fmt, **case.get("options", {}), **case["build"])
        t_build = time.perf_counter() - t
        reader = spark.read.format("dataplug").option("format", fmt).option("partitions", "3")
        for k, v in {**case.get("options", {}), **case["view"]}.items():
            reader = reader.option(k, v)
        _write(reader.load(path).toArrow(), out_dir / f"{name}.read.arrow")
        t_read = time.perf_counter() - t - t_build
        if case.get("sql"):
            spark.sql(case["view_sql"])
            _write(spark.sql(case["sql"]).toArrow(), out_dir / f"{name}.sql.arrow")
        result["cases"][name] = {"indexed": summary.indexed, "records": summary.records,
                                 "seconds": {"build": t_build, "read": t_read,
                                             "sql": time.perf_counter() - t - t_build - t_read}}

    # pruning really happens on the server: the damaged part of this object is read only when nothing prunes
    # (a new DataFrame after the conf changes: the Connect server caches the plans of the DataFrames it has seen,
    # pushed filters included)
    prune = spec["pruning"]

    def chr2() -> Any:
        return spark.read.format("dataplug").option("partitions", "6").load(prune["path"]).where(prune["where"])

    result["pruning"] = {"on": [r[0] for r in chr2().select("start").collect()]}
    spark.conf.set("spark.sql.python.filterPushdown.enabled", "false")
    try:
        chr2().select("start").collect()
        result["pruning"]["off"] = "read without an error"
    except Exception as e:  # noqa: BLE001 - the test checks the message
        result["pruning"]["off"] = str(e)[:4000]

    # register(): spark.dataplug.* confs become option defaults on the Connect session too
    spark.conf.set("spark.dataplug.partitions", "5")
    pyspark_dataplug.register(spark)
    first = spec["cases"][0]
    df = spark.read.format("dataplug").option("format", first["format"]).load(first["path"])
    result["registered"] = {"partitions": _partition_count(df), "rows": df.count()}
    spark.stop()
    result["seconds"]["total"] = time.perf_counter() - t0
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
