"""COG decoding speed, one process, one thread, no Spark: dataplug's slices against tifffile on the same tiles.

Writes a 6000 x 6000 x 3 COG (216 MB decoded as uint16; 108 MB as uint8 for JPEG) with GDAL's COG driver
for each compression, builds its index, then times, best of 3 with the page cache warm:

- dataplug: every level-0 tile through ``Slice.batches()`` (ranged reads, decode, band-major crop, Arrow);
- tifffile ``page.segments(maxworkers=1)``: the same tiles decoded, pixel-interleaved, no Arrow;
- tifffile ``imread(maxworkers=1)``: the whole image into one array.

It also reports the index build (header bytes fetched, seconds) and what a bbox of 5% of the extent reads.

    .venv/bin/python benchmarks/cog_decode.py [--size 6000] [--dir /tmp] [--runs 3]
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

CASES = {  # name: (dtype, COG creation options)
    "deflate": ("uint16", {"COMPRESS": "DEFLATE", "PREDICTOR": "2"}),
    "zstd": ("uint16", {"COMPRESS": "ZSTD", "PREDICTOR": "2"}),
    "lzw": ("uint16", {"COMPRESS": "LZW", "PREDICTOR": "2"}),
    "jpeg": ("uint8", {"COMPRESS": "JPEG"}),
}


def write(root: Path, size: int) -> dict[str, Path]:
    """Smooth terrain-like bands plus noise (compresses ~1.5x losslessly, like real imagery)."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin

    out = {}
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bands = [np.sin(xx / 300 + b) * np.cos(yy / 250) for b in range(3)]
    noise = [rng.normal(0, 1, (size, size)).astype(np.float32) for _ in range(3)]
    for dtype in sorted({d for d, _ in CASES.values()}):
        src = root / f"cog_bench_{dtype}.src.tif"
        with rasterio.open(src, "w", driver="GTiff", height=size, width=size, count=3, dtype=dtype, tiled=True,
                           crs="EPSG:32633", transform=from_origin(500000, 4600000, 10, 10)) as d:
            for b in range(3):
                if dtype == "uint16":
                    d.write((2000 + 800 * bands[b] + 40 * noise[b]).astype(np.uint16), b + 1)
                else:
                    d.write((120 + 80 * bands[b] + 10 * noise[b]).clip(0, 255).astype(np.uint8), b + 1)
        for name, (dt, options) in CASES.items():
            if dt == dtype:
                out[name] = root / f"cog_bench_{name}.tif"
                if not out[name].exists():
                    rasterio.shutil.copy(src, out[name], driver="COG", BLOCKSIZE=512, OVERVIEWS="AUTO", **options)
        src.unlink()
    return out


def best(fn, runs: int) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=6000)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import tifffile

    files = write(Path(args.dir), args.size)
    print("| compression | file MB | tiles | decoded MB | dataplug tiles/s | dataplug MB/s | tifffile segments "
          "MB/s | tifffile imread MB/s | dataplug / segments |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for name, path in files.items():
        uri = str(path)
        IO_STATS.reset()
        t = time.perf_counter()
        plan_build(uri, "cog").run(run_tasks_locally, force=True)
        build_s = time.perf_counter() - t
        header = IO_STATS.bytes_read[uri]
        slices = [s for p in open_dataset({"path": uri}).plan(partitions=1) for s in p]
        counted = {}

        def dataplug(slices: list = slices, counted: dict = counted) -> None:
            n = nbytes = 0
            for s in slices:
                for b in s.batches():
                    n += b.num_rows
                    nbytes += b.column("data").nbytes - 4 * (b.num_rows + 1)
            counted.update(n=n, nbytes=nbytes)

        def segments(uri: str = uri) -> None:
            with tifffile.TiffFile(uri) as tif:
                for _ in tif.pages[0].segments(maxworkers=1):
                    pass

        t_dp = best(dataplug, args.runs)
        t_seg = best(segments, args.runs)
        t_imread = best(lambda uri=uri: tifffile.imread(uri, maxworkers=1), args.runs)
        mb = counted["nbytes"] / 1e6
        print(f"| {name} | {path.stat().st_size / 1e6:.0f} | {counted['n']} | {mb:.0f} | {counted['n'] / t_dp:.0f} | "
              f"{mb / t_dp:.0f} | {mb / t_seg:.0f} | {mb / t_imread:.0f} | {t_seg / t_dp:.2f}x |")
        ds = open_dataset({"path": uri})
        index = ds.indexes[0]
        left, top = 500000.0, 4600000.0
        extent = args.size * 10.0
        side = math.sqrt(0.05) * extent
        box = f"{left + 0.3 * extent},{top - 0.4 * extent - side},{left + 0.3 * extent + side},{top - 0.4 * extent}"
        pruned = sum(s.nbytes for p in open_dataset({"path": uri, "bbox": box}).plan(partitions=4) for s in p)
        tiles_bytes = sum(s.nbytes for s in slices)
        notes.append(f"{name}: index build {build_s * 1000:.0f} ms, header {header / 1024:.0f} KiB in "
                     f"{index.attrs['header_reads']} read(s), {index.manifest['levels']} levels; a 5% bbox plans "
                     f"{pruned / tiles_bytes:.1%} of the level-0 bytes")
    print()
    for line in notes:
        print("- " + line)


if __name__ == "__main__":
    main()
