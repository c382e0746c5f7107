"""Data slices: small, immutable, picklable recipes for reading part of a dataset.

A slice holds what to fetch (byte ranges) and the little context needed to decode those bytes; it holds
no client, no credentials and no data. Evaluating it (:meth:`Slice.batches`) is the only step that touches
storage, so the same slices serve Spark tasks, Dask, Ray or a ``multiprocessing`` pool.

Offsets everywhere in this package are ``start`` inclusive, ``end`` exclusive.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .storage import StorageOptions, get_storage

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of one object (``start`` inclusive, ``end`` exclusive)."""

    uri: str
    start: int
    end: int

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

    def fetch(self) -> list[bytes]:
        """The slice's byte ranges, one ranged read each, checked against the indexed version."""
        # only the data object is checked against its ETag; index blobs are immutable by name
        return [get_storage(r.uri, self.storage).read(r.uri, r.start, r.end,
                                                      etag=(self.etag or None) if r.uri == self.uri else None)
                for r in self.ranges]

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Fetch and decode: Arrow record batches in the format's schema.

        When the index says how many rows the slice holds, any other count is an error -- for every
        format, whatever its decoder does -- so a changed object or a decoder bug never yields a silently
        short (or long) result.
        """
        from .errors import FormatError
        from .formats import get_format

        fmt = get_format(self.format, self.params)
        produced = 0
        for batch in fmt.decode(self, self.fetch()):
            produced += batch.num_rows
            if self.rows is not None and produced > self.rows:
                break
            yield batch
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
        return pa.Table.from_batches(list(self.batches()), schema=fmt.arrow_schema())
