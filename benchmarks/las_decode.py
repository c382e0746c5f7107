"""LAZ decoding speed, one process, no Spark: dataplug's slices against ``laspy.read``.

Generates a survey-like LAZ (flight lines, point format 6 or 3 with smooth intensity, few classes, increasing
GPS time; ``--points``, default 8 million) with laspy, builds its dataplug index in this process, then times:

- ``laspy.read`` with the single-threaded lazrs backend (one core), and with the parallel one;
- every slice of a 16-partition plan, decoded one after the other (one core), all columns;
- the same with ``columns=x,y,z`` (lazrs skips the other layers of formats 6-10);
- a bbox of ~5% of the extent (pruned chunks, then exact filtering).

Best of ``--repeat`` runs; prints points per second.

    .venv/bin/python benchmarks/las_decode.py [--points 8000000] [--pf 6] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark_dataplug.index.build import plan_build, run_tasks_locally  # noqa: E402
from pyspark_dataplug.plan import open_dataset  # noqa: E402


def generate(path: Path, n: int, pf: int, seed: int = 0) -> None:
    """Flight lines 1000 m x 1000 m, 40 strips, values that compress like real surveys'."""
    import laspy

    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=pf, version="1.4" if pf >= 6 else "1.2")
    header.scales = [0.01, 0.01, 0.01]
    header.offsets = [500000.0, 4000000.0, 0.0]
    las = laspy.LasData(header)
    strips = 40
    per = -(-n // strips)
    strip = np.repeat(np.arange(strips), per)[:n]
    t = np.tile(np.linspace(0, 1, per, endpoint=False), strips)[:n]
    t = np.where(strip % 2 == 1, 1 - t, t)
    x = 500000.0 + t * 1000.0 + rng.normal(0, 0.2, n)
    y = 4000000.0 + (strip + 0.5) * 25.0 + np.sin(np.arange(n) * 0.37) * 12.0
    z = 120.0 + 15.0 * np.sin(x / 60.0) + 8.0 * np.cos(y / 45.0) + rng.gamma(1.5, 0.6, n)
    las.x, las.y, las.z = x, y, z
    las.intensity = np.clip(rng.normal(900, 150, n), 0, 65535).astype(np.uint16)
    returns = rng.choice([1, 1, 1, 1, 2, 3], n)
    las.number_of_returns = returns
    las.return_number = np.minimum(returns, rng.integers(1, 4, n))
    las.classification = rng.choice([1, 2, 2, 2, 5, 6], n)
    las.scan_direction_flag = strip % 2
    las.point_source_id = strip + 1
    las.gps_time = 3.0e5 + np.arange(n) * 2e-6
    if pf >= 6:
        las.scan_angle = (t * 4000 - 2000).astype(np.int16)
    else:
        las.scan_angle_rank = (t * 40 - 20).astype(np.int8)
    las.write(str(path), do_compress=True)


def best(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs (the others pay for cold caches and imports)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=8_000_000)
    ap.add_argument("--pf", type=int, default=6)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import laspy

    path = Path(args.dir) / f"bench_pf{args.pf}_{args.points}.laz"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.points, args.pf)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    n = args.points
    t0 = time.perf_counter()
    print(plan_build(str(path)).run(run_tasks_locally, force=True))
    print(f"index build (header + x/y/z bounds of every chunk, one process): {time.perf_counter() - t0:.2f} s")

    def laspy_read(backend: object) -> None:
        with laspy.open(str(path), laz_backend=backend) as f:
            f.read()

    rates = {}
    rates["laspy.read, lazrs (1 thread)"] = n / best(lambda: laspy_read(laspy.LazBackend.Lazrs), args.repeat)
    rates["laspy.read, lazrs parallel"] = n / best(lambda: laspy_read(laspy.LazBackend.LazrsParallel), args.repeat)

    def ours(**options: object) -> int:
        ds = open_dataset({"path": str(path), **options})
        rows = 0
        for part in ds.plan(partitions=16):
            for s in part:
                for b in s.batches():
                    rows += b.num_rows
        return rows

    rates["dataplug slices, all columns (1 core)"] = n / best(ours, args.repeat)
    rates["dataplug slices, columns=x,y,z (1 core)"] = n / best(lambda: ours(columns="x,y,z"), args.repeat)
    box = "500400,4000400,500624,4000624"
    kept = ours(bbox=box)
    secs = best(lambda: ours(bbox=box), args.repeat)
    ds = open_dataset({"path": str(path), "bbox": box})
    read = sum(s.nbytes for p in ds.plan(partitions=16) for s in p)
    print(f"bbox {box}: {kept} points in {secs:.3f} s, reading {read / path.stat().st_size:.1%} of the object")
    for what, rate in rates.items():
        print(f"{what:45s} {rate / 1e6:6.2f} M points/s")


if __name__ == "__main__":
    main()
