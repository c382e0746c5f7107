"""Visibility amplitudes per baseline of a MeasurementSet, in Spark SQL, each task reading only its rows.

    python examples/ms_baselines_spark.py s3://radio/obs1.ms
    python examples/ms_baselines_spark.py             # makes a small local MeasurementSet first

The index job reads the MAIN table's headers and TIME once; every task then fetches, with ranged reads, only
the tiles and buckets of its own whole time slots, and only of the columns the read names (``columns``: here
the antennas, the flags and DATA, not WEIGHT, SIGMA or UVW).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

NCHAN, NCORR = 16, 4


def sample(path: Path, antennas: int = 12, slots: int = 30) -> str:
    """A MeasurementSet as CASA writes one: DATA in TiledColumnStMan, FLAG in TiledShapeStMan, every baseline
    in every time slot; the amplitude of baseline (a, b) is about a + b, so the answer is easy to check."""
    import casacore.tables as ct

    rng = np.random.default_rng(7)
    cols = [ct.makearrcoldesc("DATA", 0j, shape=[NCHAN, NCORR], valuetype="complex",
                              datamanagertype="TiledColumnStMan", datamanagergroup="TiledData"),
            ct.makearrcoldesc("FLAG", False, shape=[NCHAN, NCORR], valuetype="boolean",
                              datamanagertype="TiledShapeStMan", datamanagergroup="TiledFlag")]
    a1, a2 = np.triu_indices(antennas, 1)
    per_slot = len(a1)
    n = per_slot * slots
    t = ct.default_ms(str(path), ct.maketabdesc(cols))
    t.addrows(n)
    t.putcol("TIME", np.repeat(5.0e9 + 10.0 * np.arange(slots), per_slot))
    t.putcol("ANTENNA1", np.tile(a1, slots).astype(np.int32))
    t.putcol("ANTENNA2", np.tile(a2, slots).astype(np.int32))
    amp = (np.tile(a1 + a2, slots)[:, None, None] + rng.random((n, NCHAN, NCORR))).astype(np.float32)
    phase = rng.random((n, NCHAN, NCORR)) * 2 * np.pi
    t.putcol("DATA", (amp * np.exp(1j * phase)).astype(np.complex64))
    t.putcol("FLAG", rng.random((n, NCHAN, NCORR)) < 0.1)
    t.close()
    return str(path)


def run(spark: Any, uri: str, **options: Any) -> list[dict[str, Any]]:
    """Mean unflagged amplitude and unflagged share per baseline."""
    import pyspark_dataplug

    print(pyspark_dataplug.build_index(spark, uri, format="ms", **options))
    opts = {"path": uri, "format": "ms", "columns": "ANTENNA1,ANTENNA2,FLAG,DATA_real,DATA_imag", **options}
    spark.sql("CREATE OR REPLACE TEMPORARY VIEW vis USING dataplug OPTIONS ("
              + ", ".join(f"{k} '{v}'" for k, v in opts.items()) + ")")
    rows = spark.sql("""
        SELECT ANTENNA1 AS a1, ANTENNA2 AS a2,
               avg(IF(v.FLAG, NULL, sqrt(v.DATA_real * v.DATA_real + v.DATA_imag * v.DATA_imag))) AS mean_amp,
               avg(IF(v.FLAG, 0D, 1D)) AS unflagged
        FROM vis LATERAL VIEW explode(arrays_zip(DATA_real, DATA_imag, FLAG)) c AS v
        GROUP BY ANTENNA1, ANTENNA2 ORDER BY a1, a2""").collect()
    result = [r.asDict() for r in rows]
    for r in result[:10]:
        print(r)
    return result


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", nargs="?", help="a MeasurementSet folder (path or s3:// prefix); default: a sample")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    args = parser.parse_args()
    if args.uri:
        uri = args.uri
    else:
        Path("demo-data").mkdir(exist_ok=True)
        uri = sample(Path("demo-data") / "obs.ms")
    spark = SparkSession.builder.master("local[*]").appName("ms-baselines").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    run(spark, uri, **({"endpointUrl": args.endpoint_url} if args.endpoint_url else {}))
    spark.stop()


if __name__ == "__main__":
    main()
