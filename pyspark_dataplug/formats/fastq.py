"""FASTQ: one row per read, from 4-line records (header, sequence, '+' line, quality).

Columns: ``id`` (header up to the first whitespace, without '@'), ``description`` (rest of the header,
null if none), ``sequence``, ``quality``. Record boundaries come from line parity counted from the start
of the object -- never from a line starting with '@', which is also a legal quality line. Multi-line
(wrapped) FASTQ is not supported: such files fail with an error naming the offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_strategy
from ..errors import FormatError
from ._lines import CR, NL, LineFormat, terminated

if TYPE_CHECKING:
    import pyarrow as pa

    from ..slices import Slice



class FASTQ(LineFormat):
    name: ClassVar[str] = "fastq"
    n_states: ClassVar[int] = 4  # lines already seen of the current record

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(n, pa.string()) for n in ("id", "description", "sequence", "quality")])

    def record_ends(self, buf: np.ndarray, state: int, newlines: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        nl = np.flatnonzero(buf == NL) if newlines is None else newlines
        return nl[(3 - state) % 4:: 4], (state + len(nl)) % 4

    def check_end(self, uri: str, size: int, state: int, last_is_end: bool) -> None:
        lines_in_last = (state + (0 if last_is_end or size == 0 else 1)) % 4
        if lines_in_last:
            raise FormatError(uri, size, f"truncated FASTQ record: the object ends {lines_in_last} line(s) into a "
                              "4-line record")

    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       newlines: np.ndarray | None = None) -> pa.RecordBatch:
        import pyarrow as pa
        import pyarrow.compute as pc

        buf, nl = terminated(buf, newlines)
        if len(nl) != 4 * count:
            raise FormatError(slice_.uri, offset, f"expected {4 * count} lines for {count} reads, found {len(nl)}")
        # One zero-copy array of lines *with* their line breaks, then one gather per column: every byte is
        # copied once, with no per-read Python work; the break is cut off by offset arithmetic.
        starts = np.empty(len(nl) + 1, dtype=np.int32)
        starts[0] = 0
        starts[1:] = nl + 1
        lines = pa.BinaryArray.from_buffers(pa.binary(), len(nl), [None, pa.py_buffer(starts), pa.py_buffer(buf)])
        which = np.arange(len(nl)) & 3  # line k of each record; filter() with a mask is ~100x faster than
        # take() with numpy indices, which pyarrow converts element by element
        crlf = bool(len(nl) and (buf[np.maximum(nl - 1, 0)] == CR).any())  # only the bytes before breaks
        try:
            columns = []
            for k in range(4):
                col = lines.filter(pa.array(which == k))
                if crlf:  # rare: trim as text; the usual LF case cuts one byte without looking
                    columns.append(pc.utf8_rtrim(col.cast(pa.string()), "\r\n"))
                else:
                    columns.append(pc.binary_slice(col, 0, -1).cast(pa.string()))  # the cast validates UTF-8
        except pa.ArrowInvalid as e:
            raise FormatError(slice_.uri, offset, f"FASTQ is not valid UTF-8/ASCII ({e})") from e
        header, seq, plus, qual = columns
        self._validate(slice_, buf, offset, header, seq, plus, qual)
        ident, desc = _split_header(header)
        return pa.RecordBatch.from_arrays([ident, desc, seq, qual], schema=self.arrow_schema())

    def _validate(self, slice_: Slice, buf: np.ndarray, offset: int, header: Any, seq: Any, plus: Any,
                  qual: Any) -> None:
        import pyarrow.compute as pc

        checks = (
            (pc.starts_with(header, "@"), 0, "header line does not start with '@'"),
            (pc.starts_with(plus, "+"), 2, "third line of the record does not start with '+'"),
            (pc.equal(pc.binary_length(seq), pc.binary_length(qual)), 3,
             "sequence and quality lengths differ"),
        )
        for ok, line_in_record, what in checks:
            if not pc.all(ok).as_py():
                bad = int(np.flatnonzero(~ok.to_numpy(zero_copy_only=False))[0])
                raise FormatError(slice_.uri, offset + _line_start(buf, 4 * bad + line_in_record),
                                  f"malformed FASTQ record: {what}")


def _split_header(header: pa.StringArray) -> tuple[pa.Array, pa.Array]:
    """``@id description`` -> (id, description or null), as ``title.split(None, 1)`` does.

    One whitespace split (max one split) into a list array whose flat values alternate id/description;
    both columns are then gathered by index. 5x cheaper than a regular expression per header.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = pc.utf8_split_whitespace(pc.utf8_slice_codeunits(header, 1), max_splits=1)
    flat = parts.flatten()
    first = parts.offsets.to_numpy()[:-1]
    has_desc = np.diff(parts.offsets.to_numpy()) == 2
    ident = flat.take(pa.array(first.astype(np.int32)))
    desc = flat.take(pa.array((first + 1).astype(np.int32), mask=~has_desc))
    desc = pc.utf8_rtrim_whitespace(desc)
    desc = pc.if_else(pc.equal(pc.binary_length(desc), 0), pa.scalar(None, pa.string()), desc)
    return ident, desc


def _line_start(buf: np.ndarray, line: int) -> int:
    if line == 0:
        return 0
    return int(np.flatnonzero(buf == NL)[line - 1]) + 1


#: Dataplug's strategy: ``co.partition(partition_reads_batches, num_batches=200)``; batches differ by at
#: most one read, and asking for more batches than reads gives one read per batch (never empty ones).
partition_reads_batches = by_strategy("records")
partition_bytes_batches = by_strategy("bytes")


class FASTQGZip(FASTQ):
    """FASTQ in gzip (plain, multi-member or BGZF): the seed Dataplug's name for the same format.

    Compression is detected from the object's magic bytes, so :class:`FASTQ` reads ``.fastq.gz`` too;
    this class exists so Dataplug code runs unchanged.
    """
