"""LAS and LAZ point clouds: one row per point, sliced by point records (LAS) or whole LAZ chunks.

**The index** holds what the header says and where points are, read with a few ranged reads, never the whole
object: the header and VLR bytes (a blob, kept whole for tools that want the CRS or other VLRs), their parsed
essentials (point format, scales, offsets, the LASzip VLR, the row layout, see :mod:`._laspoints`), and a
table of *pieces*: the LAZ chunks from the chunk table (``[first point, points, byte offset, bytes]``), or, for
uncompressed LAS, runs of ``chunkPoints`` records. Each piece also has the exact bounds of its points
(``xmin``..``zmax``), from an x/y/z-only decoding pass: one task per object for small objects, else one task
per ~32 MiB of LAZ chunks (~256 MiB of LAS records), so big objects are indexed in parallel.

**Slices** cover consecutive pieces: any point range for LAS (strategy ``points`` cuts anywhere), runs of
whole chunks for LAZ (``points`` cuts at the chunk boundary nearest to equal point counts, ``chunks`` at equal
chunk counts). A slice fetches one byte range per run of adjacent pieces and nothing else: the header is in
the slice's context, never re-read. LAZ chunks are decoded one at a time with lazrs from their own bytes and
the LASzip VLR (``decompress_points_with_chunk_table``; never laz-rs's seeking reader, which returns wrong
points on variable-size chunks), and each becomes a record batch, so a task holds a chunk, not its slice.

**Pruning.** The ``bbox`` option (``xmin,ymin,xmax,ymax[,zmin,zmax]``, closed) drops the pieces whose bounds
miss the box and filters the points exactly, on the doubles the rows hold. Comparisons on ``x``, ``y``, ``z``
that Spark pushes (``spark.sql.python.filterPushdown.enabled``) prune pieces the same way; Spark filters the
rows. On spatially coherent files (flight lines, tiles, COPC) a small box reads a small part of the object.

**Rows** have the point format's dimensions in laspy's names (see :mod:`._laspoints` for the types): formats
0-10, LAS 1.0-1.4, extra-bytes dimensions. Objects read together must share their columns (point format and
extra bytes); scales and offsets may differ, since each slice carries its own object's.

**Speed** (``benchmarks/las_decode.py``, 2-core VM, one process, synthetic flight lines of 6-8 M points):
decoding is lazrs's, at the same points per second per core as ``laspy.read`` with the single-threaded lazrs
backend: 1.28-1.41 M points/s for all columns vs laspy's 1.42-1.49 (our share, the columns to Arrow, is ~10%);
``columns=x,y,z`` 2.1 M points/s on format 6 (lazrs skips the other layers). lazrs spends ~2 ms setting up
each chunk's decoder whatever its size, so files of tiny chunks (or COPC nodes) decode slower per point. The
index build decodes x/y/z once (1.3-1.9 M points/s per task). A task holds ``partsInFlight`` parts of
``partSize`` bytes, one chunk and its batch.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_strategy
from ..errors import FormatError, OptionError
from ..options import Opt
from ..slices import ByteRange, Slice
from ..storage import get_storage
from . import _laspoints as lp
from ._base import Format
from ._spatial import Box, box_from_filters, parse_bbox

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import RangeReader
    from ..storage import ObjectInfo, StorageOptions

#: LAS records per piece of an uncompressed object (LAZ objects have their chunks)
DEFAULT_CHUNK_POINTS = 50_000
#: bytes of point data one index task decodes for bounds: an object with less is indexed by one task
BOUNDS_TASK_BYTES = {True: 32 << 20, False: 256 << 20}
#: bytes read at a time by an index task
READ_BYTES = 8 << 20
#: what a slice holds of its object's header: enough to decode, nothing else
_DECODE_KEYS = ("point_format", "record_length", "scales", "offsets", "compressed", "laszip", "dtype", "columns")

BBOX = Opt("bbox", "str", None,
           doc="xmin,ymin,xmax,ymax or xmin,ymin,zmin,xmax,ymax,zmax (closed, in the file's coordinates): read "
               "only the parts whose bounds meet the box and return only the points inside it")


@dataclass
class Pieces:
    """An object's pieces (LAZ chunks, LAS record runs, COPC nodes) as arrays, in file order."""

    first: np.ndarray
    count: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    bounds: np.ndarray | None  # (n, 6): xmin, ymin, zmin, xmax, ymax, zmax; None: unknown (no pruning)
    level: np.ndarray | None = None

    @classmethod
    def from_rows(cls, rows: list[list[int]]) -> Pieces:
        a = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], None)


class PointCloud(Format):
    """What LAS, LAZ and COPC share: schema from the header, pruning by bounds, slices of pieces, decoding."""

    options: ClassVar[tuple[Opt, ...]] = (BBOX,)
    strategies: ClassVar[dict[str, str]] = {
        "points": "equal numbers of points per slice (LAZ: cut at the nearest chunk boundary)",
        "chunks": "equal numbers of chunks (LAZ chunks, or chunkPoints records of LAS) per slice",
    }
    #: the index table of pieces
    piece_table: ClassVar[str] = "chunks"
    #: the strategy that counts pieces rather than points
    piece_strategy: ClassVar[str] = "chunks"
    #: pieces are widened by this many coordinate steps when pruning (COPC cubes are nominal, chunk bounds exact)
    bounds_slack: ClassVar[float] = 0.0
    #: laspy parses headers at index time; lazrs decodes LAZ chunks (LAZ and COPC reads, and their bounds)
    requirements: ClassVar[Mapping[str, tuple[str, ...]]] = {"build": ("laspy", "lazrs"), "read": ("lazrs",)}

    # -- schema ---------------------------------------------------------------------------------------
    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        self.boxes()  # a bad bbox fails at planning, not in a task
        if index is not None:
            desc = index.attrs["las"]
        else:  # no index (missingIndex=scan): the first bytes of the first object, or all of it if it is small
            from ..plan import HEAD_BYTES

            head = head or b""

            def read(a: int, b: int) -> bytes:
                if b > len(head):
                    raise FormatError("the first object", a, f"its header and VLRs end past the first {len(head)} "
                                      "bytes read to learn the schema without an index; build its index "
                                      "(dataplug index)")
                return head[a:b]

            desc, _ = lp.read_header("the first object", len(head) if len(head) < HEAD_BYTES else 1 << 62, read)
        return {"las_schema": lp.schema_key(desc), "point_format": desc["point_format"]}

    def arrow_schema(self) -> pa.Schema:
        key = self.params.get("las_schema")
        if key is None:
            raise FormatError("?", None, f"no {self.name} header is known for this read (internal: resolve first)")
        return lp.arrow_schema(key)

    # -- pruning ----------------------------------------------------------------------------------------
    def boxes(self) -> list[Box]:
        """The boxes a point must be in: the ``bbox`` option's, and the one pushed filters imply."""
        out = []
        if self.params.get("bbox"):
            out.append(parse_bbox(self.params["bbox"]))
        if self.params.get("pushed_box"):
            out.append(Box.from_json(self.params["pushed_box"]))
        return out

    def row_box(self) -> Box | None:
        """The box rows are filtered by: only the ``bbox`` option's (Spark applies pushed filters itself)."""
        return parse_bbox(self.params["bbox"]) if self.params.get("bbox") else None

    @staticmethod
    def push_filters(filters: list[Any]) -> dict[str, Any]:
        """The box implied by comparisons on ``x``, ``y`` and ``z``: prunes pieces, never filters rows."""
        box = box_from_filters(filters, {"x": "x", "y": "y", "z": "z"})
        return {"pushed_box": box.to_json()} if box is not None else {}

    def kept(self, pieces: Pieces, desc: Mapping[str, Any]) -> np.ndarray:
        """Which pieces a read needs: those with points whose bounds meet every box."""
        keep = pieces.count > 0
        boxes = self.boxes()
        if not boxes or pieces.bounds is None:
            return keep
        b = pieces.bounds
        slack = np.abs(np.asarray(desc["scales"], dtype=np.float64)) * self.bounds_slack
        lo, hi = b[:, :3] - slack, b[:, 3:] + slack
        for box in boxes:
            keep &= ((lo[:, 0] <= box.xmax) & (hi[:, 0] >= box.xmin) & (lo[:, 1] <= box.ymax)
                     & (hi[:, 1] >= box.ymin) & (lo[:, 2] <= box.zmax) & (hi[:, 2] >= box.zmin))
        return keep

    # -- planning ------------------------------------------------------------------------------------
    def pieces(self, index: Index) -> Pieces:
        t = index.tables[self.piece_table]
        col = {n: t.column(n).to_numpy() for n in ("first", "points", "offset", "size")}
        bounds = np.stack([t.column(n).to_numpy() for n in ("xmin", "ymin", "zmin", "xmax", "ymax", "zmax")], axis=1)
        return Pieces(col["first"], col["points"], col["offset"], col["size"], bounds)

    def extent(self, index: Index, slice_: Slice) -> tuple[float, float, float, float] | None:
        """The union of the bounds of the pieces (chunks, nodes) whose bytes the slice reads.

        A slice of uncompressed LAS may read part of a piece; the whole piece's bounds hold its points too.
        """
        if slice_.context.get("scan"):
            return None
        p = self.pieces(index)
        if p.bounds is None:
            return None
        hit = np.zeros(len(p.offset), dtype=bool)
        for r in slice_.ranges:
            if r.uri == slice_.uri:
                hit |= (p.offset < r.end) & (p.offset + p.size > r.start) & (p.count > 0)
        if not hit.any():
            return None
        b = p.bounds[hit]
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 3].max()), float(b[:, 4].max())

    def splittable(self, desc: Mapping[str, Any]) -> bool:
        """Whether a slice may start or end inside a piece (uncompressed records: any point is a boundary)."""
        return not desc["compressed"]

    def units(self, index: Index, strategy: str) -> int:
        p = self.pieces(index)
        keep = self.kept(p, index.attrs["las"])
        return int(p.count[keep].sum()) if strategy == "points" else int(keep.sum())

    def weight(self, index: Index) -> int:
        return int(index.manifest.get("uncompressed_size", index.source.size))

    def slices(self, index: Index, strategy: str, cuts: list[int],
               storage_options: StorageOptions) -> list[Slice | None]:
        desc = index.attrs["las"]
        src = index.source
        if lp.schema_key(desc) != self.params.get("las_schema"):
            raise OptionError(f"{src.uri}: its points (format {desc['point_format']}, columns "
                              f"{', '.join(c['name'] for c in desc['columns'])}) differ from the first object's "
                              f"(format {self.params.get('point_format')}), so they cannot share one schema; read "
                              "such objects separately")
        p = self.pieces(index)
        kept = np.flatnonzero(self.kept(p, desc))
        count = p.count[kept]
        cum = np.concatenate(([0], np.cumsum(count)))
        if strategy == self.piece_strategy:
            pos = [int(cum[c]) for c in cuts]
        elif self.splittable(desc):
            pos = list(cuts)
        else:  # the piece boundary nearest to each cut, never moving back
            c = np.asarray(cuts, dtype=np.int64)
            j = np.clip(np.searchsorted(cum, c), 1, max(1, len(cum) - 1))
            left, right = cum[j - 1], cum[np.minimum(j, len(cum) - 1)]
            near = np.where(c - left <= right - c, left, right)
            near[0], near[-1] = 0, cum[-1]
            pos = [int(v) for v in np.maximum.accumulate(near)]
        out: list[Slice | None] = []
        for a, b in zip(pos, pos[1:], strict=False):
            if b <= a:
                out.append(None)
                continue
            parts = _cover(p, kept, cum, a, b)
            spans, runs = _runs(desc, p, parts)
            ranges = tuple(ByteRange(src.uri, s, e) for s, e in spans)
            context = {"desc": {k: desc[k] for k in _DECODE_KEYS}, "runs": runs}
            out.append(Slice(format=self.name, uri=src.uri, etag=src.etag, ranges=ranges, params=self.params,
                             context=context, storage=storage_options,
                             rows=None if self.row_box() is not None else b - a))
        return out

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        return Slice(format=self.name, uri=info.uri, etag=info.etag, ranges=(ByteRange(info.uri, 0, info.size),),
                     params=self.params, context={"scan": True}, storage=storage_options)

    # -- decoding ------------------------------------------------------------------------------------
    def decode(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        ctx = slice_.context
        if ctx.get("scan"):
            yield from self._decode_scan(slice_, data)
            return
        for i, run in enumerate(ctx["runs"]):
            yield from self._decode_run(slice_.uri, ctx["desc"], run, slice_.ranges[i].start, data.pieces(i))

    def _decode_scan(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        """A whole object without an index: header, pieces and all from its bytes (``missingIndex=scan``)."""
        raw = data.read(0)
        size = len(raw)

        def read(a: int, b: int) -> bytes:
            return raw[a:b]

        desc, _ = lp.read_header(slice_.uri, size, read)
        if lp.schema_key(desc) != self.params.get("las_schema"):
            raise OptionError(f"{slice_.uri}: its points (format {desc['point_format']}) differ from the first "
                              "object's, so they cannot share one schema; read such objects separately")
        p = self.object_pieces(slice_.uri, size, desc, read, scan=True)
        kept = np.flatnonzero(self.kept(p, desc))
        cum = np.concatenate(([0], np.cumsum(p.count[kept])))
        spans, runs = _runs(desc, p, _cover(p, kept, cum, 0, int(cum[-1])))
        view = memoryview(raw)
        for (s, e), run in zip(spans, runs, strict=True):
            yield from self._decode_run(slice_.uri, desc, run, s, iter([view[s:e]]))

    def _decode_run(self, uri: str, desc: Mapping[str, Any], run: Mapping[str, Any], start: int,
                    pieces: Iterator[bytes | memoryview]) -> Iterator[pa.RecordBatch]:
        """One byte range of adjacent pieces -> record batches (one per LAZ chunk, one per piece of LAS bytes)."""
        schema = self.output_schema()
        box = self.row_box()
        dtype = lp.record_dtype(desc["dtype"])
        rl = int(desc["record_length"])
        scales, offsets, columns = desc["scales"], desc["offsets"], desc["columns"]
        at = start
        if not desc["compressed"]:
            carry = b""
            for piece in pieces:
                buf = carry + bytes(piece) if carry else piece
                n = len(buf) // rl
                if n:
                    rec = np.frombuffer(buf, dtype=dtype, count=n)
                    yield lp.to_batch(uri, at, rec, columns, scales, offsets, schema, box)
                carry = bytes(buf[n * rl:])
                at += n * rl
            if carry:
                raise FormatError(uri, at, f"the slice ends inside a point record ({len(carry)} of {rl} bytes)")
            return
        laszip = base64.b64decode(desc["laszip"])
        need = [f.name for f in schema] if self.params.get("select") else None
        selection = lp.selection_bits(int(desc["point_format"]), need, box is not None)
        chunks = run["chunks"]
        k, buf = 0, bytearray()
        for piece in pieces:
            buf += piece
            pos = 0
            while k < len(chunks) and len(buf) - pos >= chunks[k][1]:
                n, nbytes = chunks[k]
                out = lp.decompress(uri, at, bytes(buf[pos: pos + nbytes]), laszip, n, rl, selection)
                yield lp.to_batch(uri, at, np.frombuffer(out, dtype=dtype), columns, scales, offsets, schema, box)
                pos += nbytes
                at += nbytes
                k += 1
            del buf[:pos]
        if k < len(chunks) or buf:
            raise FormatError(uri, at, "the slice's bytes do not end where its LAZ chunks do (the object changed "
                                       "since it was indexed?)")

    # -- index build ----------------------------------------------------------------------------------
    def object_pieces(self, uri: str, size: int, desc: Mapping[str, Any], read: Callable[[int, int], bytes],
                      scan: bool = False) -> Pieces:
        """The pieces of one object from its header (and chunk table): what the index keeps per object."""
        return Pieces.from_rows(self._piece_rows(uri, size, desc, read))

    def _piece_rows(self, uri: str, size: int, desc: Mapping[str, Any],
                    read: Callable[[int, int], bytes]) -> list[list[int]]:
        if desc["compressed"]:
            return lp.chunk_table(uri, size, desc, read)
        every = int(self.params.get("chunkPoints") or DEFAULT_CHUNK_POINTS)
        total, rl, opd = int(desc["points"]), int(desc["record_length"]), int(desc["opd"])
        return [[f, min(every, total - f), opd + f * rl, min(every, total - f) * rl] for f in range(0, total, every)]

    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str,
                    storage: StorageOptions | None = None) -> list[dict[str, Any]]:
        lp.check_signature(info.uri, head)
        return [{"kind": "header", "uri": info.uri, "size": info.size, "etag": info.etag, "index_dir": index_dir}]

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        from ..index.store import store_blob

        uri, size, etag = task["uri"], int(task["size"]), task["etag"]
        st = get_storage(uri, storage)

        def read(a: int, b: int) -> bytes:
            return st.read(uri, a, b, etag=etag)

        if task["kind"] == "bounds":
            desc = task["desc"]
            return [{"bounds": piece_bounds(uri, desc, task["pieces"], read)}]
        desc, raw = lp.read_header(uri, size, read)
        rows = self._piece_rows(uri, size, desc, read)
        row: dict[str, Any] = {"header": desc, "pieces": rows, "blob": store_blob(task["index_dir"], "header", raw,
                                                                                   storage), "blob_size": len(raw)}
        if sum(r[3] for r in rows) <= BOUNDS_TASK_BYTES[desc["compressed"]]:
            row["bounds"] = piece_bounds(uri, desc, [[i, *r] for i, r in enumerate(rows)], read)
        return [row]

    def build_followup(self, info: ObjectInfo, rows: list[dict[str, Any]], index_dir: str) -> list[dict[str, Any]]:
        """For a big object, bounds tasks over groups of adjacent pieces (the header task did the small ones)."""
        head = next((r for r in rows if "header" in r), None)
        if head is None or "bounds" in head:
            return []
        desc = {k: head["header"][k] for k in (*_DECODE_KEYS, "opd")}
        limit = BOUNDS_TASK_BYTES[desc["compressed"]]
        tasks, group, nbytes = [], [], 0
        for i, r in enumerate(head["pieces"]):
            group.append([i, *r])
            nbytes += r[3]
            if nbytes >= limit:
                tasks.append(group)
                group, nbytes = [], 0
        if group:
            tasks.append(group)
        return [{"kind": "bounds", "uri": info.uri, "size": info.size, "etag": info.etag, "desc": desc, "pieces": g}
                for g in tasks]

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        head = next(r for r in rows if "header" in r)
        desc, pieces = head["header"], head["pieces"]
        bounds = np.full((len(pieces), 6), np.nan)
        for r in rows:
            for i, *b in r.get("bounds", ()):
                bounds[i] = b
        if np.isnan(bounds).any():
            raise FormatError(info.uri, None, "internal: some pieces got no bounds from the index tasks")
        p = np.asarray(pieces, dtype=np.int64).reshape(-1, 4)
        cols = {"first": p[:, 0], "points": p[:, 1], "offset": p[:, 2], "size": p[:, 3]}
        table = pa.table({**{k: pa.array(v, pa.int64()) for k, v in cols.items()},
                          **{n: pa.array(bounds[:, j], pa.float64())
                             for j, n in enumerate(("xmin", "ymin", "zmin", "xmax", "ymax", "zmax"))}})
        manifest = {"index_params": self.index_params(), "records": int(desc["points"]),
                    "uncompressed_size": int(desc["points"]) * int(desc["record_length"]),
                    "compression": "laz" if desc["compressed"] else "none", "pieces": len(pieces),
                    "blobs": {"header": head["blob"]}, "blob_sizes": {"header": int(head["blob_size"])},
                    "attrs": {"las": desc}}
        return Index(manifest, {self.piece_table: table})


class LAS(PointCloud):
    """``las``: uncompressed LAS (a LAZ named ``.las`` reads the same, by its chunks)."""

    name: ClassVar[str] = "las"
    #: decoding uncompressed records needs no library (a LAZ named .las fails in the task, with the same hint)
    requirements: ClassVar[Mapping[str, tuple[str, ...]]] = {"build": ("laspy", "lazrs")}
    options: ClassVar[tuple[Opt, ...]] = (
        BBOX,
        Opt("chunkPoints", "int", DEFAULT_CHUNK_POINTS, bounds=(1, 1 << 40), build=True,
            doc="LAS records per index piece (the unit of bbox pruning and of the chunks strategy)"),
    )


class LAZ(LAS):
    """``laz``: LASzip-compressed LAS (sliced by its chunks; an uncompressed file reads as ``las``)."""

    name: ClassVar[str] = "laz"
    requirements: ClassVar[Mapping[str, tuple[str, ...]]] = PointCloud.requirements


def _cover(p: Pieces, kept: np.ndarray, cum: np.ndarray, a: int, b: int) -> list[tuple[int, int, int]]:
    """The pieces holding points ``[a, b)`` of the kept sequence: ``(piece, first local point, end)`` each."""
    i0 = int(np.searchsorted(cum, a, side="right")) - 1
    i1 = int(np.searchsorted(cum, b, side="left"))
    out = []
    for j in range(i0, i1):
        lo, hi = max(a, int(cum[j])) - int(cum[j]), min(b, int(cum[j + 1])) - int(cum[j])
        if hi > lo:
            out.append((int(kept[j]), lo, hi))
    return out


def _runs(desc: Mapping[str, Any], p: Pieces, parts: list[tuple[int, int, int]]) -> tuple[list[tuple[int, int]],
                                                                                           list[dict[str, Any]]]:
    """Byte spans (one per run of adjacent parts) and what each holds: LAS point counts or LAZ chunk sizes."""
    spans: list[tuple[int, int]] = []
    runs: list[dict[str, Any]] = []
    rl = int(desc["record_length"])
    compressed = bool(desc["compressed"])
    for i, lo, hi in parts:
        if compressed:
            start, end = int(p.offset[i]), int(p.offset[i]) + int(p.size[i])
            item: Any = [int(p.count[i]), int(p.size[i])]
        else:
            start, end = int(p.offset[i]) + lo * rl, int(p.offset[i]) + hi * rl
            item = hi - lo
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
            if compressed:
                runs[-1]["chunks"].append(item)
            else:
                runs[-1]["points"] += item
        else:
            spans.append((start, end))
            runs.append({"chunks": [item]} if compressed else {"points": item})
    return spans, runs


def piece_bounds(uri: str, desc: Mapping[str, Any], pieces: list[list[int]],
                 read: Callable[[int, int], bytes]) -> list[list[float]]:
    """``[piece, xmin, ymin, zmin, xmax, ymax, zmax]`` for each ``[piece, first, points, offset, bytes]``.

    Reads adjacent pieces a few MiB at a time; LAZ chunks are decoded for x, y and z only (lazrs skips the
    other layers of point formats 6-10).
    """
    dtype = lp.record_dtype(desc["dtype"])
    rl = int(desc["record_length"])
    laszip = base64.b64decode(desc["laszip"]) if desc["compressed"] else b""
    sel = lp.selection_bits(int(desc["point_format"]), ["x", "y", "z"], True) if desc["compressed"] else None
    out: list[list[float]] = []
    k = 0
    while k < len(pieces):
        j, end = k, pieces[k][3] + pieces[k][4]
        while j + 1 < len(pieces) and pieces[j + 1][3] == end and end - pieces[k][3] < READ_BYTES:
            j += 1
            end = pieces[j][3] + pieces[j][4]
        start = pieces[k][3]
        data = memoryview(read(start, end))
        for i, _, n, off, nbytes in pieces[k: j + 1]:
            raw = data[off - start: off - start + nbytes]
            if desc["compressed"]:
                rec = np.frombuffer(lp.decompress(uri, off, raw, laszip, n, rl, sel), dtype=dtype)
            else:
                rec = np.frombuffer(raw, dtype=dtype, count=n)
            out.append([i, *lp.raw_bounds(rec, desc["scales"], desc["offsets"])])
        k = j + 1
    return out


partition_points_batches = by_strategy("points")
partition_chunks_batches = by_strategy("chunks")


# The seed Dataplug's names (formats.geospatial.las and .laspc). Its square split cut the extent into a grid;
# here slices hold equal numbers of points (whole LAZ chunks): read an area with the ``bbox`` option.
LiDARPointCloud = LAS
square_split_strategy = by_strategy("points", "num_chunks")
