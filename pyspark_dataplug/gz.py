"""gzip seek points: found in the one pass that also counts records; a slice inflates from one point.

Build: :class:`GzipPass` reads the object as a stream (ranged reads through :class:`RangeFile`, the next
block in flight while one inflates; never a download to disk) with ``rapidgzip``, which places a seek point
every ``spacing`` uncompressed bytes: compressed offset, bit offset, uncompressed offset and the 32 KiB of
history (the *window*) a raw-deflate decoder needs there, zeroed where no later match reads it. The same
inflated bytes are scanned for records as they pass (``formats/_lines.py``), so the object is read once.
The exported index (the ``GZIDX`` layout of ``indexed_gzip``'s ``zran_export_index``, which ``rapidgzip``
writes too) is parsed and each window zlib-compressed into one blob, so a task range-reads just the one
window it needs. BGZF objects need no pass at all: every block is a member (:func:`bgzf_blocks`).

Read: :func:`inflate` resumes at a point with Python's own zlib -- raw deflate primed with the window as
its dictionary. A point that starts mid-byte is handled by shifting the compressed bytes so the stream
starts on a byte boundary (zlib has ``inflatePrime`` but Python does not expose it). Members end and new
ones start (multi-member gzip, BGZF): after the first member the bytes are byte-aligned again.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FormatError, OptionError

try:  # ISA-L inflates the same streams 2-3x faster than zlib; it mirrors zlib's API (zdict included)
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflater = zlib

if TYPE_CHECKING:
    from .storage import ObjectInfo, Storage

MAGIC = b"\x1f\x8b"
WINDOW = 32768
#: seek point spacings: more than the window a point stores (the bound zran, the index layout's origin, set:
#: 32768 fails, 32769 works), and far below sizes where a build task's buffers of a few spacings hurt
MIN_SPACING = WINDOW + 1
MAX_SPACING = 256 << 20
_HEADER = struct.Struct("<5sBBQQIII")
_POINT = struct.Struct("<QQBB")


def is_gzip(head: bytes) -> bool:
    return head[:2] == MAGIC


@dataclass(frozen=True)
class SeekPoint:
    """Where inflation can resume: compressed byte ``c`` (``bits`` bits of byte ``c - 1`` come first)."""

    u: int  # uncompressed offset
    c: int  # compressed offset of the first whole byte
    bits: int  # 0-7: bits of byte c-1 that belong to the stream
    window: bytes | None  # the 32 KiB of uncompressed history before u (None at the start of a member)


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over one object that fetches big, aligned ranged blocks as it goes.

    Blocks sit on a fixed grid and the last few are kept: ``rapidgzip`` reads each chunk a little before
    where the previous one ended, and with one buffer that re-fetched the block before every chunk (a
    101 MB ``.gz`` cost 388 MB of GETs). With ``ahead``, the next block is already in flight, so a
    sequential pass inflates one block while the next crosses the network instead of waiting for each.
    """

    KEEP = 3  # blocks kept: the current one, the one before (read again at chunk starts) and one spare

    def __init__(self, storage: Storage, info: ObjectInfo, block: int = 8 << 20, ahead: bool = False) -> None:
        self.storage, self.info, self.block = storage, info, block
        self.pos = 0
        self._blocks: dict[int, bytes] = {}  # block number -> bytes, oldest first
        self._pool = None
        self._next: tuple[int, Any] | None = None  # (block number, future) of the block read ahead
        self.error: Exception | None = None  # the last storage error (a native caller may not re-raise it)
        if ahead:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataplug-ahead")

    def _fetch(self, k: int) -> bytes:
        start = k * self.block
        return self.storage.read(self.info.uri, start, min(self.info.size, start + self.block), etag=self.info.etag)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._next = None, None
        self._blocks.clear()
        super().close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.info.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _get(self, k: int) -> bytes:
        data = self._blocks.pop(k, None)
        if data is None:
            try:
                if self._next is not None and self._next[0] == k:
                    data = self._next[1].result()
                else:
                    data = self._fetch(k)
            except Exception as e:  # a native reader calling us may hide it: keep it for the caller
                self.error = e
                raise
            if self._pool is not None and (k + 1) * self.block < self.info.size and k + 1 not in self._blocks:
                self._next = (k + 1, self._pool.submit(self._fetch, k + 1))
        self._blocks[k] = data  # most recent last
        while len(self._blocks) > self.KEEP:
            del self._blocks[next(iter(self._blocks))]
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.pos >= self.info.size:
            return 0
        k, i = divmod(self.pos, self.block)
        data = self._get(k)
        n = min(len(b), len(data) - i)
        b[:n] = data[i: i + n]
        self.pos += n
        return n


class _IndexSink(io.RawIOBase):
    """Receives ``export_index`` output and parses it on the fly, compressing each window into ``blob``."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.header: tuple | None = None
        self.points: list[list[int]] = []  # [c, u, bits, has_window, win_off, win_len]
        self.next_window = 0
        self.blob = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.pending += b
        self._parse()
        return len(b)

    def _parse(self) -> None:
        if self.header is None:
            if len(self.pending) < _HEADER.size:
                return
            self.header = _HEADER.unpack_from(self.pending)
            if self.header[0] != b"GZIDX" or self.header[1] != 1:
                raise ValueError(f"unexpected indexed_gzip export header {self.header[:2]}")
            del self.pending[: _HEADER.size]
        npoints = self.header[-1]
        while len(self.points) < npoints and len(self.pending) >= _POINT.size:
            c, u, bits, has_window = _POINT.unpack_from(self.pending)
            self.points.append([c, u, bits, has_window, -1, 0])
            del self.pending[: _POINT.size]
        if len(self.points) < npoints:
            return
        while self.next_window < npoints:
            point = self.points[self.next_window]
            if not point[3]:
                self.next_window += 1
                continue
            if len(self.pending) < WINDOW:
                return
            packed = zlib.compress(bytes(self.pending[:WINDOW]), 6)
            point[4], point[5] = self.blob.tell(), len(packed)
            self.blob.write(packed)
            del self.pending[:WINDOW]
            self.next_window += 1


@dataclass
class GzipScan:
    """Result of one pass: the seek points (windows stored in ``blob``) and the uncompressed size."""

    points: list[list[int]]  # [u, c, bits, win_off, win_len]
    blob: bytes
    size: int


class GzipPass:
    """One sequential pass over a gzip object: its inflated bytes as they come, then its seek points.

    ``rapidgzip`` inflates (its own inflater, ISA-L inside: 1.25 s for a 300 MB FASTQ here, where a Python
    zlib pass takes 2.5 s and ``indexed_gzip``'s index pass alone 2.2 s) and records a seek point every
    ``spacing`` uncompressed bytes as it goes. The caller counts records in the very bytes that build the
    index, so one read of the object does both. Its windows are *sparse*: history bytes that no later
    back-reference uses are zeroed, and zeros compress to nothing (about 3 KB a point for FASTQ, against
    ~12 KB for a full window), which is what makes fine spacings affordable. A reader primes its inflater
    with such a window exactly as with a full one. One thread: a Spark task owns one core.
    """

    def __init__(self, storage: Storage, info: ObjectInfo, spacing: int, piece: int = 4 << 20) -> None:
        if not MIN_SPACING <= spacing <= MAX_SPACING:
            raise OptionError(f"{info.uri}: gzipSpacing {spacing} is out of range: it must be from {MIN_SPACING} "
                              f"(just over the {WINDOW // 1024} KiB window a seek point stores) to {MAX_SPACING} "
                              "bytes")
        self.info, self.spacing, self.piece = info, spacing, piece
        self.raw = RangeFile(storage, info, ahead=True)
        self.file: Any = None
        self.size = 0

    def __enter__(self) -> GzipPass:
        import rapidgzip

        try:
            if not is_gzip(self.raw.read(2)):
                raise FormatError(self.info.uri, 0, "not a gzip stream (no 1f 8b magic at the start)")
            self.raw.seek(0)
            self.file = rapidgzip.RapidgzipFile(self.raw, parallelization=1, chunk_size=self.spacing)
        except BaseException:
            self.raw.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.file is not None:
                self.file.close()  # joins its threads: a live one aborts the interpreter at exit
        finally:
            self.raw.close()

    def _bad(self, e: Exception) -> FormatError:
        return FormatError(self.info.uri, self.raw.tell(),
                           f"corrupt or truncated gzip stream ({type(e).__name__}: {str(e)[:300]})")

    def pieces(self) -> Iterator[bytes]:
        """The inflated object, ``piece`` bytes at a time; CRC32 and length of every member are checked.

        In the caller's thread: rapidgzip's read holds the GIL (a busy Python thread beside it made the same
        pass 2.9x slower here), so inflating in a second thread while this one scans would not overlap.
        """
        while True:
            try:
                data = self.file.read(self.piece)
            except Exception as e:
                if self.raw.error is not None:  # the storage failed, not the stream
                    raise self.raw.error from e
                if isinstance(e, FormatError):
                    raise
                raise self._bad(e) from e
            if not data:
                return
            self.size += len(data)
            yield data

    def seek_offsets(self) -> list[int]:
        """Uncompressed offsets of the seek points placed so far (the pass runs a little ahead of ``pieces``)."""
        return sorted(self.file.available_block_offsets().values())

    def result(self) -> GzipScan:
        """After the last piece: every seek point, windows compressed into one blob."""
        import rapidgzip

        out = io.BytesIO()  # its export seeks back to write the point count: it cannot stream into the sink
        try:
            # a stream cut inside its last deflate block reads as ending early; only the export notices
            self.file.export_index(out, index_format=rapidgzip.IndexFormat.INDEXED_GZIP)
        except Exception as e:
            if self.raw.error is not None:
                raise self.raw.error from e
            raise self._bad(e) from e
        sink = _IndexSink()
        sink.write(out.getvalue())
        if sink.header is None or int(sink.header[4]) != self.size:
            raise FormatError(self.info.uri, self.info.size, "the gzip index export does not match the stream "
                              f"(uncompressed size {self.size})")
        points = sorted([u, c, bits, off, n] for c, u, bits, _has, off, n in sink.points)
        return GzipScan(points, sink.blob.getvalue(), self.size)


def _shift(data: bytes, bits: int) -> bytes:
    """Re-align a bit stream whose first bit is the top ``bits`` bits of ``data[0]`` (LSB-first order)."""
    a = np.frombuffer(data, np.uint8).astype(np.uint16)
    s = 8 - bits
    out = ((a[:-1] >> s) | (a[1:] << bits)) & 0xFF
    return out.astype(np.uint8).tobytes()


def inflate(uri: str, comp: bytes, comp_start: int, point_c: int, bits: int, window: bytes | None, want: int,
            object_size: int, partial: bool = False, member: bool = False) -> bytes | memoryview:
    """``want`` uncompressed bytes from a seek point, given compressed bytes ``comp`` from ``comp_start``.

    ``comp_start`` is ``point_c - 1`` when ``bits`` (the point starts inside that byte), else ``point_c``.
    ``partial``: ``comp`` is a prefix of the rest of the object, so running out of it returns what it
    gave instead of failing (the caller fetches more if that was not enough).
    """
    return _first(list(inflate_pieces(uri, [comp], comp_start, point_c, bits, window, want, object_size, partial,
                                      member=member)), want)


def _feed(d: object, next_block: Callable[[], bytes], left: int, piece: int,
          fail: Callable[[Exception], Exception]) -> Iterator[bytes]:
    """Inflate one member: at most ``piece`` bytes per chunk, until ``left`` bytes, its end or the input's."""
    data = b""
    while left > 0:
        if not data:
            data = next_block()
            if not data:  # the input is over, but ISA-L may still hold some of it (not in unconsumed_tail)
                yield from _drain(d, left, piece, fail)
                return
        try:
            chunk = d.decompress(data, min(piece, left))  # type: ignore[attr-defined]
        except (zlib.error, _inflater.error) as e:
            raise fail(e) from e
        if chunk:
            left -= len(chunk)
            yield chunk
        if d.eof:  # type: ignore[attr-defined]
            return
        data = d.unconsumed_tail  # type: ignore[attr-defined]


def _drain(d: object, left: int, piece: int, fail: Callable[[Exception], Exception]) -> Iterator[bytes]:
    """Output an inflater can still give without more input (capped pieces leave some inside ISA-L)."""
    while left > 0 and not d.eof:  # type: ignore[attr-defined]
        try:
            chunk = d.decompress(b"", min(piece, left))  # type: ignore[attr-defined]
        except (zlib.error, _inflater.error) as e:
            raise fail(e) from e
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


class _Compressed:
    """Compressed bytes arriving in pieces, addressed by object offset; only a few MiB are kept."""

    def __init__(self, pieces: Iterable[bytes | memoryview], start: int) -> None:
        self.it = iter(pieces)
        self.buf = bytearray()
        self.at = start  # object offset of buf[0]
        self.done = False

    @property
    def end(self) -> int:
        return self.at + len(self.buf)

    def take(self, a: int, b: int) -> bytes:
        """Bytes ``[a, b)`` (fewer at the end of the input); drops what lies before ``a``."""
        while self.end < b and not self.done:
            piece = next(self.it, None)
            if piece is None:
                self.done = True
            else:
                self.buf += piece
        if a > self.at:
            del self.buf[: a - self.at]
            self.at = a
        return bytes(self.buf[a - self.at: b - self.at])


def inflate_pieces(uri: str, comp: Iterable[bytes | memoryview], comp_start: int, point_c: int, bits: int,
                   window: bytes | None, want: int, object_size: int, partial: bool = False,
                   piece: int | None = None, member: bool = False) -> Iterator[bytes]:
    """:func:`inflate` from compressed bytes that arrive in pieces, yielding at most ``piece`` bytes at a time.

    Neither side is held whole: a task keeps a few MiB of compressed input and one piece of output.
    ``member``: ``point_c`` is where a gzip member starts (its header), as a BGZF ``.gzi`` entry says,
    rather than a point inside raw deflate data.
    """
    piece = piece or want
    if want <= 0:
        return
    src = _Compressed(comp, comp_start)
    block = 4 << 20
    got = 0
    if member:
        yield from _members(uri, src, point_c, want, piece, partial, block)
        return
    d = _inflater.decompressobj(-15, zdict=window) if window else _inflater.decompressobj(-15)
    # the first member, from the seek point: re-aligned a block at a time when it starts inside a byte
    first_at = at = comp_start if bits else point_c

    def aligned() -> bytes:
        nonlocal at
        raw = src.take(at, at + block + (1 if bits else 0))
        if len(raw) <= (1 if bits else 0):
            return b""
        data = _shift(raw, bits) if bits else raw
        at += len(data)
        return data

    for chunk in _feed(d, aligned, want, piece, lambda e: FormatError(uri, point_c, f"corrupt deflate data ({e})")):
        got += len(chunk)
        yield chunk
    if got >= want:
        return
    if not d.eof:
        if partial:
            return
        # ran out of input inside the member
        raise FormatError(uri, src.end, f"gzip data ends early: {got} of {want} bytes inflated "
                          "(truncated object, or it changed since it was indexed)")
    # the first member ended: find its trailer on the original byte grid, then continue member by member
    consumed = (at - first_at) - len(d.unused_data)
    candidates = [point_c + consumed - 1, point_c + consumed] if bits else [point_c + consumed]
    rest_at = None
    for t in candidates:
        head = src.take(min(candidates), t + 10)[t + 8 - min(candidates):]
        if not head and src.done and t + 8 >= object_size:
            rest_at = t + 8
            break
        if head[:2] == MAGIC:
            rest_at = t + 8
            break
    if rest_at is None and partial and src.done:
        return  # the next member starts past what was fetched
    if rest_at is None:
        raise FormatError(uri, candidates[-1], "no gzip member follows the end of a deflate stream (corrupt data)")
    yield from _members(uri, src, rest_at, want - got, piece, partial, block)


def _members(uri: str, src: _Compressed, at: int, want: int, piece: int, partial: bool,
             block: int) -> Iterator[bytes]:
    """Whole gzip members from offset ``at`` (byte-aligned), until ``want`` bytes or the end of the data."""
    got = 0
    step = 0

    def plain() -> bytes:
        # small members (BGZF's are under 64 KiB) take small steps, big ones grow to ``block``: copying a
        # ``block`` of input per member would cost more than inflating it
        nonlocal at, step
        step = min(block, step * 2)
        data = src.take(at, at + step)
        at += len(data)
        return data

    while got < want:
        head = src.take(at, at + 2)
        if not head:
            break
        if head != MAGIC:
            rest = src.take(at, at + block)
            while rest and not rest.strip(b"\x00"):
                at += len(rest)
                rest = src.take(at, at + block)
            if not rest:
                break  # zero padding after the last member
            raise FormatError(uri, at, "garbage where a gzip member should start")
        d = _inflater.decompressobj(31)
        member_at = at
        step = BGZF_MAX_BLOCK // 2
        for chunk in _feed(d, plain, want - got, piece,
                           lambda e, m=member_at: FormatError(uri, m, f"corrupt gzip member ({e})")):
            got += len(chunk)
            yield chunk
        if got >= want:
            break
        if not d.eof:
            if partial:
                return
            raise FormatError(uri, src.end, "gzip data ends early (truncated object?)")
        at -= len(d.unused_data)  # the next member starts where this one's bytes ended
    if got < want and not partial:
        raise FormatError(uri, src.end, f"gzip stream ended after {got} of {want} bytes "
                          "(truncated, or changed since it was indexed)")


def _first(parts: list[bytes], want: int) -> bytes | memoryview:
    """The first ``want`` bytes of ``parts`` without copying when one part holds them (the usual case)."""
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    return data if len(data) <= want else memoryview(data)[:want]


def inflate_all(uri: str, data: bytes) -> bytes:
    """Every member of a whole gzip object (the no-index scan path)."""
    out = []
    rest = data
    while rest:
        if rest[:2] != MAGIC:
            if not rest.strip(b"\x00"):
                break
            raise FormatError(uri, len(data) - len(rest), "not a gzip member")
        d = _inflater.decompressobj(31)
        try:
            out.append(d.decompress(rest))
        except (zlib.error, _inflater.error) as e:
            raise FormatError(uri, len(data) - len(rest), f"corrupt gzip data ({e})") from e
        if not d.eof:
            raise FormatError(uri, len(data), "truncated gzip stream")
        rest = d.unused_data
    return b"".join(out)


# ----------------------------------------------------------------------------------------------- BGZF
#: every BGZF block starts so: gzip magic, deflate, FEXTRA set, then (after MTIME, XFL, OS) an extra field
#: whose first subfield is 'BC' with a 2-byte payload: the block's size minus one (SAM/BAM spec, section 4.1)
_BGZF_HEAD = re.compile(rb"\x1f\x8b\x08\x04.{6}[\x06-\xff]\x00BC\x02\x00", re.DOTALL)
#: the empty block bgzip writes last (htslib warns when it is missing)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
BGZF_MAX_BLOCK = 1 << 16


def is_bgzf(head: bytes) -> bool:
    """Whether an object starts with a BGZF block (blocked gzip: bgzip, htslib, Biopython)."""
    return _BGZF_HEAD.match(head[:18]) is not None


def _block_size(data: bytes | memoryview, p: int) -> int:
    """The size of the BGZF block at ``p`` (0 when no block header is there)."""
    if _BGZF_HEAD.match(data, p, p + 18) is None:
        return 0
    return int.from_bytes(data[p + 16: p + 18], "little") + 1


def _first_block(data: bytes, lo: int, hops: int = 3) -> int | None:
    """The first offset at or after ``lo`` where a chain of ``hops`` BGZF blocks starts (or runs to the end).

    A block's header bytes can occur inside compressed data by chance; three consecutive headers, each
    exactly where the previous block's size says, cannot in practice (and the build checks that the chains
    found by neighbouring tasks join up).
    """
    for m in _BGZF_HEAD.finditer(data, lo):
        p, ok = m.start(), True
        for _ in range(hops):
            n = _block_size(data, p)
            if n == 0 or p + n > len(data):
                ok = n > 0 and p + n > len(data)  # a block running past the buffer ends the check
                break
            p += n
            if p == len(data):
                break
        if ok:
            return m.start()
    return None


def bgzf_blocks(uri: str, data: bytes, base: int, start: int, end: int, object_size: int,
                spacing: int) -> dict[str, object]:
    """Walk the BGZF blocks that start in ``[start, end)`` of an object, from its bytes ``data`` at ``base``.

    ``data`` must reach one maximal block past ``end`` (or the object's end). Returns the first block's
    offset, the offset after the last block walked (the next task's first block: the build checks they
    join), the uncompressed bytes of those blocks, and seek points ``[u relative to the first block, c]``
    at the first block and then about every ``spacing`` uncompressed bytes. Every block is a gzip member,
    so a point needs no window. Nothing is inflated: each block's size is in its header and its
    uncompressed size in its last 4 bytes.
    """
    lo = start - base
    first = 0 if start == 0 else _first_block(data, lo)
    if first is None or first + base >= end:
        return {"first": None, "next": None, "usize": 0, "points": []}
    if start == 0 and _block_size(data, 0) == 0:
        raise FormatError(uri, 0, "not a BGZF block where the object starts")
    p, u, last_point = first, 0, None
    points: list[list[int]] = []
    while p + base < end:
        n = _block_size(data, p)
        if n == 0 or p + n > len(data):
            if n == 0 and p + base >= object_size:
                break
            # not BGZF here (a plain gzip member appended, or damage): the build falls back to one sequential
            # pass, which reads any valid gzip and names the byte where an invalid one goes wrong
            return {"first": first + base, "next": None, "usize": u, "points": points, "broken": p + base}
        if last_point is None or u - last_point >= spacing:
            points.append([u, p + base])
            last_point = u
        u += int.from_bytes(data[p + n - 4: p + n], "little")
        p += n
    return {"first": first + base, "next": p + base, "usize": u, "points": points}


def bgzf_seeks(uri: str, rows: list[dict], object_size: int) -> tuple[list[list[int]], int]:
    """The chunks' block walks joined: absolute seek points ``[u, c, 0, 0, 0]`` and the uncompressed size.

    Each chunk must start its chain exactly where the previous chunk's ended, and the last must end at the
    object's end: otherwise a false block start was found, or the object is not BGZF throughout.
    """
    seeks: list[list[int]] = []
    u, expect = 0, 0
    for r in sorted((r for r in rows if r["first"] is not None), key=lambda r: r["first"]):
        if r.get("broken") is not None:
            raise FormatError(uri, int(r["broken"]), "no BGZF block starts where the previous one ended")
        if r["first"] != expect:
            raise FormatError(uri, expect, f"BGZF blocks do not chain here (a block ends at {expect}, the next "
                                           f"chunk's first block starts at {r['first']}): not a BGZF object, "
                                           "or corrupt")
        seeks.extend([u + du, c, 0, 0, 0] for du, c in r["points"])
        u += int(r["usize"])
        expect = int(r["next"])
    if expect != object_size:
        raise FormatError(uri, expect, f"the BGZF blocks end at byte {expect} of {object_size} (truncated or "
                                       "trailing garbage)")
    return seeks, u
