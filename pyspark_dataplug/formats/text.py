"""Plain text: one row per line, ``value string``, the rows ``spark.read.text`` returns.

Lines end at ``\\n`` or ``\\r\\n`` (the line break is not part of the value); a last line without a line
break is a row; an empty object has no rows. A lone ``\\r`` is not a line break here (Spark's reader
treats it as one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..cloudobject import by_size, by_strategy
from ..errors import FormatError
from ._lines import LineFormat, LineScan, lines_array

if TYPE_CHECKING:
    import pyarrow as pa

    from ..slices import Slice


class Text(LineFormat):
    name: ClassVar[str] = "text"

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field("value", pa.string())])

    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       scanned: tuple[LineScan, int] | None = None) -> pa.RecordBatch:
        import pyarrow as pa

        try:
            lines = lines_array(buf)
        except pa.ArrowInvalid as e:
            raise FormatError(slice_.uri, offset, f"text is not valid UTF-8 in [{offset}, {offset + len(buf)}) "
                              f"({e})") from e
        return pa.RecordBatch.from_arrays([lines], schema=self.arrow_schema())


partition_lines_batches = by_strategy("bytes")
partition_records_batches = by_strategy("records")


# The seed Dataplug's names (formats.generic.text and formats.compressed.gzipped re-export them). gzip is
# detected from the object's bytes, so one class reads plain and gzip text; slices end at whole lines, so
# Dataplug's word ``padding`` has nothing to do.
UTF8Text = GZipText = Text
whole_words_strategy = by_strategy("bytes", "num_chunks", accepts={"padding": 32})
partition_num_chunks = by_strategy("records", "n_chunks")
partition_chunk_lines = by_size("records", "lines_per_chunk", remainder=True)
