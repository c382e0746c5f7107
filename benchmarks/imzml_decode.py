"""imzML decoding speed, one process, one thread, no Spark: dataplug's slices against pyimzML on the same file.

Writes a continuous, uncompressed imzML with pyimzML's ``ImzMLWriter`` (default 20,000 spectra of 2,000
points: float64 m/z axis, float32 intensities; 160 MB of ``.ibd``), then times, best of ``--runs`` with the
page cache warm:

- the index build (one streamed pass over the XML) against ``ImzMLParser(...)`` (which parses the XML too);
- dataplug: every spectrum through ``Slice.batches()`` (ranged reads, decode, Arrow list columns), with the
  ``mz`` column (the shared axis repeated in every row, as Spark would get it) and with ``mzColumn=false``;
- pyimzML: a ``getspectrum(i)`` loop over every spectrum (numpy views, no Arrow).

It also reports what a bbox of ~5% of the pixels reads of the ``.ibd``.

    .venv/bin/python benchmarks/imzml_decode.py [--spectra 20000] [--points 2000] [--mode continuous] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark_dataplug.index.build import plan_build, run_tasks_locally  # noqa: E402
from pyspark_dataplug.plan import open_dataset  # noqa: E402
from pyspark_dataplug.storage import IO_STATS  # noqa: E402


def write(path: Path, spectra: int, points: int, mode: str) -> int:
    """A square-ish raster of spectra, written row by row as instruments do; returns the image width."""
    from pyimzml.ImzMLWriter import ImzMLWriter

    width = math.ceil(math.sqrt(spectra))
    if path.exists() and path.with_suffix(".ibd").exists():
        return width
    rng = np.random.default_rng(0)
    axis = np.linspace(100, 1000, points)
    block = rng.random((64, points), dtype=np.float32) * 1000  # a few distinct spectra, reused: writing is not timed
    with ImzMLWriter(str(path), mz_dtype=np.float64, intensity_dtype=np.float32, mode=mode) as w:
        for i in range(spectra):
            mz = axis if mode == "continuous" else axis + (i % 7) * 1e-3
            w.addSpectrum(mz, block[i % 64], (i % width + 1, i // width + 1))
    return width


def best(fn, runs: int) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectra", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=2_000)
    ap.add_argument("--mode", choices=("continuous", "processed"), default="continuous")
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from pyimzml.ImzMLParser import ImzMLParser

    path = Path(args.dir) / f"imzml_bench_{args.mode}_{args.spectra}x{args.points}.imzML"
    width = write(path, args.spectra, args.points, args.mode)
    uri, ibd = str(path), str(path.with_suffix(".ibd"))
    n = args.spectra

    t_build = best(lambda: plan_build(uri, "imzml").run(run_tasks_locally, force=True), 1)
    t_parser = best(lambda: ImzMLParser(uri).m.close(), 1)

    def ours(**options: str) -> float:
        parts = [s for p in open_dataset({"path": uri, **options}).plan(partitions=1) for s in p]

        def run() -> None:
            rows = sum(b.num_rows for s in parts for b in s.batches())
            assert rows == n, rows

        return best(run, args.runs)

    t_rows = ours()
    t_nomz = ours(mzColumn="false")
    p = ImzMLParser(uri)

    def loop() -> None:
        for i in range(n):
            p.getspectrum(i)

    t_loop = best(loop, args.runs)
    p.m.close()

    mb = path.with_suffix(".ibd").stat().st_size / 1e6
    print(f"{n} spectra x {args.points} points, {args.mode}, uncompressed: XML {path.stat().st_size / 1e6:.0f} MB, "
          f".ibd {mb:.0f} MB; one process, best of {args.runs}\n")
    print("| what | seconds | spectra/s | vs pyimzML getspectrum |")
    print("|---|---:|---:|---:|")
    for name, t in (("dataplug slices, all columns (mz repeated per row)", t_rows),
                    ("dataplug slices, mzColumn=false", t_nomz), ("pyimzML getspectrum loop", t_loop)):
        print(f"| {name} | {t:.2f} | {n / t:,.0f} | {t_loop / t:.2f}x |")
    print(f"| index build (XML streamed once) | {t_build:.2f} | {n / t_build:,.0f} | |")
    print(f"| pyimzML ImzMLParser() (XML parse) | {t_parser:.2f} | {n / t_parser:,.0f} | |")

    side = max(1, round(math.sqrt(0.05 * n)))
    x0, y0 = width // 3, max(1, (n // width) // 3)
    box = f"{x0},{y0},{x0 + side - 1},{y0 + side - 1}"
    for gap in ("0", "1m"):
        IO_STATS.reset()
        parts = [s for p in open_dataset({"path": uri, "bbox": box, "maxGap": gap}).plan(partitions=4) for s in p]
        rows = sum(b.num_rows for s in parts for b in s.batches())
        print(f"\n- bbox {box} ({rows} spectra, {rows / n:.1%}), maxGap={gap}: read "
              f"{IO_STATS.bytes_read[ibd] / 1e6:.1f} MB of the .ibd ({IO_STATS.bytes_read[ibd] / (mb * 1e6):.1%}) "
              f"in {sum(len(s.ranges) for s in parts)} ranged reads", end="")
    print()


if __name__ == "__main__":
    main()
