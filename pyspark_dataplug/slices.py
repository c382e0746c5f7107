"""Data slices: small, immutable, picklable recipes for reading part of a dataset.

A slice holds what to fetch (byte ranges) and the little context needed to decode those bytes; it holds
no client, no credentials and no data. Evaluating it (:meth:`Slice.batches`) is the only step that touches
storage, so the same slices serve Spark tasks, Dask, Ray or a ``multiprocessing`` pool.

Offsets everywhere in this package are ``start`` inclusive, ``end`` exclusive.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import FormatError, ObjectNotFoundError
from .storage import INDEX_SUFFIX, StorageOptions, get_storage

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of one object (``start`` inclusive, ``end`` exclusive).

    ``etag``: the version of ``uri`` the index describes, for a range of another object than the slice's own
    (an imzML's ``.ibd``, a file inside a MeasurementSet folder), so those reads are checked too. A range
    of the slice's own object is checked against :attr:`Slice.etag`; index blobs (immutable by name) are not.
    """

    uri: str
    start: int
    end: int
    etag: str | None = None

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, eq=True)
class Slice:
    """One lazily evaluated piece of a dataset.

    Attributes
    ----------
    format : str
        Registry name of the format that decodes this slice.
    params : Mapping
        The format's read options (JSON-able), e.g. CSV separator and schema.
    uri, etag : str
        The object and the version the index describes; reads fail if the object changed since.
    ranges : tuple of ByteRange
        What to fetch. Most formats need one range; some need several (header + chunk).
    context : Mapping
        Format-specific decoding context (records to skip and to emit, seek point, ...).
    storage : StorageOptions
        How to reach the object; never credentials.
    rows : int or None
        Rows this slice must produce when known from the index; a different count is an error,
        never a silently short result.
    """

    format: str
    uri: str
    etag: str
    ranges: tuple[ByteRange, ...]
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    context: Mapping[str, Any] = field(default_factory=dict, hash=False)
    storage: StorageOptions = field(default_factory=StorageOptions)
    rows: int | None = None

    @property
    def nbytes(self) -> int:
        return sum(r.size for r in self.ranges)

    def reader(self) -> RangeReader:
        """How the slice's decoder reads its ranges: whole, or streamed in pieces (one ranged GET each)."""
        return RangeReader(self)

    def fetch(self) -> list[bytes]:
        """The slice's byte ranges, one ranged read each, checked against the indexed version."""
        return [RangeReader(self).read(i) for i in range(len(self.ranges))]

    def batches(self, reader: RangeReader | None = None) -> Iterator[pa.RecordBatch]:
        """Fetch and decode: Arrow record batches in the format's schema.

        When the index says how many rows the slice holds, any other count is an error -- for every
        format, whatever its decoder does -- so a changed object or a decoder bug never yields a silently
        short (or long) result.
        """
        from .errors import FormatError
        from .formats import get_format

        fmt = get_format(self.format, self.params)
        select = self.params.get("select")
        produced = 0
        for batch in fmt.decode(self, reader or self.reader()):
            produced += batch.num_rows
            if self.rows is not None and produced > self.rows:
                break
            yield batch.select(select) if select and batch.schema.names != list(select) else batch
        if self.rows is not None and produced != self.rows:
            span = ", ".join(f"[{r.start}, {r.end})" for r in self.ranges if r.uri == self.uri)
            raise FormatError(self.uri, self.ranges[-1].start if self.ranges else None,
                              f"the slice {span} gave {'more than ' if produced > self.rows else ''}{produced} rows "
                              f"where its index promises {self.rows}: the object is not what was indexed; rebuild "
                              f"its index (dataplug index --force --format {self.format} {self.uri})")

    def get(self) -> pa.Table:
        """The whole slice as one ``pyarrow.Table`` (the seed Dataplug API's ``get()``)."""
        import pyarrow as pa

        from .formats import get_format

        fmt = get_format(self.format, self.params)
        return pa.Table.from_batches(list(self.batches()), schema=fmt.output_schema())


#: bytes a decoder takes at a time when a range is streamed (and the ranged GET size unless ``partSize``
#: says otherwise): a task holds a few of these, not its whole slice
PIECE_BYTES = 8 << 20


class RangeReader:
    """A slice's byte ranges as its decoder reads them, so decoders never touch storage themselves.

    ``read(i)`` fetches range ``i`` whole (a window, a header); ``pieces(i)`` streams it as consecutive
    ranged reads of ``size`` bytes, each checked against the indexed version like any read, so a task's
    memory follows the piece size, not the slice size. Built from ``buffers`` it serves bytes already in
    memory (tests, and decoders fed by something else than storage).
    """

    def __init__(self, slice_: Slice, buffers: list[bytes] | None = None) -> None:
        self.slice = slice_
        self.buffers = buffers

    def _etag(self, r: ByteRange) -> str | None:
        # data objects are checked against the version indexed; index blobs are immutable by name
        if r.etag:
            return r.etag
        return (self.slice.etag or None) if r.uri == self.slice.uri else None

    def read(self, i: int) -> bytes:
        if self.buffers is not None:
            return self.buffers[i]
        r = self.slice.ranges[i]
        try:
            return get_storage(r.uri, self.slice.storage).read(r.uri, r.start, r.end, etag=self._etag(r))
        except ObjectNotFoundError as e:
            if INDEX_SUFFIX + "/" not in r.uri:
                raise
            from .index.store import index_file_gone

            raise index_file_gone(r.uri) from e  # an index blob (gzip windows, a header) of a replaced index

    def pieces(self, i: int, size: int | None = None) -> Iterator[bytes | memoryview]:
        r = self.slice.ranges[i]
        size = size or self.slice.storage.part_size
        if self.buffers is not None:
            view = memoryview(self.buffers[i])
            for at in range(0, len(view), size):
                yield view[at: at + size]
            return
        st = get_storage(r.uri, self.slice.storage)
        starts = range(r.start, r.end, size)
        ahead = max(1, int(self.slice.storage.parts_in_flight))
        if ahead == 1 or len(starts) == 1:
            for at in starts:
                yield st.read(r.uri, at, min(r.end, at + size), etag=self._etag(r))
            return
        # the next parts are in flight while this one is decoded: S3's first-byte latency and per-connection
        # bandwidth are hidden behind the decoder and behind each other (each part retries on its own)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="dataplug-part") as pool:
            pending = deque()
            todo = iter(starts)
            for at in itertools.islice(todo, ahead):
                pending.append(pool.submit(st.read, r.uri, at, min(r.end, at + size), self._etag(r)))
            while pending:
                data = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(st.read, r.uri, nxt, min(r.end, nxt + size), self._etag(r)))
                yield data


#: a slice whose ranges together are at most this many parts is fetched whole ahead of its turn
PREFETCH_PARTS = 1


def prefetched(slices: tuple[Slice, ...] | list[Slice]) -> Iterator[tuple[Slice, RangeReader]]:
    """A task's slices with their readers, the bytes of the next small slices already on their way.

    A partition of 32 small objects would otherwise wait for 32 first bytes one after the other (S3's
    first-byte latency is 20-50 ms; the object itself arrives in less). Up to ``partsInFlight`` small slices
    (at most one part each) are fetched ahead, in threads, while the current one decodes; large slices
    stream their own parts as before. Errors reach the caller when it comes to that slice, as without
    prefetching, and memory stays within ``partsInFlight`` parts.
    """
    ahead = max([1, *(int(s.storage.parts_in_flight) for s in slices)])
    if len(slices) < 2 or ahead == 1:  # nothing to fetch ahead of, or asked not to
        for s in slices:
            yield s, s.reader()
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    def small(s: Slice) -> bool:
        return s.nbytes <= PREFETCH_PARTS * s.storage.part_size

    def fetch(s: Slice) -> list[bytes]:
        reader = RangeReader(s)
        return [reader.read(i) for i in range(len(s.ranges))]

    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="dataplug-prefetch") as pool:
        pending: dict[int, Future[list[bytes]]] = {}
        nxt = 0
        for k, s in enumerate(slices):
            # keep the next `ahead` small slices in flight (never more than `ahead` fetches at once)
            nxt = max(nxt, k)
            while nxt < len(slices) and nxt < k + ahead:
                if small(slices[nxt]) and nxt not in pending:
                    pending[nxt] = pool.submit(fetch, slices[nxt])
                nxt += 1
            future = pending.pop(k, None)
            yield s, (RangeReader(s, future.result()) if future is not None else s.reader())
        for future in pending.values():
            future.cancel()


class RangeTaker:
    """A slice's ranges as its decoder takes parts of them (COG tiles, imzML arrays): streamed, pieces dropped
    once passed.

    ``stream`` (decided at planning) promises that, range by range, parts are asked for in increasing offsets;
    then a range is read once, front to back, holding about one piece, and a part inside one piece is a
    zero-copy view of it. Otherwise (parts sharing bytes, odd layouts) each range is read whole. ``what``
    names a part in errors.
    """

    def __init__(self, data: RangeReader, stream: bool, what: str = "a part") -> None:
        self.data, self.stream, self.what = data, stream, what
        self.iters: dict[int, Iterator[bytes | memoryview]] = {}
        self.held: dict[int, deque[tuple[int, memoryview]]] = {}  # (offset in the range, piece)
        self.ends: dict[int, int] = {}
        self.whole: dict[int, bytes] = {}

    def take(self, r: int, rel: int, n: int) -> bytes | memoryview:
        if not self.stream:
            if r not in self.whole:
                self.whole[r] = self.data.read(r)
            return memoryview(self.whole[r])[rel: rel + n]
        if r not in self.iters:
            self.iters[r], self.held[r], self.ends[r] = iter(self.data.pieces(r)), deque(), 0
        held = self.held[r]
        if held and rel < held[0][0]:
            raise FormatError(self.data.slice.ranges[r].uri, self.data.slice.ranges[r].start + rel,
                              f"internal: {self.what} was asked for after the bytes past it were dropped")
        while held and held[0][0] + len(held[0][1]) <= rel:
            held.popleft()
        while self.ends[r] < rel + n:
            piece = next(self.iters[r], None)
            if piece is None:
                raise FormatError(self.data.slice.ranges[r].uri, self.data.slice.ranges[r].start + rel,
                                  f"the range ended before the {n} bytes of {self.what}")
            held.append((self.ends[r], memoryview(piece)))
            self.ends[r] += len(piece)
        at, first = held[0]
        if rel >= at and rel + n <= at + len(first):
            return first[rel - at: rel - at + n]
        return b"".join(piece[max(rel, at) - at: min(rel + n, at + len(piece)) - at] for at, piece in held
                        if max(rel, at) < min(rel + n, at + len(piece)))

    def close(self) -> None:
        for it in self.iters.values():
            close = getattr(it, "close", None)
            if close is not None:
                close()
        self.iters.clear()
        self.held.clear()
        self.whole.clear()
