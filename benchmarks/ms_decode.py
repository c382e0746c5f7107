"""MeasurementSet decoding speed, one process, one thread, no Spark: dataplug's slices against casacore's getcol.

Writes a MeasurementSet as CASA lays them out (DATA in TiledColumnStMan, FLAG in TiledShapeStMan, the rest in
StandardStMan) with python-casacore, builds its index, then times, best of ``--runs`` with the page cache warm:

- dataplug: every row through ``Slice.batches()`` (ranged reads, numpy decode, Arrow record batches), for all
  columns and for ``columns=DATA_real,DATA_imag``;
- casacore ``getcol`` of the same columns in chunks of 10,000 rows (numpy arrays, no Arrow).

Rates are visibilities (rows x channels x correlations) per second. It also reports the index build (bytes
read, seconds) and the index size against the MeasurementSet's.

    .venv/bin/python benchmarks/ms_decode.py [--rows 100000] [--chan 64] [--dir /tmp] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark_dataplug.index.build import plan_build, run_tasks_locally  # noqa: E402
from pyspark_dataplug.plan import open_dataset  # noqa: E402
from pyspark_dataplug.storage import IO_STATS  # noqa: E402

NCORR = 4
BASELINES = 351  # 27 antennas


def write(path: Path, rows: int, nchan: int) -> None:
    from casacore import tables as ct

    cols = [ct.makearrcoldesc("DATA", 0j, shape=[nchan, NCORR], valuetype="complex",
                              datamanagertype="TiledColumnStMan", datamanagergroup="TiledData"),
            ct.makearrcoldesc("FLAG", False, shape=[nchan, NCORR], valuetype="boolean",
                              datamanagertype="TiledShapeStMan", datamanagergroup="TiledFlag"),
            ct.makearrcoldesc("WEIGHT", 0.0, shape=[NCORR], valuetype="float", options=5),
            ct.makearrcoldesc("SIGMA", 0.0, shape=[NCORR], valuetype="float", options=5)]
    dminfo = ct.makedminfo(ct.maketabdesc(cols[:2]), {"TiledData": {"DEFAULTTILESHAPE": np.array(
        [NCORR, nchan, max(1, 32768 // (nchan * NCORR * 8)) * 8], np.int32)}})
    shutil.rmtree(path, ignore_errors=True)
    t = ct.default_ms(str(path), ct.maketabdesc(cols), dminfo)
    t.addrows(rows)
    rng = np.random.default_rng(0)
    t.putcol("TIME", 4.9e9 + 10.0 * (np.arange(rows) // BASELINES))
    a1, a2 = np.triu_indices(27, 1)
    t.putcol("ANTENNA1", np.resize(a1, rows).astype(np.int32))
    t.putcol("ANTENNA2", np.resize(a2, rows).astype(np.int32))
    t.putcol("UVW", rng.standard_normal((rows, 3)))
    for a in range(0, rows, 20000):
        n = min(20000, rows - a)
        t.putcol("DATA", (rng.standard_normal((n, nchan, NCORR)) + 1j * rng.standard_normal((n, nchan, NCORR)))
                 .astype(np.complex64), startrow=a, nrow=n)
        t.putcol("FLAG", rng.random((n, nchan, NCORR)) < 0.1, startrow=a, nrow=n)
    t.putcol("WEIGHT", np.ones((rows, NCORR), np.float32))
    t.putcol("SIGMA", np.ones((rows, NCORR), np.float32))
    t.close()


def best(fn, runs: int) -> float:  # noqa: ANN001
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--chan", type=int, default=64)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from casacore import tables as ct

    path = Path(args.dir) / "ms_bench.ms"
    write(path, args.rows, args.chan)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    vis = args.rows * args.chan * NCORR
    print(f"MeasurementSet: {args.rows} rows x {args.chan} channels x {NCORR} correlations, {size / 1e6:.0f} MB")

    IO_STATS.reset()
    t0 = time.perf_counter()
    summary = plan_build(str(path), "ms").run(run_tasks_locally, force=True)
    build_s = time.perf_counter() - t0
    index_bytes = sum(f.stat().st_size for f in Path(str(path) + ".dataplug").rglob("*") if f.is_file())
    print(f"index build: {build_s:.2f} s, read {sum(IO_STATS.bytes_read.values()) / 1e6:.1f} MB of the MS; "
          f"index {index_bytes / 1e3:.1f} kB ({100 * index_bytes / size:.3f}% of the MS); {summary.records} rows")

    def ours(columns: str | None) -> None:
        opts = {"path": str(path), "format": "ms", **({"columns": columns} if columns else {})}
        for part in open_dataset(opts).plan(partitions=1):
            for s in part:
                for _ in s.batches():
                    pass

    def casacore(cols: list[str]) -> None:
        with ct.table(str(path), ack=False) as t:
            for a in range(0, args.rows, 10_000):
                n = min(10_000, args.rows - a)
                for c in cols:
                    t.getcol(c, a, n)

    with ct.table(str(path), ack=False) as t:
        every = [c for c in t.colnames() if c != "FLAG_CATEGORY"]
    cases = [("all columns", lambda: ours(None), lambda: casacore(every)),
             ("DATA only", lambda: ours("DATA_real,DATA_imag"), lambda: casacore(["DATA"]))]
    for name, mine, theirs in cases:
        a, b = best(mine, args.runs), best(theirs, args.runs)
        print(f"{name:12s} dataplug {vis / a / 1e6:7.1f} M vis/s ({a:.2f} s)   casacore getcol "
              f"{vis / b / 1e6:7.1f} M vis/s ({b:.2f} s)   ratio {b / a:.2f}")
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(str(path) + ".dataplug", ignore_errors=True)


if __name__ == "__main__":
    main()
