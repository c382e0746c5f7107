"""The gzip index's trade-off: seek point spacing against index size, build time and bytes each slice fetches.

A slice of a ``.gz`` inflates from the last seek point before its first record and reads to the index point
after its last, so the bytes a read fetches exceed the object by about one spacing per slice; finer spacings
cost index bytes (a compressed, sparse 32 KiB window each). For each spacing this builds the index in this
process (one pass: ``gz.GzipPass``) and reports: build seconds and their ratio to one Python zlib pass over
the same file, index bytes / compressed size, and bytes fetched / object size when the object is cut into
8, 64 and 200 slices by the ``records`` strategy (Dataplug's ``partition_reads_batches(num_batches=...)``)
and by ``bytes``. Fetched bytes are the slices' planned ranges (the compressed data and the window each reads
whole), which is exactly what their tasks request.

Run: ``python benchmarks/gzip_spacing.py --file bench-data/bench-1000mb.fastq.gz [--spacings 256k 512k 1m 8m]``
(``make bench`` runs it on the benchmark's FASTQ ``.gz``; without ``--file`` it writes a 300 MB one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path


def zlib_pass(path: Path) -> float:
    t = time.perf_counter()
    d = zlib.decompressobj(31)
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            d.decompress(block)
    return time.perf_counter() - t


def measure(path: Path, spacing: str | None, counts: list[int]) -> dict:
    from pyspark_dataplug import CloudObject

    where = tempfile.mkdtemp(prefix="dataplug-spacing-")
    try:
        opts = {"indexLocation": where}
        if spacing:
            opts["gzipSpacing"] = spacing
        co = CloudObject("fastq", str(path.resolve()), opts)
        t = time.perf_counter()
        co.preprocess(force=True)
        build = time.perf_counter() - t
        index_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(where) for f in fs)
        size = path.stat().st_size
        index = co.dataset().indexes[0]
        row = {"spacing": spacing or "default", "points": len(index.tables["seeks"]), "build_s": round(build, 2),
               "index_pct": round(100 * index_bytes / size, 3)}
        for strategy in ("records", "bytes"):
            for n in counts:
                slices = co.slices(strategy=strategy, num_slices=n)
                row[f"{strategy}_{n}"] = round(sum(s.nbytes for s in slices) / size, 4)
                row[f"{strategy}_{n}_slices"] = len(slices)
        return row
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", type=Path)
    ap.add_argument("--spacings", nargs="*", default=["256k", "512k", "1m", "2m", "8m", ""])
    ap.add_argument("--slices", type=int, nargs="*", default=[8, 64, 200])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gzip_spacing.json")
    args = ap.parse_args()
    path = args.file
    if path is None:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from run import prepare_data  # the benchmark's own FASTQ and its gzip -6

        path = prepare_data(300, ["gz"]).gz
    zp = min(zlib_pass(path) for _ in range(2))
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB compressed; one Python zlib pass {zp:.2f} s")
    rows = []
    for spacing in args.spacings:
        row = measure(path, spacing or None, args.slices)
        row["build_vs_zlib"] = round(row["build_s"] / zp, 2)
        rows.append(row)
        print(json.dumps(row))
    head = ["spacing", "points", "build s (x zlib)", "index %"] + [f"records {n}" for n in args.slices] + [
        f"bytes {n}" for n in args.slices]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["spacing"], str(r["points"]), f"{r['build_s']} ({r['build_vs_zlib']}x)", f"{r['index_pct']} %"]
        cells += [f"{r[f'records_{n}']:.3f}" for n in args.slices]
        cells += [f"{r[f'bytes_{n}']:.3f} ({r[f'bytes_{n}_slices']})" for n in args.slices]
        print("| " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"file": str(path), "zlib_pass_s": zp, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
