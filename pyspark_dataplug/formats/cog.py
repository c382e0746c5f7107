"""Cloud-Optimized GeoTIFF: one row per tile of one overview level.

Columns: ``level`` (0 = full resolution, then the overviews from the largest down), ``tile_col``,
``tile_row``, ``x_off``, ``y_off`` (pixel offsets of the tile in its level), ``width``, ``height`` (cropped at
the image edge), ``bands``, ``dtype`` (numpy's name: ``uint8``, ``float32``, ...), ``data`` (the tile's
pixels: band-major ``(bands, height, width)``, C order, little-endian, edge tiles cropped, so
``np.frombuffer(data, dtype).reshape(bands, height, width)``), ``xmin``, ``ymin``, ``xmax``, ``ymax`` (the
tile's bounds in the file's CRS, from the GeoTIFF tags as GDAL reads them) and ``crs`` (``EPSG:<code>``,
null when the file names none).

**The index is the TIFF header**: every IFD, read with a few ranged GETs from the object's start (a COG keeps
its IFDs and tile tables before the pixels: one 64 KiB read for most), never the whole object. It holds,
per level, the image and tile sizes, bands, sample type, compression, predictor and planar configuration,
and, per tile, its byte offset and length; plus the geotransform and EPSG code. Masks (GDAL's internal
per-dataset masks, NewSubfileType 4) are counted and skipped: nodata values and alpha bands are pixels
like any other. A TIFF stored in strips, a header that ends early, a tile outside the object and an
unsupported compression fail the build, naming the object, the byte and what to do.

**Levels.** ``level`` selects what a read returns: ``0`` (the default: the image itself), another level, a
comma-separated list, or ``all``. The ``level`` column says which level a row comes from; filters on it are
applied to the rows the option selected (pushed ``level`` filters only prune within them), so to query
across levels read with ``level=all``.

**Slices and strategies.** Tiles are taken in file order, which for a COG is row-major within each level:
a slice is a run of neighbouring tiles read as one ranged GET (tiles a few bytes apart; reads span gaps
of up to ``maxGap`` bytes, here the bytes of pruned tiles, so a bbox query is a few GETs, not one per tile).
``tiles`` (default) gives every slice an equal number of tiles; ``bytes`` equal compressed bytes, which
balances reads when compression varies (empty tiles cost nothing to store). Decoding streams each range in
pieces and yields a record batch per ~32 MB of decoded tiles, so a task's memory does not grow with its
slice.

**Pruning.** ``bbox`` (``xmin,ymin,xmax,ymax`` in the file's CRS) keeps the tiles whose bounds intersect the
closed box, and returns only those; comparisons on ``xmin``/``ymin``/``xmax``/``ymax`` (and ``level``) that
Spark pushes when ``spark.sql.python.filterPushdown.enabled`` is true prune the same way (Spark applies them
to the rows). Both act at planning, from the index alone, so slices still know their exact row counts.

**Decoding** (imagecodecs, into preallocated buffers): uncompressed, LZW, Deflate, ZSTD, LZMA, PackBits,
JPEG (8-bit; YCbCr returned as RGB, as GDAL and tifffile do) and WebP; predictors 2 (integers) and 3
(floats); pixel or band interleaving; 8- to 64-bit integer and 16- to 64-bit float samples; little- and
big-endian, classic TIFF and BigTIFF. Sparse tiles (no bytes, GDAL's SPARSE_OK) read as the nodata value,
or 0. Every tile's decoded length is checked, so a corrupt tile is an error naming it, never a short row.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_strategy
from ..errors import FormatError, IndexFormatError, OptionError
from ..options import Opt
from ..slices import ByteRange, RangeTaker, Slice
from ..storage import get_storage
from ._base import Format
from ._spatial import Box, box_from_filters, parse_bbox

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import RangeReader
    from ..storage import ObjectInfo, StorageOptions

#: how a decoder gets a tile's bytes: (range index, offset in the range, length) -> bytes
Take = Callable[[int, int, int], "bytes | memoryview"]
#: decoded bytes per record batch: a task holds about one batch of pixels plus one piece of its range
BATCH_BYTES = 32 << 20
#: what the tile-extent columns mean to :func:`box_from_filters`
_EXTENT = {"xmin": "x", "xmax": "x", "ymin": "y", "ymax": "y"}
#: level description fields kept in the index and passed to decoders (everything but the tile arrays)
_LEVEL_FIELDS = ("level", "ifd", "width", "height", "tile_width", "tile_height", "bands", "planar", "dtype",
                 "compression", "predictor", "photometric", "extrasamples", "jpegtables", "nodata", "across", "down")


def parse_levels(spec: Any) -> list[int] | None:
    """``0``, ``2``, ``0,1`` or ``all`` -> the levels asked for (None: all of them)."""
    text = str(spec if spec is not None else "0").strip().lower()
    if text == "all":
        return None
    try:
        levels = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        levels = []
    if not levels or levels[0] < 0:
        raise OptionError(f"bad value {spec!r} for option 'level': write a level number (0 = full resolution, 1 = "
                          "the largest overview, ...), several separated by commas, or 'all'")
    return levels


@dataclass
class _Layout:
    """One object's levels and tile tables, from its index (planning) or from its header (a scan)."""

    uri: str
    levels: list[dict[str, Any]]
    offsets: list[np.ndarray]  # per level: (planes, tiles) int64
    counts: list[np.ndarray]
    geotransform: list[float]
    crs: str | None

    @classmethod
    def from_index(cls, index: Index) -> _Layout:
        uri = index.source.uri
        try:
            levels = index.tables["levels"].to_pylist()
            tiles = index.tables["tiles"]
            lv_col = tiles.column("level").to_numpy()
            off, cnt = tiles.column("offset").to_numpy(), tiles.column("nbytes").to_numpy()
            offsets, counts = [], []
            for lv in levels:
                sel = lv_col == lv["level"]
                shape = (int(lv["bands"]) if lv["planar"] == 2 else 1, int(lv["across"]) * int(lv["down"]))
                offsets.append(off[sel].reshape(shape))
                counts.append(cnt[sel].reshape(shape))
            attrs = index.attrs
            return cls(uri, levels, offsets, counts, list(attrs["geotransform"]), attrs.get("crs"))
        except (KeyError, ValueError) as e:
            raise IndexFormatError(f"{uri}: its cog index is damaged ({e}); rebuild it with: dataplug index --force "
                                   f"--format cog {uri}") from e

    @classmethod
    def from_header(cls, uri: str, info: Mapping[str, Any]) -> _Layout:
        levels = [{k: lv[k] for k in _LEVEL_FIELDS} for lv in info["levels"]]
        planes = [lv["bands"] if lv["planar"] == 2 else 1 for lv in levels]
        offsets = [np.asarray(lv["offsets"]).reshape(p, -1) for lv, p in zip(info["levels"], planes, strict=True)]
        counts = [np.asarray(lv["counts"]).reshape(p, -1) for lv, p in zip(info["levels"], planes, strict=True)]
        return cls(uri, levels, offsets, counts, list(info["geotransform"]), info.get("crs"))

    def transform(self, k: int) -> list[float]:
        from ._tiff import level_transform

        full, lv = self.levels[0], self.levels[k]
        return level_transform(self.geotransform, (full["width"], full["height"]), (lv["width"], lv["height"]))


def _geometry(lv: Mapping[str, Any], tile: np.ndarray) -> dict[str, np.ndarray]:
    """Column, row, pixel offsets and cropped sizes of tiles of one level."""
    across, tw, th = int(lv["across"]), int(lv["tile_width"]), int(lv["tile_height"])
    col, row = tile % across, tile // across
    x0, y0 = col * tw, row * th
    return {"col": col, "row": row, "x0": x0, "y0": y0, "w": np.minimum(tw, int(lv["width"]) - x0),
            "h": np.minimum(th, int(lv["height"]) - y0)}


class COG(Format):
    """Tiles of a (Cloud-Optimized) GeoTIFF as rows; see the module docstring for the columns and options.

    Examples
    --------
    >>> df = (spark.read.format("dataplug").option("bbox", "500000,4590000,510000,4600000")
    ...       .load("s3://imagery/scene.tif"))  # doctest: +SKIP
    >>> from pyspark_dataplug import CloudObject
    >>> co = CloudObject.from_path(COG, "scene.tif", level="1")  # doctest: +SKIP
    >>> co.preprocess()  # doctest: +SKIP
    >>> tiles = co.partition(partition_tiles_batches, num_batches=8)[0].get()  # doctest: +SKIP
    """

    name: ClassVar[str] = "cog"
    options: ClassVar[tuple[Opt, ...]] = (
        Opt("level", "str", "0",
            doc="the level to read: 0 = full resolution (default), 1 = the largest overview, ...; several "
                "comma-separated, or 'all'"),
        Opt("bbox", "str", None,
            doc="xmin,ymin,xmax,ymax in the file's CRS: read and return only the tiles that intersect it"),
        Opt("maxGap", "size", 1 << 20, bounds=(0, 1 << 30),
            doc="bytes of unneeded tiles one ranged read may span rather than being split in two (a GET costs "
                "about as much as reading 1 MB from S3)"),
    )
    strategies: ClassVar[dict[str, str]] = {
        "tiles": "equal numbers of tiles per slice (neighbouring tiles, in file order)",
        "bytes": "equal compressed bytes per slice",
    }

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        # validated here, so a bad value fails when the read is planned, not in a task
        self.level_spec = parse_levels(self.params.get("level"))
        self.box: Box | None = None
        if self.params.get("bbox"):
            self.box = parse_bbox(self.params["bbox"])
            if not (math.isinf(self.box.zmin) and math.isinf(self.box.zmax)):
                raise OptionError(f"bad bbox {self.params['bbox']!r} for cog: a raster is 2-D, write "
                                  "xmin,ymin,xmax,ymax")
        self._memo: dict[int, tuple[Any, dict[str, np.ndarray], _Layout]] = {}

    def required(self, step: str) -> tuple[str, ...]:
        """Only pixels need a codec: the index and reads of the other columns import nothing optional."""
        select = self.params.get("select")
        return ("imagecodecs",) if step == "read" and (not select or "data" in select) else ()

    def extent(self, index: Index, slice_: Slice) -> tuple[float, float, float, float] | None:
        """The bounds of the slice's tiles, from the tile numbers and level transforms its context carries."""
        from ._tiff import tile_bounds

        ctx = slice_.context
        if ctx.get("scan") or not ctx.get("tiles"):
            return None
        tiles = np.asarray(ctx["tiles"], dtype=np.int64).reshape(-1, 3)
        lo_x, lo_y, hi_x, hi_y = [], [], [], []
        for level in np.unique(tiles[:, 0]).tolist():
            lv = ctx["levels"][str(level)]
            g = _geometry(lv, tiles[tiles[:, 0] == level, 1])
            xmin, ymin, xmax, ymax = tile_bounds(lv["transform"], g["x0"], g["y0"], g["w"], g["h"])
            lo_x.append(xmin.min())
            lo_y.append(ymin.min())
            hi_x.append(xmax.max())
            hi_y.append(ymax.max())
        return float(min(lo_x)), float(min(lo_y)), float(max(hi_x)), float(max(hi_y))

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        i32, f64 = pa.int32(), pa.float64()
        return pa.schema([
            pa.field("level", i32), pa.field("tile_col", i32), pa.field("tile_row", i32), pa.field("x_off", i32),
            pa.field("y_off", i32), pa.field("width", i32), pa.field("height", i32), pa.field("bands", i32),
            pa.field("dtype", pa.string()), pa.field("data", pa.binary()), pa.field("xmin", f64),
            pa.field("ymin", f64), pa.field("xmax", f64), pa.field("ymax", f64), pa.field("crs", pa.string()),
        ])

    # -- index build: one task per object reads its header -------------------------------------------------
    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str,
                    storage: StorageOptions | None = None) -> list[dict[str, Any]]:
        return [{"uri": info.uri, "etag": info.etag, "size": info.size}]

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        from ._tiff import parse_tiff

        uri, size, etag = task["uri"], int(task["size"]), task.get("etag")
        st = get_storage(uri, storage)
        info = parse_tiff(uri, size, lambda a, b: st.read(uri, a, b, etag=etag))
        levels = []
        for lv in info["levels"]:
            out = {k: lv[k] for k in _LEVEL_FIELDS}
            for key in ("offsets", "counts"):  # compact: a big COG has tens of thousands of tiles
                out[key] = base64.b64encode(np.asarray(lv[key], dtype="<i8").tobytes()).decode()
            levels.append(out)
        return [{**{k: v for k, v in info.items() if k != "levels"}, "levels": levels}]

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        (row,) = rows
        levels = row["levels"]
        cols: dict[str, list[np.ndarray]] = {"level": [], "plane": [], "tile": [], "offset": [], "nbytes": []}
        decoded = []
        for lv in levels:
            off = np.frombuffer(base64.b64decode(lv.pop("offsets")), dtype="<i8")
            cnt = np.frombuffer(base64.b64decode(lv.pop("counts")), dtype="<i8")
            n = int(lv["across"]) * int(lv["down"])
            planes = len(off) // n
            cols["level"].append(np.full(len(off), lv["level"], np.int16))
            cols["plane"].append(np.repeat(np.arange(planes, dtype=np.int16), n))
            cols["tile"].append(np.tile(np.arange(n, dtype=np.int32), planes))
            cols["offset"].append(off.astype(np.int64))
            cols["nbytes"].append(cnt.astype(np.int64))
            decoded.append(int(lv["width"]) * int(lv["height"]) * int(lv["bands"]) * np.dtype(lv["dtype"]).itemsize)
        tiles = pa.table({k: pa.array(np.concatenate(v)) for k, v in cols.items()})
        level_table = pa.Table.from_pylist(levels, schema=pa.schema([
            ("level", pa.int32()), ("ifd", pa.int32()), ("width", pa.int64()), ("height", pa.int64()),
            ("tile_width", pa.int32()), ("tile_height", pa.int32()), ("bands", pa.int32()), ("planar", pa.int32()),
            ("dtype", pa.string()), ("compression", pa.int32()), ("predictor", pa.int32()),
            ("photometric", pa.int32()), ("extrasamples", pa.list_(pa.int32())), ("jpegtables", pa.string()),
            ("nodata", pa.string()), ("across", pa.int64()), ("down", pa.int64())]))
        attrs = {k: row[k] for k in ("geotransform", "georeferenced", "crs", "pixel_is_point", "masks", "ifds",
                                     "bigtiff", "byteorder", "header_reads", "header_bytes")}
        manifest: dict[str, Any] = {
            "index_params": self.index_params(),
            "records": int(sum(int(lv["across"]) * int(lv["down"]) for lv in levels)),
            "levels": len(levels), "uncompressed_size": decoded[0], "attrs": attrs,
            "tiles_per_level": [int(lv["across"]) * int(lv["down"]) for lv in levels],
        }
        return Index(manifest, {"levels": level_table, "tiles": tiles})

    # -- planning -------------------------------------------------------------------------------------------
    def _chosen(self, lay: _Layout) -> list[int]:
        n = len(lay.levels)
        levels = list(range(n)) if self.level_spec is None else self.level_spec
        if levels[-1] >= n:
            raise OptionError(f"option level={self.params.get('level')!r}: {lay.uri} has {n} level(s), 0 (full "
                              f"resolution) to {n - 1}; use level=all for every one")
        pushed = (self.params.get("pushed") or {}).get("levels")
        if pushed is not None:
            lo, hi = pushed
            levels = [k for k in levels if lo <= k <= hi]
        return levels

    def _boxes(self) -> list[Box]:
        boxes = [self.box] if self.box is not None else []
        pushed = (self.params.get("pushed") or {}).get("box")
        if pushed is not None:
            boxes.append(Box.from_json(pushed))
        return boxes

    def _select(self, lay: _Layout) -> dict[str, np.ndarray]:
        """The tiles a read returns (chosen levels, pruned by the boxes), in file order."""
        from ._tiff import tile_bounds

        parts = []
        pmax = max((o.shape[0] for o in lay.offsets), default=1)
        boxes = self._boxes()
        for k in self._chosen(lay):
            lv = lay.levels[k]
            tile = np.arange(int(lv["across"]) * int(lv["down"]), dtype=np.int64)
            g = _geometry(lv, tile)
            if boxes:
                xmin, ymin, xmax, ymax = tile_bounds(lay.transform(k), g["x0"], g["y0"], g["w"], g["h"])
                keep = np.ones(len(tile), dtype=bool)
                for b in boxes:
                    keep &= (xmin <= b.xmax) & (xmax >= b.xmin) & (ymin <= b.ymax) & (ymax >= b.ymin)
                tile = tile[keep]
                g = {key: v[keep] for key, v in g.items()}
            off = np.zeros((len(tile), pmax), np.int64)
            cnt = np.zeros((len(tile), pmax), np.int64)
            planes = lay.offsets[k].shape[0]
            off[:, :planes] = lay.offsets[k][:, tile].T
            cnt[:, :planes] = lay.counts[k][:, tile].T
            parts.append({
                "level": np.full(len(tile), k, np.int64), "tile": tile, "off": off, "cnt": cnt,
                "planes": np.full(len(tile), planes, np.int64),
                "decoded": g["w"] * g["h"] * int(lv["bands"]) * np.dtype(lv["dtype"]).itemsize,
            })
        if not parts:
            return {"level": np.zeros(0, np.int64), "tile": np.zeros(0, np.int64),
                    "off": np.zeros((0, pmax), np.int64), "cnt": np.zeros((0, pmax), np.int64),
                    "planes": np.zeros(0, np.int64), "decoded": np.zeros(0, np.int64)}
        sel = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        first = np.where(sel["cnt"] > 0, sel["off"], np.iinfo(np.int64).max).min(axis=1)
        order = np.lexsort((sel["tile"], sel["level"], first))  # file order; sparse tiles (no bytes) last
        return {key: v[order] for key, v in sel.items()}

    def _selection(self, index: Index) -> tuple[dict[str, np.ndarray], _Layout]:
        memo = self._memo.get(id(index))
        if memo is None or memo[0] is not index:
            lay = _Layout.from_index(index)
            memo = (index, self._select(lay), lay)
            self._memo[id(index)] = memo
        return memo[1], memo[2]

    def units(self, index: Index, strategy: str) -> int:
        sel, _ = self._selection(index)
        if strategy == "bytes":
            return int(np.maximum(sel["cnt"].sum(axis=1), 1).sum())
        return len(sel["tile"])

    def weight(self, index: Index) -> int:
        sel, _ = self._selection(index)
        return int(sel["decoded"].sum())

    def slices(self, index: Index, strategy: str, cuts: list[int],
               storage_options: StorageOptions) -> list[Slice | None]:
        sel, lay = self._selection(index)
        n = len(sel["tile"])
        if strategy == "bytes":
            bounds = np.concatenate(([0], np.cumsum(np.maximum(sel["cnt"].sum(axis=1), 1))))
            ks = []
            for c in cuts:
                j = int(np.searchsorted(bounds, c))
                ks.append(min((i for i in (j - 1, j) if 0 <= i <= n), key=lambda i: abs(int(bounds[i]) - c)))
            ks[0], ks[-1] = 0, n
            ks = list(np.maximum.accumulate(ks))
        else:
            ks = list(cuts)
        return [self._slice(index.source, lay, sel, int(a), int(b), storage_options) if b > a else None
                for a, b in zip(ks, ks[1:], strict=False)]

    def _slice(self, source: ObjectInfo, lay: _Layout, sel: Mapping[str, np.ndarray], a: int, b: int,
               storage_options: StorageOptions) -> Slice:
        """Tiles ``[a, b)`` of the selection: their segments coalesced into ranged reads."""
        select = self.params.get("select")
        want = not select or "data" in select
        planes = sel["planes"][a:b]
        tiles = np.stack([sel["level"][a:b], sel["tile"][a:b], planes], axis=1)
        mask = np.arange(sel["off"].shape[1])[None, :] < planes[:, None]
        seg_off, seg_cnt = sel["off"][a:b][mask], sel["cnt"][a:b][mask]  # tile by tile, plane by plane
        ranges: list[ByteRange] = []
        seg_range = np.full(len(seg_off), -1, np.int64)
        seg_rel = np.zeros(len(seg_off), np.int64)
        stream = True
        if want:
            gap = int(self.params.get("maxGap", 1 << 20))
            real = np.flatnonzero(seg_cnt > 0)
            order = real[np.argsort(seg_off[real], kind="stable")]
            spans: list[list[int]] = []
            for i in order.tolist():
                s, e = int(seg_off[i]), int(seg_off[i] + seg_cnt[i])
                if spans and s - spans[-1][1] <= gap:
                    spans[-1][1] = max(spans[-1][1], e)
                else:
                    spans.append([s, e])
                seg_range[i] = len(spans) - 1
                seg_rel[i] = s - spans[-1][0]
            ranges = [ByteRange(source.uri, s, e) for s, e in spans]
            # decoding streams a range only when its tiles come in increasing offsets (always, for a COG)
            for r in range(len(spans)):
                rel = seg_rel[seg_range == r]
                if len(rel) > 1 and (np.diff(rel) < 0).any():
                    stream = False
        used = sorted({int(k) for k in tiles[:, 0]})
        levels = {str(k): {**lay.levels[k], "transform": lay.transform(k)} for k in used}
        context = {  # flat lists of ints: JSON-able like every slice's context, and readable in dataplug inspect
            "tiles": tiles.ravel().tolist(), "segs": np.stack([seg_range, seg_rel, seg_cnt, seg_off], axis=1)
            .ravel().tolist(), "levels": levels, "crs": lay.crs, "stream": stream,
        }
        return Slice(format=self.name, uri=source.uri, etag=source.etag, ranges=tuple(ranges), params=self.params,
                     context=context, storage=storage_options, rows=b - a)

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        return Slice(format=self.name, uri=info.uri, etag=info.etag, ranges=(ByteRange(info.uri, 0, info.size),),
                     params=self.params, context={"scan": True}, storage=storage_options)

    # -- decoding -----------------------------------------------------------------------------------------
    def decode(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        ctx = slice_.context
        if ctx.get("scan"):  # no index: the whole object, its header parsed here
            from ._tiff import parse_tiff

            raw = data.read(0)
            lay = _Layout.from_header(slice_.uri, parse_tiff(slice_.uri, len(raw), lambda a, b: raw[a:b]))
            sel = self._select(lay)
            inner = self._slice(_source(slice_, len(raw)), lay, sel, 0, len(sel["tile"]), slice_.storage)
            if not inner.rows:
                return
            ctx = dict(inner.context, stream=False)
            ranges = inner.ranges

            view = memoryview(raw)

            def take(r: int, rel: int, n: int) -> memoryview:
                start = ranges[r].start + rel
                return view[start: start + n]

            yield from self._decode(slice_, ctx, take)
            return
        streams = RangeTaker(data, bool(ctx.get("stream", True)), "a tile")
        try:
            yield from self._decode(slice_, ctx, streams.take)
        finally:
            streams.close()

    def _decode(self, slice_: Slice, ctx: Mapping[str, Any], take: Take) -> Iterator[pa.RecordBatch]:
        """Record batches of about :data:`BATCH_BYTES` decoded bytes, tile by tile in the slice's order."""
        import pyarrow as pa

        from ._tiff import TileDecoder, tile_bounds

        tiles = np.asarray(ctx["tiles"], dtype=np.int64).reshape(-1, 3)  # level, tile, planes
        segs = np.asarray(ctx["segs"], dtype=np.int64).reshape(-1, 4)  # range, offset in it, bytes, object offset
        seg_start = np.concatenate(([0], np.cumsum(tiles[:, 2])))
        levels = {int(k): v for k, v in ctx["levels"].items()}
        select = self.params.get("select")
        want = not select or "data" in select
        # per-tile geometry and output sizes, vectorised per level
        n = len(tiles)
        geo = {key: np.zeros(n, np.int64) for key in ("col", "row", "x0", "y0", "w", "h", "bands", "nbytes")}
        bounds = [np.zeros(n) for _ in range(4)]
        dtype_names = np.empty(n, dtype=object)
        for k, lv in levels.items():
            m = tiles[:, 0] == k
            g = _geometry(lv, tiles[m, 1])
            for key in ("col", "row", "x0", "y0", "w", "h"):
                geo[key][m] = g[key]
            geo["bands"][m] = int(lv["bands"])
            dt = np.dtype(lv["dtype"])
            geo["nbytes"][m] = g["w"] * g["h"] * int(lv["bands"]) * dt.itemsize
            dtype_names[m] = dt.name
            for out, v in zip(bounds, tile_bounds(lv["transform"], g["x0"], g["y0"], g["w"], g["h"]), strict=True):
                out[m] = v
        decoders: dict[int, TileDecoder] = {}
        schema = self.output_schema()
        crs = ctx.get("crs")
        start = 0
        while start < n:
            stop = start + 1
            total = int(geo["nbytes"][start])
            while stop < n and total + int(geo["nbytes"][stop]) <= BATCH_BYTES:
                total += int(geo["nbytes"][stop])
                stop += 1
            cols: dict[str, Any] = {}
            if want:
                cols["data"] = self._pixels(slice_, tiles, segs, seg_start, geo, levels, decoders, start, stop,
                                            total, take)
            sl = slice(start, stop)
            i32 = pa.int32()
            cols.update({
                "level": pa.array(tiles[sl, 0], i32), "tile_col": pa.array(geo["col"][sl], i32),
                "tile_row": pa.array(geo["row"][sl], i32), "x_off": pa.array(geo["x0"][sl], i32),
                "y_off": pa.array(geo["y0"][sl], i32), "width": pa.array(geo["w"][sl], i32),
                "height": pa.array(geo["h"][sl], i32), "bands": pa.array(geo["bands"][sl], i32),
                "dtype": pa.array(dtype_names[sl], pa.string()), "xmin": pa.array(bounds[0][sl]),
                "ymin": pa.array(bounds[1][sl]), "xmax": pa.array(bounds[2][sl]), "ymax": pa.array(bounds[3][sl]),
                "crs": pa.array([crs] * (stop - start), pa.string()),
            })
            yield pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)
            start = stop

    def _pixels(self, slice_: Slice, tiles: np.ndarray, segs: np.ndarray, seg_start: np.ndarray,
                geo: Mapping[str, np.ndarray], levels: Mapping[int, Mapping[str, Any]], decoders: dict[int, Any],
                start: int, stop: int, total: int, take: Take) -> pa.Array:
        """The ``data`` column of tiles ``[start, stop)``: decoded straight into one buffer for the batch."""
        import pyarrow as pa

        from ._tiff import TileDecoder

        if total >= 1 << 31:
            raise FormatError(slice_.uri, None, f"a tile of {total} decoded bytes does not fit a binary value")
        out = np.empty(total, dtype=np.uint8)
        offsets = np.zeros(stop - start + 1, dtype=np.int32)
        np.cumsum(geo["nbytes"][start:stop], out=offsets[1:])
        for j, i in enumerate(range(start, stop)):
            k = int(tiles[i, 0])
            dec = decoders.get(k)
            if dec is None:
                dec = decoders[k] = TileDecoder(slice_.uri, levels[k])
            raws, wheres = [], []
            for r, rel, cnt, at in segs[seg_start[i]: seg_start[i + 1]].tolist():
                raws.append(take(r, rel, cnt) if cnt > 0 else b"")
                wheres.append(at)
            dt = np.dtype(levels[k]["dtype"]).newbyteorder("<")
            view = out[offsets[j]: offsets[j + 1]].view(dt).reshape(int(geo["bands"][i]), int(geo["h"][i]),
                                                                    int(geo["w"][i]))
            what = f"level {k} tile (col {geo['col'][i]}, row {geo['row'][i]})"
            dec.decode(raws, wheres, view, what)
        return pa.Array.from_buffers(pa.binary(), stop - start, [None, pa.py_buffer(offsets), pa.py_buffer(out)])

    # -- pushed filters ---------------------------------------------------------------------------------------
    @staticmethod
    def push_filters(filters: list[Any]) -> dict[str, Any]:
        """Pruning from pushed comparisons on the tile extent (``xmin``, ``ymin``, ``xmax``, ``ymax``) and ``level``.

        A tile is kept when it *can* match: its extent intersects the box the comparisons imply, its level
        lies in the range they allow. Spark applies every filter to the rows anyway.
        """
        out: dict[str, Any] = {}
        box = box_from_filters(filters, _EXTENT)
        if box is not None:
            out["box"] = box.to_json()
        lo, hi, found = 0, 1 << 30, False
        for f in filters:
            if ".".join(getattr(f, "attribute", ()) or ()) != "level":
                continue
            kind, value = type(f).__name__, getattr(f, "value", None)
            if kind == "In":
                vals = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
                if len(vals) == len(value) and vals:
                    lo, hi, found = max(lo, min(vals)), min(hi, max(vals)), True
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            found = True
            if kind == "EqualTo":
                lo, hi = max(lo, math.ceil(value)), min(hi, math.floor(value))
            elif kind == "GreaterThan":
                lo = max(lo, math.floor(value) + 1)
            elif kind == "GreaterThanOrEqual":
                lo = max(lo, math.ceil(value))
            elif kind == "LessThan":
                hi = min(hi, math.ceil(value) - 1)
            elif kind == "LessThanOrEqual":
                hi = min(hi, math.floor(value))
            else:
                found = False
        if found:
            out["levels"] = [lo, hi]
        return {"pushed": out} if out else {}


def _source(slice_: Slice, size: int) -> ObjectInfo:
    from ..storage import ObjectInfo

    return ObjectInfo(slice_.uri, size, slice_.etag)


partition_tiles_batches = by_strategy("tiles")
partition_bytes_batches = by_strategy("bytes")


# The seed Dataplug's names (formats.geospatial.cog): ``n_splits`` x ``n_splits`` slices of neighbouring tiles
# (runs of tiles in file order, not a grid of windows: read an area with the ``bbox`` option)
CloudOptimizedGeoTiff = COG
grid_partition_strategy = by_strategy("tiles", "n_splits", squared=True)
