"""CSV: one row per record, the rows ``spark.read.csv(..., multiLine=True)`` returns with the same options.

Records and fields follow Spark's (univocity's) rules exactly, as written in ``_csvscan.py``: quotes
open a field only at its start, escapes count only inside quotes, a quote followed by anything but a
delimiter or a line break turns the field into an unquoted one, comment and empty lines are skipped, and
the line separator is the object's first line break. Buffers the fast scan finds plain go through Arrow's
CSV parser; the others, and rows with too few or too many fields, through the exact tokenizer, padded with
nulls or truncated as Spark's PERMISSIVE mode does.

``inferSchema`` types (int, bigint, double, boolean, else string) are computed once, when the index is
built, over every record -- as Spark does with ``inferSchema`` -- and stored in the index, so planning
never scans data.

Known differences to Spark: ``encoding`` must be UTF-8; dates and timestamps are inferred as strings; an
object that ends inside a quoted field is an error naming the opening quote (Spark reads the rest of the
object as one field); objects whose first line break is a lone CR are refused. As with Spark, the default
``escape`` (backslash) reads RFC 4180 doubled quotes (``"a""b"``) as the raw text ``"a""b"`` -- use
``escape='"'`` for such files.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_size, by_strategy
from ..errors import FormatError, IndexMissingError, OptionError
from ..options import Opt
from ._csvscan import (
    IN,
    OUT,
    Dialect,
    Scan,
    detect_crlf,
    line_start_after,
    outside,
    outside_separators,
    record_spans,
    scan,
    tokenize,
)
from ._lines import CR, LINE_OPTIONS, NL, LineFormat, LineScan

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
        try:
            self.dialect = Dialect.of(self.sep, self.quote, self.escape, self.params.get("comment"),
                                      bool(self.params.get("crlf")))
        except ValueError as e:
            raise OptionError(str(e)) from e

    # -- records: the exact machine of _csvscan ---------------------------------------------------------
    def first_record(self) -> int:
        return 1 if self.params.get("header") else 0

    def index_params(self) -> dict[str, Any]:
        # everything that moves a record boundary; header and types do not
        return {"sep": self.sep, "quote": self.quote, "escape": self.escape, "comment": self.params.get("comment")}

    def sniff(self, uri: str, head: bytes, complete: bool) -> dict[str, Any] | None:
        crlf = detect_crlf(uri, head)
        if crlf is None:
            return {"crlf": False} if complete else None
        return {"crlf": crlf}

    def scan(self, buf: np.ndarray, state: int, eof: bool, newlines: np.ndarray | None = None,
             check: bool = True) -> LineScan:
        sc = scan(buf, self.dialect, state)
        return LineScan(sc.ends, sc.state, sc.pending, sc.open_at, detail=sc)

    def scan_states(self, buf: np.ndarray, eof: bool, newlines: np.ndarray) -> list[LineScan]:
        """From outside quotes, then from inside: the second reuses the first once the two agree.

        A chunk read as if it started inside quotes usually turns "outside" within a line or two (the first
        quote closes the imagined field); from the first line start that both readings see outside quotes,
        they are the same. So the inside reading is walked over a growing prefix only, never the whole
        chunk -- which would cost a Python step per quote in quote-heavy files, where the fast check of the
        wrong state always fails.
        """
        d = self.dialect
        out = scan(buf, d, OUT)
        out_seps = None
        n = len(buf)
        p = 4096
        while True:
            p = min(p, n)
            pre = scan(buf[:p], d, IN)
            if p >= n:
                inside = LineScan(pre.ends, pre.state, pre.pending, pre.open_at)
                break
            if out_seps is None:
                out_seps = outside_separators(buf, d, out)
            common = np.intersect1d(outside_separators(buf[:p], d, pre), out_seps[out_seps < p])
            if len(common):
                s = int(common[0])
                ends = np.concatenate((pre.ends[pre.ends <= s], out.ends[out.ends > s]))
                inside = LineScan(ends, out.state, out.pending, out.open_at)
                break
            p *= 4
        return [LineScan(out.ends, out.state, out.pending, out.open_at), inside]

    def line_start_after(self, buf: np.ndarray, p: int) -> int | None:
        return line_start_after(buf, p, self.dialect)

    def check_end(self, uri: str, size: int, sc: LineScan) -> None:
        if sc.state == IN:
            where = sc.open_at if sc.open_at >= 0 else None
            raise FormatError(uri, where, f"a quoted field opened here is never closed (unbalanced {self.quote}). "
                              "If this character is not a quote in this file, read it with option quote='' (or "
                              "another quote character); Spark would read the rest of the object as one field")

    # -- schema ---------------------------------------------------------------------------------------
    def first_fields(self, uri: str, head: bytes, complete: bool) -> list[str | None] | None:
        """The fields of the first record in ``head``; None if it does not end there."""
        fmt = self._with(self.sniff(uri, head, complete) or {})
        buf = np.frombuffer(head, np.uint8)
        sc = scan(buf, fmt.dialect, OUT)
        if not len(sc.ends) and not (complete and sc.pending and sc.state == OUT):
            return [] if complete else None
        end = int(sc.ends[0]) + 1 if len(sc.ends) else len(buf)
        first = buf[:end]
        rows = tokenize(first, fmt.dialect, scan(first, fmt.dialect, OUT))
        return [_text(uri, 0, v) for v in rows[0]] if rows else []

    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        out = super().resolve(index, head)
        if index is not None:
            fields = index.attrs.get("first_fields")
            if fields is None:
                raise IndexMissingError(f"{index.source.uri}: its csv index lacks the first record; rebuild it")
        else:
            fields = self.first_fields("", head or b"", True) or []
        if self.params.get("header"):
            names = _spark_header_names([f or "" for f in fields])
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
        out["columns"] = [[n, t] for n, t in zip(names, types, strict=True)]
        return out

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        cols = self.params.get("columns") or []
        return pa.schema([pa.field(n, _arrow_type(t)) for n, t in cols])

    # -- type inference (and the first record) at index build -----------------------------------------
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

    def stats_map(self, slice_: Slice) -> dict[str, Any]:
        """Narrowest type per column over the slice's records (positions; no names needed)."""
        fmt = CSV({**slice_.params, "header": False, "columns": None})
        types: list[str | None] = []
        first: list[str | None] | None = None
        for batch in fmt.decode(slice_, slice_.reader()):
            if slice_.context.get("first") == 0 and first is None and batch.num_rows:
                first = [c[0].as_py() for c in batch.columns]
            for i, col in enumerate(batch.columns):
                t = _infer(col)
                if i < len(types):
                    types[i] = _merge(types[i], t)
                else:
                    types.append(t)
        return {"first": slice_.context.get("first") == 0, "types": types, "first_fields": first}

    def stats_reduce(self, index: Index, rows: list[dict[str, Any]]) -> None:
        first: list[str | None] = []
        rest: list[str | None] = []
        index.attrs["first_fields"] = []
        for row in rows:
            target = first if row["first"] else rest
            if row["first"]:
                index.attrs["first_fields"] = row.get("first_fields") or []
            for i, t in enumerate(row["types"]):
                if i < len(target):
                    target[i] = _merge(target[i], t)
                else:
                    target.append(t)
        index.attrs["types"] = {"first": first, "rest": rest}

    # -- decoding -----------------------------------------------------------------------------------
    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       scanned: tuple[LineScan, int] | None = None) -> pa.RecordBatch:
        import pyarrow as pa

        d = self.dialect
        sc = _sub_scan(scanned, len(buf)) if scanned and scanned[0].detail is not None else scan(buf, d, OUT)
        cols = self.params.get("columns")
        if cols is None:  # type inference: as many string columns as the first record has fields
            spans = record_spans(buf, d, sc)
            width = len(tokenize(buf[: int(spans[1][0])], d, scan(buf[: int(spans[1][0])], d, OUT))[0]) \
                if len(spans[0]) else 0
            cols = [[f"_c{i}", "string"] for i in range(width)]
        names = [n for n, _ in cols]
        strings = None
        if sc.clean and _plain_line_breaks(buf, d, sc):
            strings = self._parse_arrow(slice_, buf, sc, offset, len(names))
        if strings is None:
            strings = self._parse_exact(slice_, buf, sc, offset, len(names))
        if len(strings) and len(strings[0]) != count:
            raise FormatError(slice_.uri, offset, f"parsed {len(strings[0])} CSV records where {count} were expected")
        arrays = [_cast(s, t, slice_.uri, offset, n) for s, (n, t) in zip(strings, cols, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([pa.field(n, _arrow_type(t)) for n, t in cols]))

    def _parse_arrow(self, slice_: Slice, buf: np.ndarray, sc: Any, offset: int, ncols: int) -> list[pa.Array] | None:
        """Arrow's CSV parser, on a buffer the fast scan found plain; None: rows of another width."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv

        d = self.dialect
        data = _plain_bytes(buf, d, sc)
        if not data.strip(b"\r\n"):
            return [pa.array([], pa.string()) for _ in range(ncols)]
        names = [f"f{i}" for i in range(ncols)]
        parse = pcsv.ParseOptions(delimiter=self.sep, quote_char=self.quote or False, double_quote=True,
                                  escape_char=False, newlines_in_values=True, ignore_empty_lines=True)
        read = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=max(1 << 20, len(data) + 1))
        convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                      quoted_strings_can_be_null=True, null_values=[""])
        try:
            table = pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as e:
            if "columns" in str(e) or "Expected" in str(e):
                return None
            raise FormatError(slice_.uri, offset, f"CSV parse error: {e}") from e
        strings = [table.column(i).combine_chunks() for i in range(ncols)]
        if d.crlf and len(sc.opens) and (buf == CR).any():
            strings = [pc.replace_substring(s, "\r\n", "\n") for s in strings]  # Spark's reading of CRLF in quotes
        return strings

    def _parse_exact(self, slice_: Slice, buf: np.ndarray, sc: Any, offset: int, ncols: int) -> list[pa.Array]:
        """The exact path: Spark's rules field by field, rows padded or truncated like PERMISSIVE mode."""
        import pyarrow as pa

        rows = tokenize(buf, self.dialect, sc)
        columns: list[list[str | None]] = [[] for _ in range(ncols)]
        for r in rows:
            for i in range(ncols):
                columns[i].append(_text(slice_.uri, offset, r[i]) if i < len(r) else None)
        return [pa.array(c, pa.string()) for c in columns]


def _sub_scan(scanned: tuple[LineScan, int], n: int) -> Scan:
    """The scan of ``n`` bytes at ``at`` of a scanned buffer (they start at a record start, outside quotes)."""
    whole, at = scanned
    sc: Scan = whole.detail
    keep = (sc.opens >= at) & (sc.opens < at + n)
    comments = [(a - at, b - at) for a, b in sc.comments if at <= a < at + n]
    ends = sc.ends[(sc.ends >= at) & (sc.ends < at + n)] - at
    pending = bool(sc.pending and sc.state == OUT and at + n >= sc.size)
    return Scan(ends, OUT, pending, -1, sc.clean, sc.opens[keep] - at, sc.closes[keep] - at,
                sc.closes_first[keep] - at, comments)


def _text(uri: str, offset: int, value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(uri, offset, f"CSV is not valid UTF-8 ({e})") from e


def _outside(pos: np.ndarray, sc: Any) -> np.ndarray:
    return outside(pos, sc.opens, sc.closes)


def _inside(pos: np.ndarray, sc: Any) -> np.ndarray:
    """Those of ``pos`` strictly inside a quoted region."""
    if not len(pos) or not len(sc.opens):
        return pos[:0]
    k = np.searchsorted(sc.opens, pos) - 1
    kc = np.maximum(k, 0)
    return pos[(k >= 0) & (pos > sc.opens[kc]) & (pos < sc.closes[kc])]


def _plain_line_breaks(buf: np.ndarray, d: Dialect, sc: Any) -> bool:
    """Arrow ends lines at any CR or LF; true if, outside quotes, those are exactly the separators."""
    cr = _outside(np.flatnonzero(buf == CR), sc)
    if not d.crlf:
        return not len(cr)
    nl = _outside(np.flatnonzero(buf == NL), sc)
    return len(cr) == len(nl) and bool(np.array_equal(cr + 1, nl))


def _plain_bytes(buf: np.ndarray, d: Dialect, sc: Any) -> bytes:
    """The buffer as a standard parser must see it: comment lines dropped, escapes in quotes rewritten.

    Inside quotes ``\\"`` becomes ``""`` (the parser runs with doubled quotes) and ``\\\\`` becomes one
    backslash; an escape before anything else stays, as Spark keeps it.
    """
    keep = None
    if sc.comments:
        keep = np.ones(len(buf), dtype=bool)
        for a, b in sc.comments:
            keep[a:b] = False
    if d.escape is not None and d.quote is not None:
        e = np.flatnonzero(buf == d.escape)
        e = _inside(e, sc)
        if len(e):
            buf = buf.copy()
            keep = np.ones(len(buf), dtype=bool) if keep is None else keep
            starts = np.ones(len(e), dtype=bool)
            starts[1:] = e[1:] != e[:-1] + 1
            run_id = np.cumsum(starts) - 1
            first = e[starts]
            rank = e - first[run_id]  # position within its run
            run_len = np.bincount(run_id)
            length = run_len[run_id]
            nxt = buf[np.minimum(first[run_id] + length, len(buf) - 1)]
            pair_first = (rank % 2 == 0) & (rank + 1 < length)  # the first of each escaped escape
            keep[e[pair_first]] = False
            lone_before_quote = (rank == length - 1) & (length % 2 == 1) & (nxt == d.quote)
            buf[e[lone_before_quote]] = d.quote
    return (buf if keep is None else buf[keep]).tobytes()


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


# The seed Dataplug's names (formats.generic.csv re-exports them); slices end at whole records, so its
# ``padding`` (bytes read past a chunk to find the record's end) has nothing to do.
partition_num_chunks = by_strategy("bytes", "num_chunks", accepts={"padding": 256})
partition_chunk_size = by_size("bytes", "chunk_size", accepts={"padding": 256})
