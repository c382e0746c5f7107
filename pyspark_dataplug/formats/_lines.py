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

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import FormatError
from ..options import Opt
from ..slices import ByteRange, Slice
from ._base import Format

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..storage import ObjectInfo, Storage, StorageOptions

NL = 10
CR = 13
DEFAULT_SPACING = 1 << 20
#: bytes one index-build map task scans; a multiple of the spacing, so sub-chunks never straddle tasks
SPLIT_BYTES = 64 << 20
#: decoded input bytes per Arrow batch: large enough to amortise per-batch costs, small for memory
BATCH_BYTES = 8 << 20

LINE_OPTIONS = (
    Opt("indexSpacing", "size", DEFAULT_SPACING,
        doc="index build: bytes between index points (smaller: finer cuts, bigger index)"),
)


def lines_array(buf: np.ndarray) -> pa.StringArray:
    """The lines of ``buf`` (``\\n`` or ``\\r\\n`` ended; the last may be unterminated) as a StringArray.

    One vectorised pass: newline (and CR) bytes are masked out and offsets computed from the line
    positions, so there is no per-line Python work. UTF-8 is validated.
    """
    import pyarrow as pa

    n = len(buf)
    nl = np.flatnonzero(buf == NL)
    ends = np.append(nl, n) if n and buf[-1] != NL else nl
    starts = np.empty(len(ends), dtype=np.int64)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == CR) if len(ends) else np.zeros(0, bool)
    lengths = ends - starts - has_cr
    offsets = np.zeros(len(ends) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    if len(nl) or has_cr.any():
        keep = np.ones(n, dtype=bool)
        keep[nl] = False
        keep[(ends - 1)[has_cr]] = False
        data = buf[keep]
    else:
        data = buf
    arr = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    arr.validate(full=True)
    return arr


class LineFormat(Format):
    """Base of formats whose records are runs of lines; subclasses say which newlines end a record."""

    n_states: ClassVar[int] = 1
    strategies: ClassVar[dict[str, str]] = {
        "bytes": "equal uncompressed bytes per slice, cut at exact record boundaries",
        "records": "equal record counts per slice (within one record)",
    }
    options: ClassVar[tuple[Opt, ...]] = LINE_OPTIONS

    # -- the state machine ----------------------------------------------------------------------------
    def record_ends(self, buf: np.ndarray, state: int) -> tuple[np.ndarray, int]:
        """Positions of the terminators in ``buf`` when it starts in ``state``, and the end state."""
        return np.flatnonzero(buf == NL), 0

    def check_end(self, uri: str, size: int, state: int, last_is_end: bool) -> None:
        """Raise if the object cannot end in this state (e.g. a truncated FASTQ record)."""

    def first_record(self) -> int:
        """Records at the start of every object that are not data (a CSV header)."""
        return 0

    @property
    def spacing(self) -> int:
        return int(self.params.get("indexSpacing") or DEFAULT_SPACING)

    # -- index build --------------------------------------------------------------------------------
    def build_tasks(self, info: ObjectInfo) -> list[dict[str, Any]]:
        split = max(self.spacing, SPLIT_BYTES // self.spacing * self.spacing)
        return [{"uri": info.uri, "etag": info.etag, "start": s, "end": min(info.size, s + split)}
                for s in range(0, info.size, split)]

    def build_map(self, task: Mapping[str, Any], storage: Storage) -> list[dict[str, Any]]:
        start, end = int(task["start"]), int(task["end"])
        data = np.frombuffer(storage.read(task["uri"], start, end, etag=task.get("etag")), dtype=np.uint8)
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
        return rows

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: Storage) -> Index:
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
        attrs = self.index_attrs(info, offsets, records, storage)
        manifest = {
            "compression": "none",
            "index_params": self.index_params(),
            "records": records,
            "uncompressed_size": info.size,
            "spacing": self.spacing,
            "attrs": attrs,
        }
        return Index(manifest, {"points": points})

    def index_attrs(self, info: ObjectInfo, offsets: list[int], records: int, storage: Storage) -> dict:
        """Extra manifest attributes a subclass derives once the boundaries are exact."""
        return {}

    # -- planning -----------------------------------------------------------------------------------
    def units(self, index: Index, strategy: str) -> int:
        if strategy == "records":
            return max(0, index.records - self.first_record())
        return self.weight(index)

    def _record_of_byte(self, index: Index, b: int, tolerance: float) -> int:
        """The record nearest to byte ``b``: an exact index point if one is within ``tolerance``."""
        off = index.tables["points"].column("offset").to_numpy()
        n = index.tables["points"].column("records_before").to_numpy()
        size, total = self.weight(index), index.records
        if b <= 0:
            return 0
        if b >= size:
            return total
        k = int(np.searchsorted(off, b))
        cands = [j for j in (k - 1, k) if 0 <= j < len(off)]
        best = min(cands, key=lambda j: abs(int(off[j]) - b))
        if abs(int(off[best]) - b) <= tolerance:
            return int(n[best])
        xs = np.append(off, size).astype(np.float64)
        ys = np.append(n, total).astype(np.float64)
        return int(round(float(np.interp(b, xs, ys))))

    def slices(
        self, index: Index, strategy: str, cuts: list[int], storage_options: StorageOptions
    ) -> list[Slice | None]:
        first = self.first_record()
        if strategy == "records":
            recs = [first + c for c in cuts]
        else:
            tol = (cuts[-1] - cuts[0]) / max(1, len(cuts) - 1) / 4 if len(cuts) > 1 else 0
            recs = [min(max(first, self._record_of_byte(index, c, tol)), index.records) for c in cuts]
        return [self.record_slice(index, a, b, storage_options) if b > a else None
                for a, b in zip(recs, recs[1:], strict=False)]

    def record_slice(self, index: Index, a: int, b: int, storage_options: StorageOptions) -> Slice:
        """The slice of records ``[a, b)``: one range from the index point before ``a`` to the one after ``b``."""
        off = index.tables["points"].column("offset").to_numpy()
        n = index.tables["points"].column("records_before").to_numpy()
        src = index.source
        i = int(np.searchsorted(n, a, side="right")) - 1
        j = int(np.searchsorted(n, b, side="left"))
        start = int(off[i])
        end = int(off[j]) if j < len(off) else src.size
        return Slice(
            format=self.name,
            uri=src.uri,
            etag=src.etag,
            ranges=(ByteRange(src.uri, start, end),),
            params=self.params,
            context={"skip": a - int(n[i]), "records": b - a, "eof": end == src.size, "first": a},
            storage=storage_options,
            rows=None,
        )

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        return Slice(
            format=self.name, uri=info.uri, etag=info.etag, ranges=(ByteRange(info.uri, 0, info.size),),
            params=self.params, context={"skip": self.first_record(), "records": None, "eof": True, "first": 0},
            storage=storage_options,
        )

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, slice_: Slice, buffers: list[bytes]) -> Iterator[pa.RecordBatch]:
        buf = np.frombuffer(buffers[0], dtype=np.uint8)
        ctx = slice_.context
        base = slice_.ranges[0].start
        skip, want, eof = int(ctx.get("skip", 0)), ctx.get("records"), bool(ctx.get("eof"))
        ends, end_state = self.record_ends(buf, 0)
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
            yield self.decode_records(slice_, buf[starts[i]: stops[j - 1]], base + int(starts[i]), j - i)
            i = j

    @abstractmethod
    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int) -> pa.RecordBatch:
        """Decode exactly ``count`` whole records held in ``buf`` (which starts at byte ``offset``)."""
