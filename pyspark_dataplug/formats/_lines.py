"""Shared machinery of line-based formats (text, CSV, FASTQ): exact record boundaries from a map-reduce.

A *record* ends at a terminator: a newline byte that a small state machine accepts (every newline for
text; every fourth, counted from the start of the object, for FASTQ; newlines outside quotes for CSV).
A map task cannot know the state at the start of its chunk, so for every sub-chunk of ``indexSpacing``
bytes it reports what happens from *each* possible start state (terminator count, first terminator, end
state). The reduce then walks the sub-chunks in order with the true state -- 0 at the start of the object
-- and keeps, for each sub-chunk start ``p``, the first record start ``R >= p`` and the number of records
before it. Records are never guessed from content ('@' at a line start is also a valid quality line).

A slice of records ``[a, b)`` reads from the last index point at or before record ``a`` to the first
index point at or after record ``b``: one ranged read at most two index spacings longer than its records.
"""

from __future__ import annotations

import base64
import zlib
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import gz
from ..errors import FormatError
from ..gz import is_gzip
from ..options import Opt
from ..slices import ByteRange, Slice
from ..storage import get_storage
from ._base import Format

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..storage import ObjectInfo, StorageOptions

NL = 10
CR = 13
DEFAULT_SPACING = 1 << 20
#: uncompressed bytes between gzip seek points. Each costs a 32 KiB window (8-16 KiB zlib-compressed);
#: measured on FASTQ.gz (gzip -6): 2m -> 1.6% of the object, 4m -> 0.8%, 8m -> 0.4%, 16m -> 0.2%
DEFAULT_GZIP_SPACING = 8 << 20
#: first bytes of an object kept at build time (a CSV header is read from them)
HEAD_BYTES = 64 << 10
#: compressed bytes read past the bound of a gzip slice: a block header and zlib's look-ahead
GZIP_SLACK = 64 << 10
#: bytes one index-build map task scans; a multiple of the spacing, so sub-chunks never straddle tasks
SPLIT_BYTES = 64 << 20
#: decoded input bytes per Arrow batch: large enough to amortise per-batch costs, small for memory
BATCH_BYTES = 8 << 20

LINE_OPTIONS = (
    Opt("indexSpacing", "size", DEFAULT_SPACING,
        doc="index build: bytes between index points (smaller: finer cuts, bigger index)"),
    Opt("gzipSpacing", "size", DEFAULT_GZIP_SPACING,
        doc="index build: uncompressed bytes between gzip seek points"),
)


def lines_array(buf: np.ndarray, newlines: np.ndarray | None = None) -> pa.StringArray:
    """The lines of ``buf`` (``\\n`` or ``\\r\\n`` ended; the last may be unterminated) as a StringArray.

    One zero-copy array of lines *with* their breaks, then one Arrow kernel that copies every line without
    its break: no per-line Python work. UTF-8 is validated by the cast to string.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    buf, nl = terminated(buf, newlines)
    starts = np.empty(len(nl) + 1, dtype=np.int32)
    starts[0] = 0
    starts[1:] = nl + 1
    lines = pa.BinaryArray.from_buffers(pa.binary(), len(nl), [None, pa.py_buffer(starts), pa.py_buffer(buf)])
    text = pc.binary_slice(lines, 0, -1).cast(pa.string())
    if len(nl) and (buf[np.maximum(nl - 1, 0)] == CR).any():  # look only before each break, not at every byte
        text = pc.replace_substring_regex(text, "\r$", "")  # exactly one CR of a CRLF break
    return text


def terminated(buf: np.ndarray, newlines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``buf`` ending with a line break (appended if the object's last line has none: a copy, once per
    object) and the positions of its line breaks (``newlines`` if the caller already found them)."""
    nl = np.flatnonzero(buf == NL) if newlines is None else newlines
    if len(buf) and buf[-1] != NL:
        buf = np.append(buf, np.uint8(NL))
        nl = np.append(nl, len(buf) - 1)
    return buf, nl


class _PointResolver:
    """Runs a format's state machine over a gzip stream and ties each seek point to a record start.

    For seek point ``u`` the record start is ``R = e + 1`` for the first terminator ``e >= u - 1`` (or 0),
    and ``records_before = terminators before R``. Points are known before the bytes arrive; a chunk's
    terminators are kept only while an unresolved point lies at or before it. Points after the last record
    start stay unresolved and are dropped.
    """

    def __init__(self, fmt: LineFormat) -> None:
        self.fmt = fmt
        self.state = 0
        self.terminators = 0
        self.last_is_end = False
        self.head = b""
        self.recent: list[tuple[int, int, np.ndarray, int]] = []  # (start, end, absolute ends, terminators before)
        self.pending: list[int] = []
        self.resolved: list[tuple[int, int, int]] = []  # (u, R, records before R)

    def expect(self, points: list[int]) -> None:
        self.pending = sorted(points)

    def feed(self, pos: int, data: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        if data:
            buf = np.frombuffer(data, dtype=np.uint8)
            ends, self.state = self.fmt.record_ends(buf, self.state)
            self.recent.append((pos, pos + len(data), ends.astype(np.int64) + pos, self.terminators))
            self.terminators += len(ends)
            self.last_is_end = bool(len(ends) and ends[-1] == len(buf) - 1)
        self._resolve()

    def _resolve(self) -> None:
        still = []
        for u in self.pending:
            if u == 0:
                self.resolved.append((0, 0, 0))
                continue
            found = None
            for _start, end, ends, before in self.recent:
                if end <= u - 1:
                    continue
                k = int(np.searchsorted(ends, u - 1))
                if k < len(ends):
                    found = (u, int(ends[k]) + 1, before + k + 1)
                    break
            if found:
                self.resolved.append(found)
            else:
                still.append(u)
        self.pending = still
        # chunks wholly before the last point known so far can no longer be needed
        horizon = min(self.pending) if self.pending else (self.resolved[-1][0] if self.resolved else 0)
        while len(self.recent) > 1 and self.recent[0][1] < horizon:
            self.recent.pop(0)


class LineFormat(Format):
    """Base of formats whose records are runs of lines; subclasses say which newlines end a record."""

    n_states: ClassVar[int] = 1
    # bytes first (the default): its cuts snap to index points, so neighbouring slices never read the same
    # bytes twice; equal record counts must cut between index points, re-reading up to one spacing per cut
    strategies: ClassVar[dict[str, str]] = {
        "bytes": "equal uncompressed bytes per slice, cut at exact record boundaries (at index points)",
        "records": "equal record counts per slice (within one record)",
    }
    options: ClassVar[tuple[Opt, ...]] = LINE_OPTIONS

    # -- the state machine ----------------------------------------------------------------------------
    def record_ends(self, buf: np.ndarray, state: int, newlines: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Positions of the terminators in ``buf`` when it starts in ``state``, and the end state.

        ``newlines``: the positions of every line break in ``buf``, when the caller has them already.
        """
        return (np.flatnonzero(buf == NL) if newlines is None else newlines), 0

    def check_end(self, uri: str, size: int, state: int, last_is_end: bool) -> None:
        """Raise if the object cannot end in this state (e.g. a truncated FASTQ record)."""

    def first_record(self) -> int:
        """Records at the start of every object that are not data (a CSV header)."""
        return 0

    @property
    def spacing(self) -> int:
        return int(self.params.get("indexSpacing") or DEFAULT_SPACING)

    @property
    def gzip_spacing(self) -> int:
        return int(self.params.get("gzipSpacing") or DEFAULT_GZIP_SPACING)

    # -- index build --------------------------------------------------------------------------------
    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str) -> list[dict[str, Any]]:
        task = {"uri": info.uri, "etag": info.etag, "size": info.size}
        if is_gzip(head):
            # one sequential pass: a gzip stream cannot be entered without a seek point
            return [{**task, "codec": "gzip", "index_dir": index_dir}]
        split = max(self.spacing, SPLIT_BYTES // self.spacing * self.spacing)
        return [{**task, "start": s, "end": min(info.size, s + split)} for s in range(0, info.size, split)]

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        if task.get("codec") == "gzip":
            return [self._gzip_map(task, storage)]
        start, end = int(task["start"]), int(task["end"])
        st = get_storage(task["uri"], storage)
        data = np.frombuffer(st.read(task["uri"], start, end, etag=task.get("etag")), dtype=np.uint8)
        rows = []
        for off in range(0, len(data), self.spacing):
            sub = data[off: off + self.spacing]
            per_state = []
            for s in range(self.n_states):
                ends, end_state = self.record_ends(sub, s)
                per_state.append([
                    len(ends),
                    int(ends[0]) + start + off if len(ends) else -1,
                    bool(len(ends) and ends[-1] == len(sub) - 1),
                    int(end_state),
                ])
            rows.append({"chunk": start + off, "states": per_state})
        if start == 0:
            rows[0]["head"] = base64.b64encode(data[:HEAD_BYTES].tobytes()).decode()
        return rows

    def _gzip_map(self, task: Mapping[str, Any], storage: StorageOptions) -> dict[str, Any]:
        """One pass over a gzip object: seek points, and for each the first record start after it."""
        from ..index.store import store_blob
        from ..storage import ObjectInfo

        info = ObjectInfo(task["uri"], int(task["size"]), task["etag"])
        resolver = _PointResolver(self)
        result = gz.scan(get_storage(info.uri, storage), info, self.gzip_spacing, resolver.feed,
                         on_points=resolver.expect)
        self.check_end(info.uri, result.size, resolver.state, resolver.last_is_end)
        by_u = {p[0]: p for p in result.points}
        points = []
        for u, r, n in resolver.resolved:
            if r < result.size and (not points or r > points[-1][0]):
                _, c, bits, win_off, win_len = by_u[u]
                points.append([r, n, u, c, bits, win_off, win_len])
            elif points and r == points[-1][0]:
                _, c, bits, win_off, win_len = by_u[u]
                points[-1] = [r, n, u, c, bits, win_off, win_len]  # a later seek point, closer to r
        seeks = sorted([p[0], p[1]] for p in result.points)  # (u, c) of every seek point, for range ends
        blob = store_blob(task["index_dir"], "windows", result.blob, storage)
        records = resolver.terminators + (1 if result.size and not resolver.last_is_end else 0)
        return {"gzip": {"points": points, "seeks": seeks, "records": records, "size": result.size,
                         "blob": blob, "blob_size": len(result.blob),
                         "head": base64.b64encode(resolver.head).decode()}}

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        if rows and "gzip" in rows[0]:
            return self._gzip_reduce(info, rows[0]["gzip"])
        import pyarrow as pa

        from ..index.store import Index

        rows = sorted(rows, key=lambda r: r["chunk"])
        offsets, before = [], []
        state, terminators, prev_last_is_end = 0, 0, False
        for i, row in enumerate(rows):
            count, first_end, last_is_end, end_state = row["states"][state]
            p = row["chunk"]
            if i == 0 or prev_last_is_end:
                point = (p, terminators)
            elif first_end >= 0 and first_end + 1 < info.size:
                point = (first_end + 1, terminators + 1)
            else:
                point = None  # no record starts in this chunk: the next point covers it
            if point is not None and point[0] < info.size and (not offsets or point[0] > offsets[-1]):
                offsets.append(point[0])
                before.append(point[1])
            terminators += count
            state, prev_last_is_end = end_state, last_is_end
        self.check_end(info.uri, info.size, state, prev_last_is_end)
        records = terminators + (1 if info.size and not prev_last_is_end else 0)
        points = pa.table({"offset": pa.array(offsets, pa.int64()), "records_before": pa.array(before, pa.int64())})
        head = base64.b64decode(rows[0].get("head", "")) if rows else b""
        manifest = {
            "compression": "none",
            "index_params": self.index_params(),
            "records": records,
            "uncompressed_size": info.size,
            "spacing": self.spacing,
            "attrs": self.index_attrs(head),
        }
        return Index(manifest, {"points": points})

    def _gzip_reduce(self, info: ObjectInfo, g: dict[str, Any]) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        cols = list(zip(*g["points"], strict=True)) if g["points"] else [()] * 7
        names = ["offset", "records_before", "seek_u", "seek_c", "seek_bits", "window_offset", "window_size"]
        table = pa.table({n: pa.array(c, pa.int64()) for n, c in zip(names, cols, strict=True)})
        seeks = list(zip(*g["seeks"], strict=True)) if g["seeks"] else [(), ()]
        seek_table = pa.table({"u": pa.array(seeks[0], pa.int64()), "c": pa.array(seeks[1], pa.int64())})
        manifest = {
            "compression": "gzip",
            "index_params": self.index_params(),
            "records": int(g["records"]),
            "uncompressed_size": int(g["size"]),
            "spacing": self.gzip_spacing,
            "attrs": self.index_attrs(base64.b64decode(g["head"])),
            "blobs": {"windows": g["blob"]},
            "blob_sizes": {"windows": int(g["blob_size"])},
        }
        return Index(manifest, {"points": table, "seeks": seek_table})

    def index_attrs(self, head: bytes) -> dict:
        """Extra manifest attributes derived from the object's first bytes (uncompressed), e.g. a CSV header."""
        return {}

    # -- planning -----------------------------------------------------------------------------------
    def units(self, index: Index, strategy: str) -> int:
        if strategy == "records":
            return max(0, index.records - self.first_record())
        return self.weight(index)

    def _record_of_byte(self, index: Index, b: int) -> int:
        """The record at the index point nearest to byte ``b`` (the object's end counts as a point).

        Cutting only at index points means neighbouring slices share no bytes (for gzip: no data is
        inflated twice); asking for more slices than the index has points gives one slice per point.
        """
        off = index.tables["points"].column("offset").to_numpy()
        n = index.tables["points"].column("records_before").to_numpy()
        offs = np.append(off, self.weight(index))
        recs = np.append(n, index.records)
        k = int(np.searchsorted(offs, b))
        best = min((j for j in (k - 1, k) if 0 <= j < len(offs)), key=lambda j: abs(int(offs[j]) - b))
        return int(recs[best])

    def slices(
        self, index: Index, strategy: str, cuts: list[int], storage_options: StorageOptions
    ) -> list[Slice | None]:
        first = self.first_record()
        if strategy == "records":
            recs = [first + c for c in cuts]
        else:
            recs = [min(max(first, self._record_of_byte(index, c)), index.records) for c in cuts]
        return [self.record_slice(index, a, b, storage_options) if b > a else None
                for a, b in zip(recs, recs[1:], strict=False)]

    def record_slice(self, index: Index, a: int, b: int, storage_options: StorageOptions) -> Slice:
        """The slice of records ``[a, b)``: from the index point before ``a`` to the one after ``b``."""
        points = index.tables["points"]
        off = points.column("offset").to_numpy()
        n = points.column("records_before").to_numpy()
        src = index.source
        size = self.weight(index)
        i = int(np.searchsorted(n, a, side="right")) - 1
        j = int(np.searchsorted(n, b, side="left"))
        start = int(off[i])
        end = int(off[j]) if j < len(off) else size
        context = {"skip": a - int(n[i]), "records": b - a, "eof": end == size, "first": a}
        if index.manifest.get("compression") != "gzip":
            ranges: tuple[ByteRange, ...] = (ByteRange(src.uri, start, end),)
        else:
            u, c, bits, win_off, win_size = (int(points.column(k)[i].as_py()) for k in
                                            ("seek_u", "seek_c", "seek_bits", "window_offset", "window_size"))
            c_end = self._gzip_range_end(index, end)
            c_start = c - 1 if bits else c
            ranges = (ByteRange(src.uri, c_start, c_end),)
            if win_size > 0:
                ranges = (ByteRange(index.blob_uri("windows"), win_off, win_off + win_size), *ranges)
            context.update(codec="gzip", u=u, c=c, bits=bits, start=start, end=end, size=src.size,
                           window=win_size > 0)
        return Slice(format=self.name, uri=src.uri, etag=src.etag, ranges=ranges, params=self.params,
                     context=context, storage=storage_options)

    @staticmethod
    def _gzip_range_end(index: Index, end: int) -> int:
        """Compressed bytes enough to inflate up to uncompressed offset ``end``, and barely more.

        ``end`` is a record start a little past a seek point, so the data is in the deflate block that
        starts at that point: its first ``end - u`` bytes need at most ~2 compressed bytes each (a literal
        is at most 15 bits), plus a block header; never past the next seek point.
        """
        seeks = index.tables["seeks"]
        su = seeks.column("u").to_numpy()
        sc = seeks.column("c").to_numpy()
        size = index.source.size
        if end >= int(index.manifest.get("uncompressed_size", 0)):
            return size
        k = int(np.searchsorted(su, end, side="right")) - 1  # last seek point at or before `end`
        bound = int(sc[k]) + 2 * (end - int(su[k])) + GZIP_SLACK
        if k + 1 < len(sc):
            bound = min(bound, int(sc[k + 1]) + GZIP_SLACK)
        return min(size, bound)

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        return Slice(
            format=self.name, uri=info.uri, etag=info.etag, ranges=(ByteRange(info.uri, 0, info.size),),
            params=self.params,
            context={"skip": self.first_record(), "records": None, "eof": True, "first": 0, "codec": "auto"},
            storage=storage_options,
        )

    # -- decoding -----------------------------------------------------------------------------------
    def uncompressed(self, slice_: Slice, buffers: list[bytes]) -> tuple[bytes | memoryview, int]:
        """The slice's uncompressed bytes and the uncompressed offset where they start."""
        ctx = slice_.context
        codec = ctx.get("codec")
        if codec == "gzip":
            window = zlib.decompress(buffers[0]) if ctx.get("window") else None
            comp_range = slice_.ranges[-1]
            data = gz.inflate(slice_.uri, buffers[-1], comp_range.start, int(ctx["c"]), int(ctx["bits"]), window,
                              int(ctx["end"]) - int(ctx["u"]), int(ctx["size"]))
            skip = int(ctx["start"]) - int(ctx["u"])
            return memoryview(data)[skip:], int(ctx["start"])  # a view: slices are 100s of MB
        if codec == "auto" and gz.is_gzip(buffers[0][:2]):
            return gz.inflate_all(slice_.uri, buffers[0]), 0
        return buffers[0], slice_.ranges[0].start

    def decode(self, slice_: Slice, buffers: list[bytes]) -> Iterator[pa.RecordBatch]:
        raw, base = self.uncompressed(slice_, buffers)
        buf = np.frombuffer(raw, dtype=np.uint8)
        ctx = slice_.context
        skip, want, eof = int(ctx.get("skip", 0)), ctx.get("records"), bool(ctx.get("eof"))
        newlines = np.flatnonzero(buf == NL)  # found once per slice; every batch reuses its share
        ends, end_state = self.record_ends(buf, 0, newlines)
        stops = ends + 1
        if eof and len(buf) and (len(stops) == 0 or stops[-1] != len(buf)):
            self.check_end(slice_.uri, base + len(buf), end_state, False)
            stops = np.append(stops, len(buf))
        elif eof:
            self.check_end(slice_.uri, base + len(buf), end_state, True)
        avail = len(stops)
        stop = avail if want is None else skip + int(want)
        if avail < stop:
            raise FormatError(
                slice_.uri, base + len(buf),
                f"found {avail - skip} of the {want} records its index promises in [{base}, {base + len(buf)}): "
                "the object is shorter or different than when it was indexed (rebuild the index with --force)",
            )
        starts = np.concatenate(([0], stops[:-1])).astype(np.int64)
        i = skip
        while i < stop:
            # group records into batches of about BATCH_BYTES of input
            limit = starts[i] + BATCH_BYTES
            j = int(np.searchsorted(stops, limit, side="right"))
            j = min(max(j, i + 1), stop)
            lo, hi = np.searchsorted(newlines, [starts[i], stops[j - 1]])
            yield self.decode_records(slice_, buf[starts[i]: stops[j - 1]], base + int(starts[i]), j - i,
                                      newlines[lo:hi] - starts[i])
            i = j

    @abstractmethod
    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       newlines: np.ndarray | None = None) -> pa.RecordBatch:
        """Decode exactly ``count`` whole records held in ``buf`` (which starts at byte ``offset``).

        ``newlines`` are the positions of the line breaks in ``buf`` (None: find them).
        """
