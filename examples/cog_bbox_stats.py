"""Per-band statistics of the tiles of a Cloud-Optimized GeoTIFF that meet a box: only those tiles are read.

    python examples/cog_bbox_stats.py s3://imagery/scene.tif 500000,4590000,510000,4600000
    python examples/cog_bbox_stats.py                 # makes a small local COG first (needs rasterio)
    python examples/cog_bbox_stats.py --slices        # the same without Spark: slices in a process pool

The ``bbox`` option keeps the tiles whose bounds intersect the box (in the file's CRS) and fetches only
their bytes. A row's ``data`` holds its pixels band-major: ``np.frombuffer(data, dtype).reshape(bands,
height, width)``, so per-tile work is a few numpy calls inside ``mapInArrow`` (or on a slice's table).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

STATS_SCHEMA = "band int, total double, pixels long, low double, high double"


def sample(path: Path) -> str:
    """A 3-band uint16 COG of 2000 x 1500 pixels in 256-pixel tiles, UTM 33N, 10 m pixels."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin

    yy, xx = np.mgrid[0:1500, 0:2000]
    data = np.stack([(1000 + 300 * np.sin(xx / (80 + 20 * b)) * np.cos(yy / 90)) for b in range(3)]).astype(np.uint16)
    src = path.with_suffix(".src.tiff")
    with rasterio.open(src, "w", driver="GTiff", height=1500, width=2000, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 4600000, 10, 10)) as d:
        d.write(data)
    rasterio.shutil.copy(src, path, driver="COG", COMPRESS="DEFLATE", PREDICTOR="2", BLOCKSIZE=256)
    src.unlink()
    return str(path)


def tile_stats(batches: Iterator[Any]) -> Iterator[Any]:
    """Arrow batches of tiles -> one batch of per-band sums, pixel counts, minima and maxima per input batch."""
    import pyarrow as pa

    for batch in batches:
        acc: dict[int, list[float]] = {}
        cols = batch.to_pydict()
        for data, dtype, bands, h, w in zip(cols["data"], cols["dtype"], cols["bands"], cols["height"], cols["width"],
                                            strict=True):
            pixels = np.frombuffer(data, dtype).reshape(bands, h, w)
            for b in range(bands):
                a = acc.setdefault(b, [0.0, 0, np.inf, -np.inf])
                a[0] += float(pixels[b].sum(dtype=np.float64))
                a[1] += h * w
                a[2] = min(a[2], float(pixels[b].min()))
                a[3] = max(a[3], float(pixels[b].max()))
        keys = sorted(acc)
        yield pa.RecordBatch.from_pydict({
            "band": pa.array(keys, pa.int32()), "total": pa.array([acc[k][0] for k in keys], pa.float64()),
            "pixels": pa.array([acc[k][1] for k in keys], pa.int64()),
            "low": pa.array([acc[k][2] for k in keys], pa.float64()),
            "high": pa.array([acc[k][3] for k in keys], pa.float64())})


def _combine(parts: list[dict[str, list[Any]]]) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for part in parts:
        for b, total, pixels, low, high in zip(part["band"], part["total"], part["pixels"], part["low"], part["high"],
                                               strict=True):
            o = out.setdefault(b, {"total": 0.0, "pixels": 0, "low": np.inf, "high": -np.inf})
            o["total"] += total
            o["pixels"] += pixels
            o["low"], o["high"] = min(o["low"], low), max(o["high"], high)
    return {b: {"mean": o["total"] / o["pixels"], "pixels": o["pixels"], "min": o["low"], "max": o["high"]}
            for b, o in sorted(out.items())}


def _slice_stats(blob: bytes) -> list[dict[str, list[Any]]]:
    import pickle

    return [b.to_pydict() for b in tile_stats(pickle.loads(blob).batches())]


def run_slices(uri: str, bbox: str, workers: int = 2, **options: Any) -> dict[int, dict[str, float]]:
    """Without Spark: the index, then the box's slices evaluated in a process pool (they pickle)."""
    import multiprocessing
    import pickle

    from pyspark_dataplug.index.build import plan_build, run_tasks_locally
    from pyspark_dataplug.plan import open_dataset

    print(plan_build(uri, "cog", **options).run(run_tasks_locally))
    slices = [s for p in open_dataset({"path": uri, "bbox": bbox, **options}).plan(partitions=workers * 2)
              for s in p]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_slice_stats, [pickle.dumps(s) for s in slices])
    result = _combine([p for part in parts for p in part])
    print(result)
    return result


def run_spark(spark: Any, uri: str, bbox: str, **options: Any) -> dict[int, dict[str, float]]:
    """The same with Spark: the tiles in the box as rows, per-band statistics with ``mapInArrow``."""
    from pyspark import cloudpickle

    import pyspark_dataplug

    # Spark's Python workers cannot import this script: send ``tile_stats`` by value, not by module name
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    print(pyspark_dataplug.build_index(spark, uri, format="cog", **options))
    reader = spark.read.format("dataplug").option("format", "cog").option("bbox", bbox)
    for k, v in options.items():
        reader = reader.option(k, v)
    stats = reader.load(uri).mapInArrow(tile_stats, STATS_SCHEMA).collect()
    result = _combine([{k: [r[k] for r in stats] for k in ("band", "total", "pixels", "low", "high")}])
    print(result)
    return result


NDVI_SCHEMA = "tile_col int, tile_row int, ndvi double, pixels long"


def ndvi(spark: Any, uri: str, bbox: str, red: int = 0, nir: int = 1, **options: Any) -> list[dict[str, Any]]:
    """Band math over tiles, NDVI-style: ``(nir - red) / (nir + red)`` per pixel, its mean per tile in the box.

    Each task works on whole tiles with numpy inside ``mapInArrow``; nothing leaves the executors but one
    row per tile.
    """
    import pyarrow as pa
    from pyspark import cloudpickle

    import pyspark_dataplug

    print(pyspark_dataplug.build_index(spark, uri, format="cog", **options))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def per_tile(batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            out: dict[str, list[Any]] = {"tile_col": [], "tile_row": [], "ndvi": [], "pixels": []}
            cols = batch.to_pydict()
            for i, data in enumerate(cols["data"]):
                px = np.frombuffer(data, cols["dtype"][i]).reshape(cols["bands"][i], cols["height"][i],
                                                                    cols["width"][i]).astype(np.float64)
                total = px[nir] + px[red]
                index = np.divide(px[nir] - px[red], total, out=np.zeros_like(total), where=total != 0)
                out["tile_col"].append(cols["tile_col"][i])
                out["tile_row"].append(cols["tile_row"][i])
                out["ndvi"].append(float(index.mean()))
                out["pixels"].append(int(index.size))
            yield pa.RecordBatch.from_pydict(out, schema=pa.schema([
                ("tile_col", pa.int32()), ("tile_row", pa.int32()), ("ndvi", pa.float64()), ("pixels", pa.int64())]))

    reader = spark.read.format("dataplug").option("format", "cog").option("bbox", bbox)
    for k, v in options.items():
        reader = reader.option(k, v)
    rows = reader.load(uri).select("tile_col", "tile_row", "bands", "height", "width", "dtype", "data") \
        .mapInArrow(per_tile, NDVI_SCHEMA).orderBy("tile_row", "tile_col").collect()
    return [r.asDict() for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", nargs="?", help="a GeoTIFF (local path or s3://); default: a sample")
    parser.add_argument("bbox", nargs="?", default="503000,4590000,510000,4597000")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint")
    parser.add_argument("--slices", action="store_true", help="no Spark: slices in a process pool")
    args = parser.parse_args()
    if args.uri:
        uri = args.uri
    else:
        Path("demo-data").mkdir(exist_ok=True)
        uri = sample(Path("demo-data") / "scene.tif")
    options = {"endpointUrl": args.endpoint_url} if args.endpoint_url else {}
    if args.slices:
        run_slices(uri, args.bbox, **options)
        return
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[*]").appName("cog-bbox").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    run_spark(spark, uri, args.bbox, **options)
    spark.stop()


if __name__ == "__main__":
    main()
