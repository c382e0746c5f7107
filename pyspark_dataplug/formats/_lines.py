"""Shared machinery of line-based formats (text, CSV, FASTQ): exact record boundaries from a map-reduce.

**The invariant every line format keeps: index chunks start at line starts.** A chunk edge is never the
nominal offset ``p`` (a multiple of ``indexSpacing``, or a gzip seek point) but the first *line start*
after a line separator lying wholly at or after ``p`` (:meth:`LineFormat.line_start_after`; the object's
start is one too). Both tasks that meet at ``p`` compute that edge from the bytes from ``p`` on, so they
agree without seeing each other's data. Because edges are line starts, the only state that crosses one is
the format's state *at a line start*, a small number (``n_states``): none for text, the line number within
a 4-line record for FASTQ, "outside or inside a quoted field" for CSV. Escapes, "just after a quote",
comment lines and CRLF pairs never cross a line separator, so they never cross an edge.

A map task cannot know that state, so for every chunk it reports what happens from *each* possible
state: records ended, the first one's end, the state at the chunk's end, whether a record is still open,
where an unterminated quote opened, and the first malformed byte. The reduce walks the chunks in order
from state 0 at the object's start and keeps, for each chunk, the first record start ``R`` at or after
its edge and the number of records before it. Records are never guessed from content ('@' at a line
start is also a valid quality line). Each chunk also gets a CRC32 of its first bytes: slices read those
bytes anyway and check them, so an object replaced after indexing (same size, same mtime) is caught.

A slice of records ``[a, b)`` reads from the edge of the last index point at or before record ``a`` to the
record start of the first point at or after record ``b``, and must find there exactly as many records as
the index counted between those two points: not one fewer, not one more.
"""

from __future__ import annotations

import sys
import zlib
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from .. import gz
from ..errors import FormatError, StaleIndexError
from ..gz import is_gzip
from ..options import Opt
from ..slices import ByteRange, Slice
from ..storage import get_storage, join_uri
from ._base import Format

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import RangeReader
    from ..storage import ObjectInfo, StorageOptions

NL = 10
CR = 13
DEFAULT_SPACING = 1 << 20
#: uncompressed bytes between gzip seek points. Each costs a 32 KiB window (8-16 KiB zlib-compressed);
#: without ``gzipSpacing``, the spacing follows the object: about 1,000 seek points (two uncompressed bytes per
#: compressed one, as in FASTQ.gz), rounded up to a power of two within these bounds. Below 1 MiB rapidgzip's
#: pass slows down (300 MB FASTQ.gz: 512k 1.8x, 256k 3x the 8m time); above 8 MiB slices get coarse. A seek
#: point costs ~3 KB of index (a sparse window), so 1m is ~0.6 % of a FASTQ.gz and 8m ~0.08 %
AUTO_GZIP_SPACING = (1 << 20, 8 << 20)
#: first bytes of an object kept at build time
HEAD_BYTES = 64 << 10
#: the longest first line (e.g. a CSV header) read to sniff an object's line separator
MAX_HEAD_BYTES = 16 << 20
#: compressed bytes a build task reads past its last seek interval, to find the line start that ends it
GZIP_SLACK = 64 << 10
#: compressed bytes a slice reads past its bound: a dynamic block header is at most ~300 bytes; the rest is
#: margin (it was 64 KiB: 200 slices of a 150 MB .gz fetched 8% more than the object for it alone)
END_SLACK = 1 << 10
#: bytes read past a map task's end to find the line start where its last chunk ends (doubled as needed)
LOOKAHEAD = 64 << 10
#: bytes one index-build map task scans; a multiple of the spacing, so sub-chunks never straddle tasks
SPLIT_BYTES = 64 << 20
#: bytes at each chunk edge whose CRC32 the index keeps and every slice checks
FINGERPRINT_BYTES = 256

LINE_OPTIONS = (
    Opt("indexSpacing", "size", DEFAULT_SPACING, bounds=(1, 1 << 30), build=True,
        doc="index build: bytes between index points (smaller: finer cuts, bigger index)"),
    Opt("gzipSpacing", "size", None, bounds=(gz.MIN_SPACING, gz.MAX_SPACING), build=True,
        doc="index build: uncompressed bytes between gzip seek points (default: from the object's size, 1m-8m); "
            "more than the 32 KiB window each stores"),
)


@dataclass
class LineScan:
    """What a buffer that starts at a line start holds, read from one start state.

    ``ends``: position of the ``\\n`` that ends each record. ``state``: the state after the buffer
    (meaningful at a line start). ``pending``: a record has begun and not ended. ``open_at``: where an
    unterminated construct began (a CSV quote; -1: before the buffer or none). ``bad``: offset of the first
    malformed byte, -1 if none; ``why`` says what is wrong there.
    """

    ends: np.ndarray
    state: int = 0
    pending: bool = False
    open_at: int = -1
    bad: int = -1
    why: str = ""
    detail: Any = None  # what a format's scan found besides records (CSV: quoted regions), for its decoder


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


def first_line_start(buf: np.ndarray, p: int, crlf: bool = False) -> int | None:
    """The position after the first ``\n`` (``\r\n`` when ``crlf``) lying wholly in ``buf[p:]``; None if none.

    Looks in windows that double in size, so finding the next line start costs about one line, not the rest
    of the buffer: a build task cuts its 64 MiB into chunks at every ``indexSpacing`` (1 KiB spacings make
    65,536 cuts).
    """
    n, w = len(buf), 1 << 13
    lo = p
    while lo < n:
        hi = min(n, lo + w)
        sub = buf[lo:hi]
        k = np.flatnonzero(sub == NL)
        if crlf:
            at = k + lo
            k = k[(at > p) & (buf[np.maximum(at - 1, 0)] == CR)]
        if len(k):
            return lo + int(k[0]) + 1
        lo, w = hi, w * 2
    return None


def fingerprint(data: np.ndarray | bytes | memoryview) -> int:
    return zlib.crc32(data)


class ChunkedBuild(Format):
    """Index builds over line-aligned chunks: parallel byte ranges of a plain object, or gzip seek points.

    The map tasks, the gzip passes and the chunk edges (line starts: the module docstring) are shared by
    every format whose index comes from scanning its lines; what a chunk *reports* is the format's own
    (:meth:`_scan_chunks`), and so is the reduce.
    """

    options: ClassVar[tuple[Opt, ...]] = LINE_OPTIONS

    def line_start_after(self, buf: np.ndarray, p: int) -> int | None:
        """The first line start after a line separator that lies wholly in ``buf[p:]``; None if none."""
        return first_line_start(buf, p)

    def sniff(self, uri: str, head: bytes, complete: bool) -> dict[str, Any] | None:
        """Params read off the object's first bytes that scanning needs (CSV: its line separator).

        ``complete``: ``head`` is the whole object. None means: more bytes are needed.
        """
        return {}

    @property
    def spacing(self) -> int:
        return int(self.params.get("indexSpacing") or DEFAULT_SPACING)

    def gzip_spacing(self, compressed_size: int) -> int:
        """``gzipSpacing`` if named, else one from the object's size (see :data:`AUTO_GZIP_SPACING`)."""
        if self.params.get("gzipSpacing"):
            return int(self.params["gzipSpacing"])
        low, high = AUTO_GZIP_SPACING
        want = max(1, 2 * compressed_size // 1000)
        return min(high, max(low, 1 << (want - 1).bit_length()))

    def _with(self, extra: Mapping[str, Any] | None) -> Self:
        return self if not extra else type(self)({**self.params, **extra})

    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str,
                    storage: StorageOptions | None = None) -> list[dict[str, Any]]:
        task = {"uri": info.uri, "etag": info.etag, "size": info.size}
        if is_gzip(head):
            if gz.is_bgzf(head) and self._ends_bgzf(info, storage):
                # every block is a gzip member: chunks of the object are walked in parallel, no windows needed
                return [{**task, "codec": "bgzf", "start": s, "end": min(info.size, s + SPLIT_BYTES)}
                        for s in range(0, info.size, SPLIT_BYTES)]
            # one sequential pass: a gzip stream cannot be entered without a seek point
            return [{**task, "codec": "gzip", "index_dir": index_dir}]
        sniffed = self._sniff_object(info, storage, head)
        split = max(self.spacing, SPLIT_BYTES // self.spacing * self.spacing)
        return [{**task, "start": s, "end": min(info.size, s + split), "sniff": sniffed}
                for s in range(0, info.size, split)]

    @staticmethod
    def _ends_bgzf(info: ObjectInfo, storage: StorageOptions | None) -> bool:
        """Whether the object ends with bgzip's end-of-file block, as every BGZF writer leaves it.

        With a BGZF first block, this second look keeps the parallel build for real BGZF objects; a gzip
        that merely starts like one (a BGZF file with plain gzip appended) takes the sequential path.
        """
        n = len(gz.BGZF_EOF)
        return info.size >= n and get_storage(info.uri, storage).read(
            info.uri, info.size - n, info.size, etag=info.etag) == gz.BGZF_EOF

    def _sniff_object(self, info: ObjectInfo, storage: StorageOptions | None, first: bytes = b"") -> dict[str, Any]:
        st = get_storage(info.uri, storage)
        n = min(info.size, HEAD_BYTES)
        while True:
            # the driver's first bytes are reused when they are enough: one request less per object
            head = first[:n] if len(first) >= n else st.read(info.uri, 0, n, etag=info.etag) if n else b""
            sniffed = self.sniff(info.uri, head, n >= info.size)
            if sniffed is not None:
                return sniffed
            if n >= min(info.size, MAX_HEAD_BYTES):
                raise FormatError(info.uri, n, f"no line break in the first {n} bytes: the first line is longer "
                                  f"than the {MAX_HEAD_BYTES >> 20} MiB this reader accepts")
            n = min(info.size, n * 4)

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        if task.get("codec") in ("gzip", "gzip-all"):
            return self._gzip_pass(task, storage)
        if task.get("codec") == "bgzf":
            return [self._bgzf_map(task, storage)]
        fmt = self._with(task.get("sniff"))
        if task.get("codec") == "gzip-count":
            return fmt._gzip_count(task, storage)
        return fmt._plain_map(task, storage)

    def _plain_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        uri, size = task["uri"], int(task["size"])
        start, end = int(task["start"]), int(task["end"])
        st = get_storage(uri, storage)
        stop = min(size, end + LOOKAHEAD)
        while True:
            data = np.frombuffer(st.read(uri, start, stop, etag=task.get("etag")), dtype=np.uint8)
            rel = None if end >= size else self.line_start_after(data, end - start)
            if end >= size or rel is not None or stop >= size:
                break
            stop = min(size, stop + 2 * (stop - end))  # a line longer than the look-ahead: read more
        last = start + rel if rel is not None else size
        rows = self._scan_chunks(data, start, list(range(start, end, self.spacing)), last, size)
        if start == 0 and rows:
            rows[0]["sniff"] = task.get("sniff") or {}  # the reduce keeps it in the manifest
        return rows

    def _edges(self, data: np.ndarray, base: int, nominal: list[int], last: int) -> list[int]:
        """Chunk edges (absolute) for the nominal offsets, then ``last``: line starts, deduplicated."""
        edges: list[int] = []
        for p in nominal:
            if p == 0:
                e = 0  # the object's start is a line start
            elif p < base:
                e = base  # a chunk carried over from an earlier call: ``data`` starts at its edge
            else:
                rel = self.line_start_after(data, p - base)
                e = last if rel is None else min(base + rel, last)
            if not edges or e > edges[-1]:
                edges.append(e)
        if not edges or edges[-1] < last:
            edges.append(last)
        return edges

    def _gzip_pass(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        """A gzip object's whole build in one read: seek points, and the records between them.

        The pass (:class:`gz.GzipPass`) hands out inflated pieces and, a little ahead of them, the seek
        points it is placing; every stretch between two points is scanned as soon as the line start that
        ends it has arrived, so a task holds about one spacing plus one piece, and the chunk edges are the
        points themselves: a slice cut there inflates nothing it does not return.
        """
        from ..index.store import store_blob
        from ..storage import ObjectInfo

        info = ObjectInfo(task["uri"], int(task["size"]), task["etag"])
        uri = info.uri
        rows: list[dict[str, Any]] = []
        parts: list[np.ndarray] = []  # inflated bytes not scanned yet, from offset `base` (a chunk edge)
        held, base, fmt, sniffed, state = 0, 0, None, None, 0
        todo = [0]  # nominal offsets of the chunks not scanned yet; the edge of todo[0] is `base`
        with gz.GzipPass(get_storage(uri, storage), info, self.gzip_spacing(info.size)) as gp:
            for piece in gp.pieces():
                parts.append(np.frombuffer(piece, dtype=np.uint8))
                held += len(piece)
                if fmt is None:
                    sniffed = self.sniff(uri, b"".join(p.tobytes() for p in parts)[:MAX_HEAD_BYTES], False)
                    if sniffed is None:
                        if held >= MAX_HEAD_BYTES:
                            raise FormatError(uri, 0, f"no line break in the first {held} bytes: the first line is "
                                                      f"longer than the {MAX_HEAD_BYTES >> 20} MiB this reader accepts")
                        continue
                    fmt = self._with(sniffed)
                todo += [u for u in gp.seek_offsets() if todo[-1] < u < base + held]
                if len(todo) < 2:
                    continue
                data = np.concatenate(parts) if len(parts) > 1 else parts[0]
                parts = [data]
                rel = fmt.line_start_after(data, todo[-1] - base)
                if rel is None or rel >= len(data):  # the edge (or whether the object ends there) is not known yet
                    continue
                got = fmt._scan_chunks(data, base, todo[:-1], base + rel, sys.maxsize, state=state)
                rows += got
                state = fmt.state_after(got, state)
                parts, held, base, todo = [data[rel:]], len(data) - rel, base + rel, todo[-1:]
            size = gp.size
            if fmt is None:
                sniffed = self.sniff(uri, b"".join(p.tobytes() for p in parts), True)
                if sniffed is None:
                    raise FormatError(uri, 0, "cannot tell the line separator from the whole object")
                fmt = self._with(sniffed)
            todo += [u for u in gp.seek_offsets() if todo[-1] < u < size]
            data = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.empty(0, np.uint8))
            rows += fmt._scan_chunks(data, base, todo, size, size, state=state)
            result = gp.result()
        blob = store_blob(task["index_dir"], "windows", result.blob, storage)
        return [{"gzip_index": {"seeks": result.points, "size": result.size, "blob": blob,
                                "blob_size": len(result.blob), "sniff": sniffed, "counted": True}}, *rows]

    def _bgzf_map(self, task: Mapping[str, Any], storage: StorageOptions) -> dict[str, Any]:
        """Stage 1 for BGZF: the blocks that start in one chunk of the object (headers only, no inflating).

        The chunk at the object's start also inflates its first blocks, to sniff what the format needs
        from the first bytes (CSV's line separator).
        """
        uri, size, start, end = task["uri"], int(task["size"]), int(task["start"]), int(task["end"])
        st = get_storage(uri, storage)
        data = st.read(uri, start, min(size, end + 2 * gz.BGZF_MAX_BLOCK), etag=task["etag"])
        walk = gz.bgzf_blocks(uri, data, start, start, end, size, self.gzip_spacing(size))
        row: dict[str, Any] = {"bgzf": walk}
        if start == 0:
            n = HEAD_BYTES
            while True:
                head = b"".join(gz.inflate_pieces(uri, [data], 0, 0, 0, None, n, size, partial=True, member=True))
                complete = len(head) < n
                sniffed = self.sniff(uri, head, complete)
                if sniffed is not None or complete or n >= MAX_HEAD_BYTES:
                    break
                n *= 4
            if sniffed is None:
                raise FormatError(uri, 0, f"no line break in the first {len(head)} bytes: the first line is longer "
                                          f"than the {MAX_HEAD_BYTES >> 20} MiB this reader accepts")
            walk["sniff"] = sniffed
        return row

    @staticmethod
    def _bgzf_walks(info: ObjectInfo, rows: list[dict[str, Any]]) -> tuple[list[list[int]], int] | None:
        """The BGZF chunk walks joined into seek points; None when they show the object is not all BGZF."""
        walks = [r["bgzf"] for r in rows if "bgzf" in r]
        if not walks:
            return None
        if any(w.get("broken") is not None for w in walks):
            return None
        try:
            return gz.bgzf_seeks(info.uri, walks, info.size)
        except FormatError:
            return None  # chains that do not join: the sequential pass decides (and names any damage)

    @classmethod
    def _gzip_index(cls, info: ObjectInfo,
                    rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The seek points the first build stage found (gzip or BGZF), and the other rows (None: plain)."""
        for i, r in enumerate(rows):
            if "gzip_index" in r:
                return r["gzip_index"], [x for j, x in enumerate(rows) if j != i and "bgzf" not in x]
        walks = [r["bgzf"] for r in rows if "bgzf" in r]
        if not walks:
            return None, rows
        joined = cls._bgzf_walks(info, rows)
        if joined is None:
            raise FormatError(info.uri, 0, "its BGZF blocks do not chain (internal: the fallback did not run)")
        seeks, usize = joined
        sniff = next((w["sniff"] for w in walks if "sniff" in w), {})
        g = {"seeks": seeks, "size": usize, "blob": None, "blob_size": 0, "sniff": sniff, "member": True}
        return g, [r for r in rows if "bgzf" not in r]

    def build_followup(self, info: ObjectInfo, rows: list[dict[str, Any]], index_dir: str) -> list[dict[str, Any]]:
        """Stage 2 for BGZF: count records in runs of blocks, in parallel (a gzip pass counted as it went)."""
        if any("bgzf" in r for r in rows) and self._bgzf_walks(info, rows) is None:
            return [{"codec": "gzip-all", "uri": info.uri, "etag": info.etag, "size": info.size,
                     "index_dir": index_dir}]
        g, _ = self._gzip_index(info, rows)
        if g is None or g.get("counted"):
            return []
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
                          "usize": size, "u": u, "c": c, "bits": bits, "window": [win_off, win_len],
                          "blob": join_uri(index_dir, g["blob"]) if g["blob"] else None, "bounds": bounds[k: m + 1],
                          "c_end": c_end, "sniff": g.get("sniff") or {}, "member": bool(g.get("member"))})
            k = m
        return tasks

    def _gzip_count(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        uri, bounds, usize = task["uri"], task["bounds"], int(task["usize"])
        c, bits = int(task["c"]), int(task["bits"])
        win_off, win_len = task["window"]
        window = None
        if win_len > 0:
            window = zlib.decompress(get_storage(task["blob"], storage).read(task["blob"], win_off, win_off + win_len))
        c_start = c - 1 if bits else c
        c_end = int(task["c_end"])
        u0, end = int(task["u"]), int(bounds[-1])
        st = get_storage(uri, storage)
        while True:
            # inflate the task's seek intervals plus a look-ahead that holds the line start ending its last chunk
            comp = st.read(uri, c_start, c_end, etag=task["etag"])
            want = min(usize, end + LOOKAHEAD) - u0
            data = np.frombuffer(gz.inflate(uri, comp, c_start, c, bits, window, want, int(task["size"]),
                                            partial=c_end < int(task["size"]), member=bool(task.get("member"))),
                                 dtype=np.uint8)
            last = usize if end >= usize else self.line_start_after(data, end - u0)
            if last is not None or c_end >= int(task["size"]):
                break
            c_end = min(int(task["size"]), c_end + 2 * (c_end - c_start))
        last = usize if last is None else (u0 + last if end < usize else usize)
        return self._scan_chunks(data, u0, [int(b) for b in bounds[:-1]], last, usize)

    def _scan_chunks(self, data: np.ndarray, base: int, nominal: list[int], last: int,
                     size: int, state: int | None = None) -> list[dict[str, Any]]:
        """What the reduce needs to know of the chunks of ``data`` (which starts at offset ``base``).

        ``state``: what a sequential pass knows of the format's state where ``data`` starts (see
        :meth:`state_after`); None in a parallel task, which cannot know it.
        """
        raise NotImplementedError

    def state_after(self, rows: list[dict[str, Any]], state: int | None) -> int | None:
        """The format's state after ``rows`` (None: it scans every chunk without one)."""
        return None


class LineFormat(ChunkedBuild):
    """Base of formats whose records are runs of lines; subclasses say which line breaks end a record."""

    #: states at a line start (see the module docstring); 0 is "a record starts here"
    n_states: ClassVar[int] = 1
    # bytes first (the default): its cuts snap to index points, so neighbouring slices never read the same
    # bytes twice; equal record counts must cut between index points, re-reading up to one spacing per cut
    strategies: ClassVar[dict[str, str]] = {
        "bytes": "equal uncompressed bytes per slice, cut at exact record boundaries (at index points)",
        "records": "equal record counts per slice (within one record)",
    }

    # -- the record machine (what subclasses change) -------------------------------------------------
    def scan(self, buf: np.ndarray, state: int, eof: bool, newlines: np.ndarray | None = None,
             check: bool = True) -> LineScan:
        """Records of ``buf``, which starts at a line start in ``state``; ``eof``: it ends the object.

        ``check``: also look for malformed records (index builds must; decoders that check every record
        they decode anyway may skip it).
        """
        nl = np.flatnonzero(buf == NL) if newlines is None else newlines
        return LineScan(nl, 0, bool(len(buf) and buf[-1] != NL))

    def scan_states(self, buf: np.ndarray, eof: bool, newlines: np.ndarray) -> list[LineScan]:
        """:meth:`scan` from every state (index build); formats may share work between the states."""
        return [self.scan(buf, s, eof, newlines) for s in range(self.n_states)]

    def check_end(self, uri: str, size: int, sc: LineScan) -> None:
        """Raise if the object cannot end like this (e.g. inside a FASTQ record or a CSV quote)."""

    def first_record(self) -> int:
        """Records at the start of every object that are not data (a CSV header)."""
        return 0

    # -- index build --------------------------------------------------------------------------------
    def _scan_chunks(self, data: np.ndarray, base: int, nominal: list[int], last: int,
                     size: int, state: int | None = None) -> list[dict[str, Any]]:
        """For each chunk and each possible start state: what the reduce needs (see the module docstring).

        A sequential pass knows the ``state`` its data starts in: then only that state is scanned (the
        others stay None; the reduce walks the true states only).
        """
        edges = self._edges(data, base, nominal, last)
        rows = []
        for a, b in zip(edges, edges[1:], strict=False):
            sub = data[a - base: b - base]
            eof = b >= size
            newlines = np.flatnonzero(sub == NL)
            per_state: list[list[Any] | None] = [None] * self.n_states
            if state is None:
                scans = list(enumerate(self.scan_states(sub, eof, newlines)))
            else:
                scans = [(state, self.scan(sub, state, eof, newlines))]
            for s, sc in scans:
                per_state[s] = [
                    len(sc.ends),
                    int(sc.ends[0]) + a if len(sc.ends) else -1,
                    int(sc.state),
                    bool(sc.pending),
                    sc.open_at + a if sc.open_at >= 0 else -1,
                    sc.bad + a if sc.bad >= 0 else -1,
                    sc.why,
                ]
                if state is not None:
                    state = int(sc.state)
            fp_len = min(FINGERPRINT_BYTES, b - a)
            row = {"chunk": a, "end": b, "fp": fingerprint(sub[:fp_len]), "fp_len": fp_len, "states": per_state}
            stats = self.chunk_stats(sub, a)
            if stats is not None:
                row["stats"] = stats
            rows.append(row)
        return rows

    def state_after(self, rows: list[dict[str, Any]], state: int | None) -> int | None:
        """The state after ``rows`` (from :meth:`_scan_chunks`) when their data started in ``state``."""
        for row in rows:
            state = int(row["states"][state][2])
        return state

    def chunk_stats(self, buf: np.ndarray, offset: int) -> list[list[Any]] | None:
        """Pruning statistics of the records that start in one chunk: ``[[key, low, high], ...]``.

        A format that can skip index points on a query (VCF: contig, min start, max end) returns rows whose
        ``key`` is null when the chunk cannot be described (it is then never skipped); None: no statistics.
        """
        return None

    def kept_points(self, index: Index) -> list[tuple[int, int]] | None:
        """Runs ``[i, j)`` of index points a read needs (from its pruning options); None: every point."""
        return None

    def _walk(self, uri: str, rows: list[dict[str, Any]], size: int) -> tuple[list[list[int]], int]:
        """The reduce: chunk results in order from state 0 -> index points and the record count.

        A point is ``[edge, record start, records before, fingerprint, fingerprint length]``: the first
        record start at or after the chunk's edge (the edge itself when the chunk starts in state 0).
        """
        points: list[list[int]] = []
        state, terminators, open_at, pending = 0, 0, -1, False
        for row in rows:
            count, first_end, end_state, pending, row_open, bad, why = row["states"][state]
            if bad >= 0:
                raise FormatError(uri, bad, why)
            p = row["chunk"]
            if state == 0:
                point = (p, terminators)
            elif first_end >= 0 and first_end + 1 < size:
                point = (first_end + 1, terminators + 1)
            else:
                point = None  # no record starts in this chunk: the next point covers it
            if point is not None and point[0] < size and (not points or point[0] > points[-1][1]):
                points.append([p, *point, row["fp"], row["fp_len"]])
            terminators += count
            state = end_state
            open_at = row_open if row_open >= 0 else (open_at if end_state else -1)
        final = LineScan(np.empty(0, np.int64), state, bool(pending), open_at)
        self.check_end(uri, size, final)
        return points, terminators + (1 if final.pending else 0)

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        gzip_index, rows = self._gzip_index(info, rows)
        size = int(gzip_index["size"]) if gzip_index else info.size
        rows = sorted(rows, key=lambda r: r["chunk"])
        points, records = self._walk(info.uri, rows, size)
        cols = {
            "chunk": [p[0] for p in points],
            "offset": [p[1] for p in points],
            "records_before": [p[2] for p in points],
            "fp": [p[3] for p in points],
            "fp_len": [p[4] for p in points],
        }
        manifest: dict[str, Any] = {
            "index_params": self.index_params(),
            "records": records,
            "uncompressed_size": size,
        }
        tables: dict[str, pa.Table] = {}
        if gzip_index is None:
            sniffed = rows[0].get("sniff") if rows else None
            manifest.update(compression="none", spacing=self.spacing)
        else:
            # every chunk edge lies in a seek interval: each point carries the seek point it inflates from
            seeks = gzip_index["seeks"]
            su = np.array([s[0] for s in seeks], dtype=np.int64)
            k = np.searchsorted(su, np.array(cols["chunk"], dtype=np.int64), side="right") - 1
            for j, name in enumerate(("seek_u", "seek_c", "seek_bits", "window_offset", "window_size")):
                cols[name] = [int(seeks[i][j]) for i in k]
            tables["seeks"] = pa.table({"u": pa.array([s[0] for s in seeks], pa.int64()),
                                        "c": pa.array([s[1] for s in seeks], pa.int64())})
            sniffed = gzip_index.get("sniff")
            manifest.update(compression="gzip", spacing=self.gzip_spacing(info.size))
            if gzip_index.get("member"):
                manifest["seek_points"] = "members"  # BGZF: every point is a block start, no windows
            else:
                manifest.update(blobs={"windows": gzip_index["blob"]},
                                blob_sizes={"windows": int(gzip_index["blob_size"])})
        tables["points"] = pa.table({n: pa.array(c, pa.int64()) for n, c in cols.items()})
        if any("stats" in r for r in rows):
            tables["stats"] = _stats_table(rows, cols["chunk"])
        manifest["attrs"] = {"sniff": sniffed or {}}
        return Index(manifest, tables)

    # -- planning -----------------------------------------------------------------------------------
    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        if index is not None:
            return dict(index.attrs.get("sniff") or {})
        return {}

    def units(self, index: Index, strategy: str) -> int:
        runs = self._runs(index, strategy)
        return int(sum(u for *_, u in runs))

    def _runs(self, index: Index, strategy: str) -> list[tuple[int, int, int, int, int]]:
        """The record ranges a read covers: ``(first record, end record, first byte, end byte, units)``.

        One run for the whole object unless :meth:`kept_points` prunes it; a run's units are its records or
        its bytes, by strategy.
        """
        first = self._with(index.attrs.get("sniff")).first_record()
        off, recs = self._point_arrays(index)
        kept = self.kept_points(index)
        spans = [(0, len(off) - 1)] if kept is None else kept
        out = []
        for i, j in spans:
            ra, rb = max(first, int(recs[i])), max(first, int(recs[j]))
            if rb > ra:
                out.append((ra, rb, int(off[i]), int(off[j]), rb - ra if strategy == "records"
                            else int(off[j]) - int(off[i])))
        return out

    def _point_arrays(self, index: Index) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and records before each index point, the object's end appended (built once per index)."""
        key = "lines.points"
        if key not in index.memo:
            pts = index.tables["points"]
            index.memo[key] = (np.append(pts.column("offset").to_numpy(), self.weight(index)),
                               np.append(pts.column("records_before").to_numpy(), index.records))
        return index.memo[key]

    def _record_of_byte(self, index: Index, b: int) -> int:
        """The record at the index point nearest to byte ``b`` (the object's end counts as a point).

        Cutting only at index points means neighbouring slices share no bytes (for gzip: no data is
        inflated twice); asking for more slices than the index has points gives one slice per point.
        """
        offs, recs = self._point_arrays(index)
        k = int(np.searchsorted(offs, b))
        best = min((j for j in (k - 1, k) if 0 <= j < len(offs)), key=lambda j: abs(int(offs[j]) - b))
        return int(recs[best])

    def slices(
        self, index: Index, strategy: str, cuts: list[int], storage_options: StorageOptions
    ) -> list[Slice | list[Slice] | None]:
        runs = self._runs(index, strategy)
        bounds = np.cumsum([0] + [u for *_, u in runs])
        where = []  # each cut as (run, record)
        for c in cuts:
            k = min(int(np.searchsorted(bounds, c, side="right")) - 1, len(runs) - 1)
            ra, rb, ba, _, _ = runs[k]
            local = c - int(bounds[k])
            rec = ra + local if strategy == "records" else self._record_of_byte(index, ba + local)
            where.append((k, min(max(ra, rec), rb)))
        out: list[Slice | list[Slice] | None] = []
        for (ka, a), (kb, b) in zip(where, where[1:], strict=False):
            pieces = [(a, b)] if ka == kb else (
                [(a, runs[ka][1])] + [(r[0], r[1]) for r in runs[ka + 1: kb]] + [(runs[kb][0], b)])
            got = [self.record_slice(index, x, y, storage_options) for x, y in pieces if y > x]
            out.append(None if not got else got[0] if len(got) == 1 else got)
        return out

    def record_slice(self, index: Index, a: int, b: int, storage_options: StorageOptions) -> Slice:
        """The slice of records ``[a, b)``: from the edge of the point before ``a`` to the point after ``b``."""
        points = index.tables["points"]
        if "lines.columns" not in index.memo:
            index.memo["lines.columns"] = {name: points.column(name).to_numpy()
                                           for name in ("chunk", "offset", "records_before", "fp", "fp_len")}
        col = index.memo["lines.columns"]
        n = col["records_before"]
        src = index.source
        size = self.weight(index)
        i = int(np.searchsorted(n, a, side="right")) - 1
        j = int(np.searchsorted(n, b, side="left"))
        edge, start = int(col["chunk"][i]), int(col["offset"][i])
        end = int(col["offset"][j]) if j < len(n) else size
        total = (int(n[j]) if j < len(n) else index.records) - int(n[i])
        fp = col["fp"][i:j]
        fp_len = col["fp_len"][i:j]
        fps = [[int(e), int(ln), int(f)] for e, ln, f in zip(col["chunk"][i:j], fp_len, fp, strict=True)
               if e + ln <= end]
        context: dict[str, Any] = {"edge": edge, "start": start, "end": end, "skip": a - int(n[i]),
                                   "records": b - a, "total": total, "eof": end == size, "first": a, "fps": fps}
        if index.manifest.get("compression") != "gzip":
            ranges: tuple[ByteRange, ...] = (ByteRange(src.uri, edge, end),)
        else:
            u, c, bits, win_off, win_size = (int(points.column(k)[i].as_py()) for k in
                                            ("seek_u", "seek_c", "seek_bits", "window_offset", "window_size"))
            c_end = self._gzip_range_end(index, end)
            c_start = c - 1 if bits else c
            ranges = (ByteRange(src.uri, c_start, c_end),)
            if win_size > 0:
                ranges = (ByteRange(index.blob_uri("windows"), win_off, win_off + win_size), *ranges)
            context.update(codec="gzip", u=u, c=c, bits=bits, size=src.size, window=win_size > 0,
                           member=index.manifest.get("seek_points") == "members")
        params = {**self.params, **(index.attrs.get("sniff") or {})}  # this object's own line separator
        return Slice(format=self.name, uri=src.uri, etag=src.etag, ranges=ranges, params=params,
                     context=context, storage=storage_options, rows=b - a)

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
        bound = int(sc[k]) + 2 * (end - int(su[k])) + END_SLACK
        if k + 1 < len(sc):
            bound = min(bound, int(sc[k + 1]) + END_SLACK)
        return min(size, bound)

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        return Slice(
            format=self.name, uri=info.uri, etag=info.etag, ranges=(ByteRange(info.uri, 0, info.size),),
            params=self.params,
            context={"skip": self.first_record(), "records": None, "eof": True, "first": 0, "codec": "auto"},
            storage=storage_options,
        )

    # -- decoding: streamed, a piece at a time --------------------------------------------------------
    def decode(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        """Stream the slice's bytes (inflated from its seek point for gzip) and decode piece by piece.

        A task holds one piece (``PIECE_BYTES`` of raw or inflated bytes, and for gzip a few MiB of
        compressed ones), the record it cuts in two and one batch, whatever the slice's size.
        """
        from ..slices import PIECE_BYTES

        ctx = slice_.context
        codec = ctx.get("codec")
        if codec == "auto":  # read without an index: the whole object in one task, as Spark would
            raw: bytes | memoryview = data.read(0)
            if gz.is_gzip(raw[:2]):
                raw = gz.inflate_all(slice_.uri, raw)
            fmt = self._with(self.sniff(slice_.uri, bytes(raw[:MAX_HEAD_BYTES]), True))
            view = memoryview(raw)
            yield from fmt._decode_stream(slice_, (view[i: i + PIECE_BYTES] for i in range(0, len(view), PIECE_BYTES)),
                                          0)
            return
        if codec == "gzip":
            window = zlib.decompress(data.read(0)) if ctx.get("window") else None
            comp_range = slice_.ranges[-1]
            u = int(ctx["u"])
            pieces = gz.inflate_pieces(slice_.uri, data.pieces(len(slice_.ranges) - 1), comp_range.start,
                                       int(ctx["c"]), int(ctx["bits"]), window, int(ctx["end"]) - u,
                                       int(ctx["size"]), piece=PIECE_BYTES, member=bool(ctx.get("member")))
            yield from self._decode_stream(slice_, _drop(pieces, int(ctx["edge"]) - u), int(ctx["edge"]))
            return
        yield from self._decode_stream(slice_, data.pieces(0), slice_.ranges[0].start)

    def _decode_stream(self, slice_: Slice, pieces: Iterator[bytes | memoryview],
                       base: int) -> Iterator[pa.RecordBatch]:
        """Records from consecutive pieces of bytes starting at offset ``base`` (a chunk edge).

        Each step decodes the whole records that have arrived and carries the one cut in two into the
        next step, which scans again from its start (always state 0: a record start). Fingerprints are
        checked as their bytes pass; records are counted over the whole range, emitted or not, and must
        be exactly what the index counted.
        """
        ctx = slice_.context
        skip, want, eof = int(ctx.get("skip", 0)), ctx.get("records"), bool(ctx.get("eof"))
        stop_at = None if want is None else skip + int(want)
        start = int(ctx.get("start", base))
        fps = [[int(p), int(n), int(c), b""] for p, n, c in ctx.get("fps") or ()]
        carry, carry_base, pos, found = b"", start, base, 0
        last_piece = False
        it = iter(pieces)
        nxt = next(it, None)
        while not last_piece:
            piece = nxt if nxt is not None else b""
            nxt = next(it, None)
            last_piece = nxt is None
            end = pos + len(piece)
            if fps:
                fps = self._check_fingerprints(slice_, fps, piece, pos)
            if end <= start:
                pos = end
                if not last_piece:
                    continue
                piece = b""
            elif pos < start:
                piece = piece[start - pos:]
            pos = end
            arr = np.frombuffer(bytes(carry) + bytes(piece) if carry else piece, dtype=np.uint8)
            sc = self.scan(arr, 0, eof and last_piece, check=False)
            stops = sc.ends + 1
            if sc.bad >= 0 and (last_piece or (len(stops) and sc.bad < stops[-1])):
                raise FormatError(slice_.uri, carry_base + sc.bad, sc.why)
            if last_piece and eof:
                self.check_end(slice_.uri, carry_base + len(arr),
                               LineScan(sc.ends, sc.state, sc.pending,
                                        carry_base + sc.open_at if sc.open_at >= 0 else -1))
                if sc.pending:
                    stops = np.append(stops, len(arr))
            lo_rec, hi_rec = found, found + len(stops)
            a = max(skip, lo_rec)
            b = hi_rec if stop_at is None else min(stop_at, hi_rec)
            if b > a:
                lo = int(stops[a - lo_rec - 1]) if a > lo_rec else 0
                hi = int(stops[b - lo_rec - 1])
                yield self.decode_records(slice_, arr[lo:hi], carry_base + lo, b - a, (sc, lo))
            found = hi_rec
            cut = int(stops[-1]) if len(stops) else 0
            carry, carry_base = arr[cut:].tobytes() if cut < len(arr) else b"", carry_base + cut
        total = ctx.get("total")
        if total is not None and found != int(total):
            raise StaleIndexError(
                f"{slice_.uri}: found {found} records in [{start}, {pos}) where the index counted {total}: the "
                f"object is different than when it was indexed; rebuild its index (dataplug index --force "
                f"--format {self.name} {slice_.uri})")
        if stop_at is not None and found < stop_at:
            raise FormatError(slice_.uri, pos, f"found {found - skip} of the {want} records its index promises in "
                              f"[{start}, {pos}): the object is shorter or different than when it was indexed "
                              "(rebuild the index with --force)")

    def _check_fingerprints(self, slice_: Slice, fps: list[list[Any]], piece: bytes | memoryview,
                            pos: int) -> list[list[Any]]:
        """Feed a piece at offset ``pos`` to the pending fingerprints; returns those still incomplete."""
        left = []
        for fp in fps:
            at, length, crc, got = fp
            lo, hi = max(at, pos), min(at + length, pos + len(piece))
            if hi > lo:
                got += bytes(piece[lo - pos: hi - pos])
            if len(got) < length:
                left.append([at, length, crc, got])
                continue
            value = fingerprint(got)
            if value != crc:
                raise StaleIndexError(
                    f"{slice_.uri}: the bytes at offset {at} differ from those indexed (CRC32 {value:08x}, indexed "
                    f"{crc:08x}): the object changed since it was indexed; rebuild its index (dataplug index "
                    f"--force --format {self.name} {slice_.uri})")
        return left

    @abstractmethod
    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       scanned: tuple[LineScan, int] | None = None) -> pa.RecordBatch:
        """Decode exactly ``count`` whole records held in ``buf`` (which starts at byte ``offset``).

        ``scanned``: the scan of a larger buffer that holds ``buf`` at the given position, for formats
        whose decoding needs what the scan found (so it is not found twice).
        """


def _stats_table(rows: list[dict[str, Any]], point_chunks: list[int]) -> pa.Table:
    """Chunk statistics per index point (a chunk without a point of its own belongs to the one before)."""
    import pyarrow as pa

    chunks = np.asarray(point_chunks, dtype=np.int64)
    merged: dict[tuple[int, Any], list[int]] = {}
    for r in rows:
        point = int(np.searchsorted(chunks, r["chunk"], side="right")) - 1
        for key, low, high in r.get("stats") or ():
            cur = merged.get((point, key))
            merged[(point, key)] = [low, high] if cur is None else [min(cur[0], low), max(cur[1], high)]
    items = sorted(merged.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
    return pa.table({"point": pa.array([k[0] for k, _ in items], pa.int64()),
                     "key": pa.array([k[1] for k, _ in items], pa.string()),
                     "low": pa.array([v[0] for _, v in items], pa.int64()),
                     "high": pa.array([v[1] for _, v in items], pa.int64())})


def _drop(pieces: Iterator[bytes | memoryview], n: int) -> Iterator[bytes | memoryview]:
    """The pieces without their first ``n`` bytes (inflation starts at a seek point, decoding at an edge)."""
    for piece in pieces:
        if n >= len(piece):
            n -= len(piece)
            continue
        yield piece[n:] if n else piece
        n = 0
