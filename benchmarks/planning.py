"""Planning at scale: a dataset of many indexed objects, and one object cut into many slices.

Planning reads listings and indexes only. This measures how its time grows: listing + index loads for
1,000 / 10,000 small objects (one folder; the index of each is a manifest and a small Parquet table), and
cutting one indexed object into 1,000 / 10,000 / 100,000 slices. Local files, so the figures are the
planner's own cost; on S3, each object adds one manifest GET and one table GET (done in parallel: see
``open_dataset``), which a real bucket serves in tens of milliseconds each.

Run: ``python benchmarks/planning.py [--objects 10000] [--folder /tmp/dataplug-plan-bench]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def make_objects(folder: Path, n: int) -> None:
    """``n`` small text objects with their indexes (built in this process: no Spark needed to measure plans)."""
    from pyspark_dataplug.index.build import plan_build, run_tasks_locally

    marker = folder / f".built-{n}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"part-{i:06d}.txt").write_bytes(b"".join(b"line %d of object %d\n" % (j, i) for j in range(50)))
    t = time.perf_counter()
    plan_build(str(folder), "text").run(run_tasks_locally)
    print(f"built {n} indexes in {time.perf_counter() - t:.1f} s")
    marker.touch()


def timed(fn):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    from pyspark_dataplug.plan import open_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--folder", default="/tmp/dataplug-plan-bench")
    ap.add_argument("--slices", type=int, nargs="*", default=[1000, 10000, 100000])
    args = ap.parse_args()
    rows = []
    for n in args.objects:
        folder = Path(args.folder) / f"n{n}"
        make_objects(folder, n)
        ds, t_open = timed(lambda f=folder: open_dataset({"format": "text"}, paths=[str(f)]))
        k = max(1, n // 10)
        parts, t_plan = timed(lambda d=ds, k=k: d.plan(partitions=k))
        _, t_schema = timed(lambda f=folder: open_dataset({"format": "text"}, paths=[str(f)], first_only=True).schema)
        rows.append((f"{n:,} objects", t_schema, t_open, t_plan, sum(len(p) for p in parts)))
    # one object, many slices: the index of a 100 MB text file with a point every 1,000 bytes (100,000 points)
    big = Path(args.folder) / "big.txt"
    if not big.exists():
        line = b"x" * 99 + b"\n"
        with open(big, "wb") as f:
            for _ in range(200):
                f.write(line * 5000)
        from pyspark_dataplug.index.build import plan_build, run_tasks_locally

        plan_build(str(big), "text", indexSpacing="1000").run(run_tasks_locally)
    ds = open_dataset({"format": "text"}, paths=[str(big)])
    for s in args.slices:
        parts, t_plan = timed(lambda d=ds, k=s: d.plan(partitions=k))
        rows.append((f"1 object, {s:,} slices", 0.0, 0.0, t_plan, sum(len(p) for p in parts)))
    print(f"\ncpu count {os.cpu_count()}\n")
    print("| dataset | schema() s | open (list + load indexes) s | plan s | slices |")
    print("|---|---:|---:|---:|---:|")
    for name, a, b, c, k in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {c:.2f} | {k:,} |")


if __name__ == "__main__":
    main()
