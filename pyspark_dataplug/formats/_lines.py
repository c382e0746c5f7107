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
from ..storage import get_storage, join_uri
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
    Opt("indexSpacing", "size", DEFAULT_SPACING, bounds=(1 << 10, 1 << 30), build=True,
        doc="index build: bytes between index points (smaller: finer cuts, bigger index)"),
    Opt("gzipSpacing", "size", DEFAULT_GZIP_SPACING, bounds=(gz.MIN_SPACING, gz.MAX_SPACING), build=True,
        doc="index build: uncompressed bytes between gzip seek points; more than the 32 KiB window each stores"),
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
            return [self._gzip_points(task, storage)]
        if task.get("codec") == "gzip-count":
            return self._gzip_count(task, storage)
        start, end = int(task["start"]), int(task["end"])
        st = get_storage(task["uri"], storage)
        data = np.frombuffer(st.read(task["uri"], start, end, etag=task.get("etag")), dtype=np.uint8)
        chunks = [(start + off, data[off: off + self.spacing]) for off in range(0, len(data), self.spacing)]
        return self._scan_chunks(chunks, data if start == 0 else None)

    def _scan_chunks(self, chunks: list[tuple[int, np.ndarray]], head: np.ndarray | None) -> list[dict[str, Any]]:
        """For each chunk and each possible start state: terminators, first one, ends-on-one, end state."""
        rows = []
        for at, sub in chunks:
            newlines = np.flatnonzero(sub == NL)
            per_state = []
            for s in range(self.n_states):
                ends, end_state = self.record_ends(sub, s, newlines)
                per_state.append([
                    len(ends),
                    int(ends[0]) + at if len(ends) else -1,
                    bool(len(ends) and ends[-1] == len(sub) - 1),
                    int(end_state),
                ])
            rows.append({"chunk": at, "states": per_state})
        if head is not None and rows:
            rows[0]["head"] = base64.b64encode(head[:HEAD_BYTES].tobytes()).decode()
        return rows

    def _gzip_points(self, task: Mapping[str, Any], storage: StorageOptions) -> dict[str, Any]:
        """Stage 1 for gzip: the seek points (one sequential pass); their windows go to a blob."""
        from ..index.store import store_blob
        from ..storage import ObjectInfo

        info = ObjectInfo(task["uri"], int(task["size"]), task["etag"])
        result = gz.seek_points(get_storage(info.uri, storage), info, self.gzip_spacing)
        blob = store_blob(task["index_dir"], "windows", result.blob, storage)
        return {"gzip_index": {"seeks": result.points, "size": result.size, "blob": blob,
                               "blob_size": len(result.blob)}}

    def build_followup(self, info: ObjectInfo, rows: list[dict[str, Any]], index_dir: str) -> list[dict[str, Any]]:
        """Stage 2 for gzip: count records in runs of seek intervals, each inflated from its first point."""
        if not rows or "gzip_index" not in rows[0]:
            return []
        g = rows[0]["gzip_index"]
        seeks, size = g["seeks"], int(g["size"])
        bounds = [p[0] for p in seeks if p[0] < size] + [size]
        tasks, k = [], 0
        while k < len(bounds) - 1:
            m = k + 1
            while m < len(bounds) - 1 and bounds[m + 1] - bounds[k] <= SPLIT_BYTES:
                m += 1
            u, c, bits, win_off, win_len = seeks[k]
            c_end = info.size if m >= len(seeks) else min(info.size, int(seeks[m][1]) + GZIP_SLACK)
            tasks.append({"codec": "gzip-count", "uri": info.uri, "etag": info.etag, "size": info.size,
                          "u": u, "c": c, "bits": bits, "window": [win_off, win_len],
                          "blob": join_uri(index_dir, g["blob"]), "bounds": bounds[k: m + 1], "c_end": c_end})
            k = m
        return tasks

    def _gzip_count(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        uri, bounds = task["uri"], task["bounds"]
        c, bits = int(task["c"]), int(task["bits"])
        win_off, win_len = task["window"]
        window = None
        if win_len > 0:
            window = zlib.decompress(get_storage(task["blob"], storage).read(task["blob"], win_off, win_off + win_len))
        c_start = c - 1 if bits else c
        comp = get_storage(uri, storage).read(uri, c_start, int(task["c_end"]), etag=task["etag"])
        u0 = int(task["u"])
        data = np.frombuffer(gz.inflate(uri, comp, c_start, c, bits, window, bounds[-1] - u0, int(task["size"])),
                             dtype=np.uint8)
        chunks = [(a, data[a - u0: b - u0]) for a, b in zip(bounds, bounds[1:], strict=False)]
        return self._scan_chunks(chunks, data if u0 == 0 else None)

    def _walk(self, rows: list[dict[str, Any]], size: int) -> tuple[list[tuple[int, int, int]], int, int, bool]:
        """The reduce: chunk results in order, from state 0 -> (chunk, record start, records before) points.

        Each chunk gives the first record start at or after its own start, if one lies inside it.
        Returns the points and the totals (terminators, end state, whether the last byte ends a record).
        """
        points: list[tuple[int, int, int]] = []
        state, terminators, prev_last_is_end = 0, 0, False
        for i, row in enumerate(rows):
            count, first_end, last_is_end, end_state = row["states"][state]
            p = row["chunk"]
            if i == 0 or prev_last_is_end:
                point = (p, terminators)
            elif first_end >= 0 and first_end + 1 < size:
                point = (first_end + 1, terminators + 1)
            else:
                point = None  # no record starts in this chunk: the next point covers it
            if point is not None and point[0] < size and (not points or point[0] > points[-1][1]):
                points.append((p, *point))
            terminators += count
            state, prev_last_is_end = end_state, last_is_end
        return points, terminators, state, prev_last_is_end

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        if rows and "gzip_index" in rows[0]:
            return self._gzip_reduce(info, rows[0]["gzip_index"], rows[1:])
        import pyarrow as pa

        from ..index.store import Index

        rows = sorted(rows, key=lambda r: r["chunk"])
        points, terminators, state, last_is_end = self._walk(rows, info.size)
        self.check_end(info.uri, info.size, state, last_is_end)
        records = terminators + (1 if info.size and not last_is_end else 0)
        table = pa.table({"offset": pa.array([p[1] for p in points], pa.int64()),
                          "records_before": pa.array([p[2] for p in points], pa.int64())})
        head = base64.b64decode(rows[0].get("head", "")) if rows else b""
        manifest = {
            "compression": "none",
            "index_params": self.index_params(),
            "records": records,
            "uncompressed_size": info.size,
            "spacing": self.spacing,
            "attrs": self.index_attrs(head),
        }
        return Index(manifest, {"points": table})

    def _gzip_reduce(self, info: ObjectInfo, g: dict[str, Any], rows: list[dict[str, Any]]) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        size = int(g["size"])
        rows = sorted(rows, key=lambda r: r["chunk"])
        points, terminators, state, last_is_end = self._walk(rows, size)
        self.check_end(info.uri, size, state, last_is_end)
        seek_at = {p[0]: p for p in g["seeks"]}
        # every chunk starts at a seek point: each index point carries the seek point it inflates from
        table_rows = [[r, n, *seek_at[chunk]] for chunk, r, n in points]
        cols = list(zip(*table_rows, strict=True)) if table_rows else [()] * 7
        names = ["offset", "records_before", "seek_u", "seek_c", "seek_bits", "window_offset", "window_size"]
        table = pa.table({n: pa.array(c, pa.int64()) for n, c in zip(names, cols, strict=True)})
        seeks = pa.table({"u": pa.array([p[0] for p in g["seeks"]], pa.int64()),
                          "c": pa.array([p[1] for p in g["seeks"]], pa.int64())})
        head = base64.b64decode(rows[0].get("head", "")) if rows else b""
        manifest = {
            "compression": "gzip",
            "index_params": self.index_params(),
            "records": terminators + (1 if size and not last_is_end else 0),
            "uncompressed_size": size,
            "spacing": self.gzip_spacing,
            "attrs": self.index_attrs(head),
            "blobs": {"windows": g["blob"]},
            "blob_sizes": {"windows": int(g["blob_size"])},
        }
        return Index(manifest, {"points": table, "seeks": seeks})

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
