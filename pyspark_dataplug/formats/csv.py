"""CSV: one row per record, the rows ``spark.read.csv(..., multiLine=True)`` returns with the same options.

Record boundaries are newlines outside quoted fields (two-state machine: outside/inside quotes; an
escaped quote does not toggle), so quoted fields may hold the separator, quotes and newlines and still
split exactly. Parsing uses Arrow's CSV reader; rows with too few or too many fields fall back to
Python's ``csv`` module and are padded with nulls or truncated, as Spark's PERMISSIVE mode does.

``inferSchema`` types (int, bigint, double, boolean, else string) are computed once, when the index is
built, over every record -- as Spark does with ``inferSchema`` -- and stored in the index, so planning
never scans data.

Known differences to Spark: ``encoding`` must be UTF-8; dates and timestamps are inferred as strings; with
the default ``escape`` (backslash), Spark returns doubled quotes (``"a""b"``) raw -- use
``escape='"'`` for RFC 4180 files, as with Spark.
"""

from __future__ import annotations

import csv as pycsv
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_strategy
from ..errors import FormatError, OptionError
from ..options import Opt
from ._lines import LINE_OPTIONS, NL, LineFormat

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import Slice

#: Spark SQL type name -> Arrow type, for the types inference produces
_TYPES = ("int", "bigint", "double", "boolean", "string")

def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    return {"int": pa.int32(), "bigint": pa.int64(), "double": pa.float64(), "boolean": pa.bool_(),
            "string": pa.string()}[name]


class CSV(LineFormat):
    name: ClassVar[str] = "csv"
    n_states: ClassVar[int] = 2  # 0: outside quotes, 1: inside a quoted field
    has_stats: ClassVar[bool] = True
    options: ClassVar[tuple[Opt, ...]] = (
        Opt("header", "bool", False, doc="first record of each object holds the column names"),
        Opt("sep", "char", ",", doc="field separator (alias: delimiter)"),
        Opt("delimiter", "char", None, doc="alias of sep"),
        Opt("quote", "char", '"', doc="quote character; empty string for none"),
        Opt("escape", "char", "\\", doc="escapes a quote inside a quoted field"),
        Opt("comment", "char", None, doc="records starting with this character are skipped"),
        Opt("inferSchema", "bool", False, doc="column types from the data (stored in the index)"),
        Opt("encoding", "str", "utf-8", doc="only UTF-8 is supported"),
        Opt("multiLine", "bool", True, doc="accepted for compatibility: quoted newlines are always parsed"),
        *LINE_OPTIONS,
    )

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        enc = str(self.params.get("encoding") or "utf-8").lower().replace("_", "-")
        if enc not in ("utf-8", "utf8"):
            raise OptionError(f"encoding {self.params['encoding']!r} is not supported; valid: utf-8")
        self.sep = self.params.get("delimiter") or self.params.get("sep") or ","
        self.quote = self.params.get("quote", '"')
        self.escape = self.params.get("escape", "\\")

    # -- records --------------------------------------------------------------------------------------
    def first_record(self) -> int:
        return 1 if self.params.get("header") else 0

    def index_params(self) -> dict[str, Any]:
        return {"quote": self.quote, "escape": self.escape}

    def record_ends(self, buf: np.ndarray, state: int, newlines: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        nl = np.flatnonzero(buf == NL) if newlines is None else newlines
        if not self.quote:
            return nl, 0
        quotes = np.flatnonzero(buf == ord(self.quote))
        if self.escape and self.escape != self.quote and len(quotes):
            # an escaped quote (\") does not open or close a field
            prev = quotes - 1
            escaped = (prev >= 0) & (buf[np.maximum(prev, 0)] == ord(self.escape))
            quotes = quotes[~escaped]
        before = np.searchsorted(quotes, nl)
        return nl[((before + state) & 1) == 0], (state + len(quotes)) & 1

    def check_end(self, uri: str, size: int, state: int, last_is_end: bool) -> None:
        if state:
            raise FormatError(uri, size, "the object ends inside a quoted field (unbalanced quote)")

    def index_attrs(self, head: bytes) -> dict:
        if not head:
            return {"first_record": None}
        ends, _ = self.record_ends(np.frombuffer(head, np.uint8), 0)
        first = head[: int(ends[0]) + 1] if len(ends) else head
        return {"first_record": first.decode("utf-8", "replace")}

    # -- schema ---------------------------------------------------------------------------------------
    def _split_record(self, text: str) -> list[str]:
        rows = list(pycsv.reader(io.StringIO(text), **self._dialect()))
        return rows[0] if rows else []

    def _dialect(self) -> dict[str, Any]:
        if not self.quote:
            return {"delimiter": self.sep, "quoting": pycsv.QUOTE_NONE, "escapechar": None}
        double = self.escape == self.quote
        return {"delimiter": self.sep, "quotechar": self.quote, "doublequote": double,
                "escapechar": None if double else self.escape, "strict": False}

    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        if index is not None:
            first = index.attrs.get("first_record")
        else:
            ends, _ = self.record_ends(np.frombuffer(head or b"", np.uint8), 0)
            first = (head[: int(ends[0]) + 1] if len(ends) else (head or b"")).decode("utf-8", "replace")
        fields = self._split_record(first.rstrip("\r\n")) if first else []
        if self.params.get("header"):
            names = _spark_header_names(fields)
        else:
            names = [f"_c{i}" for i in range(len(fields))]
        types = ["string"] * len(names)
        if self.params.get("inferSchema"):
            if index is None:
                raise OptionError("inferSchema needs an index (types are computed when it is built); build "
                                  "one, or read without inferSchema")
            stats = index.attrs.get("types") or {}
            parts = [stats.get("rest") or []]
            if not self.params.get("header"):
                parts.append(stats.get("first") or [])
            types = [_merge_all([p[i] if i < len(p) else None for p in parts]) for i in range(len(names))]
        return {"columns": [[n, t] for n, t in zip(names, types, strict=True)]}

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        cols = self.params.get("columns") or []
        return pa.schema([pa.field(n, _arrow_type(t)) for n, t in cols])

    # -- type inference at index build ------------------------------------------------------------------
    def stats_slices(self, index: Index, storage_options: Any) -> list[Slice]:
        """Slices to infer column types over: the first record alone (it may be a header), then the rest."""
        total = index.records
        if total == 0:
            return []
        out = [self.record_slice(index, 0, 1, storage_options)]
        size = self.weight(index)
        n = max(1, size // (64 << 20))
        cuts = [1 + (total - 1) * i // n for i in range(n + 1)]
        out += [self.record_slice(index, a, b, storage_options) for a, b in zip(cuts, cuts[1:], strict=False)
                if b > a]
        return out

    def stats_map(self, slice_: Slice, buffers: list[bytes]) -> dict[str, Any]:
        """Narrowest type per column over the slice's records (positions; no names needed)."""
        fmt = CSV({**self.params, "header": False, "columns": None})
        types: list[str | None] = []
        for batch in fmt.decode(slice_, buffers):
            for i, col in enumerate(batch.columns):
                t = _infer(col)
                if i < len(types):
                    types[i] = _merge(types[i], t)
                else:
                    types.append(t)
        return {"first": slice_.context.get("first") == 0, "types": types}

    def stats_reduce(self, index: Index, rows: list[dict[str, Any]]) -> None:
        first: list[str | None] = []
        rest: list[str | None] = []
        for row in rows:
            target = first if row["first"] else rest
            for i, t in enumerate(row["types"]):
                if i < len(target):
                    target[i] = _merge(target[i], t)
                else:
                    target.append(t)
        index.attrs["types"] = {"first": first, "rest": rest}

    # -- decoding -----------------------------------------------------------------------------------
    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       newlines: np.ndarray | None = None) -> pa.RecordBatch:
        import pyarrow as pa

        cols = self.params.get("columns")
        if self.params.get("comment"):
            buf = self._drop_comments(buf)
        data = buf.tobytes()
        if cols is None:  # type inference: as many string columns as the first record has fields
            ends, _ = self.record_ends(buf, 0)
            first = data[: int(ends[0])] if len(ends) else data
            cols = [[f"_c{i}", "string"] for i in range(len(self._split_record(first.decode("utf-8", "replace"))))]
        names = [n for n, _ in cols]
        try:
            table = self._parse_arrow(data, len(names))
            strings = [table.column(i).combine_chunks() for i in range(len(names))] if len(table.columns) \
                else [pa.array([], pa.string())] * len(names)
        except pa.ArrowInvalid as e:
            if "columns" not in str(e) and "Expected" not in str(e):
                raise FormatError(slice_.uri, offset, f"CSV parse error: {e}") from e
            strings = self._parse_ragged(slice_, data, offset, len(names))
        arrays = [_cast(s, t, slice_.uri, offset, n) for s, (n, t) in zip(strings, cols, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([pa.field(n, _arrow_type(t)) for n, t in cols]))

    def _drop_comments(self, buf: np.ndarray) -> np.ndarray:
        ends, _ = self.record_ends(buf, 0)
        stops = np.append(ends + 1, len(buf)) if len(buf) and buf[-1] != NL else ends + 1
        starts = np.concatenate(([0], stops[:-1])).astype(np.int64)
        is_comment = buf[np.minimum(starts, len(buf) - 1)] == ord(self.params["comment"])
        if not is_comment.any():
            return buf
        keep = np.repeat(~is_comment, stops - starts)
        return buf[keep]

    def _parse_arrow(self, data: bytes, ncols: int) -> pa.Table:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        if not data.strip():
            return pa.table({})
        names = [f"f{i}" for i in range(ncols)]
        double = self.quote and self.escape == self.quote
        parse = pcsv.ParseOptions(
            delimiter=self.sep,
            quote_char=self.quote or False,
            double_quote=bool(double),
            escape_char=(self.escape if self.escape and not double else False),
            newlines_in_values=True,
            ignore_empty_lines=True,
        )
        read = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=max(1 << 20, len(data) + 1))
        convert = pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        )
        return pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)

    def _parse_ragged(self, slice_: Slice, data: bytes, offset: int, ncols: int | None) -> list[pa.Array]:
        """Slow path for rows of the wrong width: Python's csv module, then pad or truncate like Spark."""
        import pyarrow as pa

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(slice_.uri, offset + e.start, "CSV is not valid UTF-8") from e
        rows = [r for r in pycsv.reader(io.StringIO(text, newline=""), **self._dialect()) if r]
        width = ncols if ncols is not None else max((len(r) for r in rows), default=0)
        columns: list[list[str | None]] = [[] for _ in range(width)]
        for r in rows:
            for i in range(width):
                v = r[i] if i < len(r) else None
                columns[i].append(v if v != "" else None)
        return [pa.array(c, pa.string()) for c in columns]


def _spark_header_names(fields: list[str]) -> list[str]:
    """Spark's rules: empty names become ``_c<i>``; duplicates (case-insensitive) get their index appended."""
    names = [f if f else f"_c{i}" for i, f in enumerate(fields)]
    lowered = [n.lower() for n in names]
    dup = {n for n in lowered if lowered.count(n) > 1}
    return [f"{n}{i}" if n.lower() in dup else n for i, n in enumerate(names)]


def _infer(col: pa.Array) -> str | None:
    """The narrowest of int < bigint < double (or boolean) that every non-null value parses as."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = col.drop_null()
    if len(values) == 0:
        return None
    for name, target in (("int", pa.int32()), ("bigint", pa.int64())):
        try:
            pc.cast(values, target)
            return name
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    try:
        pc.cast(pc.utf8_trim_whitespace(values), pa.float64())
        return "double"
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    low = pc.utf8_lower(values)
    if pc.all(pc.is_in(low, pa.array(["true", "false"]))).as_py():
        return "boolean"
    return "string"


def _merge(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    numeric = ("int", "bigint", "double")
    if a in numeric and b in numeric:
        return numeric[max(numeric.index(a), numeric.index(b))]
    return "string"


def _merge_all(types: list[str | None]) -> str:
    out: str | None = None
    for t in types:
        out = _merge(out, t)
    return out or "string"


def _cast(values: pa.Array, type_name: str, uri: str, offset: int, column: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    if type_name == "string":
        return values
    try:
        if type_name == "boolean":
            low = pc.utf8_lower(values)
            return pc.if_else(pc.equal(low, "true"), True, pc.if_else(pc.equal(low, "false"), False, None))
        if type_name == "double":
            values = pc.utf8_trim_whitespace(values)
        return pc.cast(values, _arrow_type(type_name))
    except pa.ArrowInvalid as e:
        raise FormatError(uri, offset, f"column {column!r}: a value does not parse as {type_name} ({e}); the "
                          "object may have changed since its types were inferred") from e


partition_bytes_batches = by_strategy("bytes")
partition_records_batches = by_strategy("records")
