"""FASTA: one row per record, or per chunk of ``sequenceChunkSize`` bases of a long record.

Columns: ``id`` (the title up to the first whitespace), ``description`` (the rest of the title, null if
none), ``start`` (0-based offset of the row's first base in its record) and ``sequence`` (the bases, no line
breaks). Records are what Biopython's ``SimpleFastaParser`` returns: trailing whitespace of every line
dropped, spaces and carriage returns removed, blank lines skipped, duplicate names kept as they come (two
records may share an ``id``; ``start`` restarts at 0 for each). Rows are cut at multiples of
``sequenceChunkSize`` bases of their record, whatever the partitioning, so a 250 Mbp chromosome is 250 rows
of 1 Mbp by default, never one 250 MB string; ``0`` keeps whole records.

**The index is the samtools ``.fai`` layout** (name, length, offset of the first base, bases and bytes per
line) plus, per record, where its last base ends and whether its lines are regular (every line but the last
has the same width). For a regular record the byte of base ``i`` is ``offset + i // linebases * linewidth +
i % linebases``, so a slice can start and end *inside* a record and fetch only its bases. Irregular records
(blank lines inside, ragged widths, spaces) are read whole by one slice, never cut. An existing ``.fai``
next to the object (plus its ``.gzi`` for a bgzipped FASTA) serves as the index with no build at all.

Text before the first ``>`` may only be blank lines or ``;``/``#`` comment lines: anything else fails with
its offset (Biopython skips it silently, which would lose a record whose header line was damaged). So does
a lone carriage return (one not before a line feed): Biopython ends a line there, samtools does not.

Every slice checks what it decodes against the index: how many headers it met, a CRC32 of the record
names and one of the bases it read per record, and its row count. An object that changed (or a ``.fai``
that does not describe it) fails with the object and offset, never a short result.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import gz
from ..cloudobject import by_strategy
from ..errors import FormatError, ObjectNotFoundError, StaleIndexError
from ..options import Opt
from ..slices import ByteRange, Slice
from ..storage import get_storage
from ._lines import CR, END_SLACK, LINE_OPTIONS, NL, ChunkedBuild

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import RangeReader
    from ..storage import ObjectInfo, StorageOptions

GT = ord(">")
SP = 32
#: default bases per row: a long chromosome becomes rows of 1 Mbp; shorter records stay whole
DEFAULT_CHUNK = 1_000_000
#: bytes that are whitespace to ``str.rstrip`` (ASCII)
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True


def _lines(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line starts, content ends (position of the line's ``\\n``, or the buffer's end) and rstrip ends.

    The rstrip end is the end of the line without trailing whitespace (``title.rstrip()``). The quick
    path looks at one or two bytes per line; only lines that end in other whitespace take a slow step.
    """
    n = len(buf)
    nl = np.flatnonzero(buf == NL)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.append(nl, n).astype(np.int64)
    if len(starts) and starts[-1] >= n:
        starts, ends = starts[:-1], ends[:-1]
    rend = ends.copy()
    if not len(starts):
        return starts, ends, rend
    last = np.maximum(ends - 1, 0)
    cr = (ends > starts) & (buf[last] == CR)
    rend[cr] -= 1
    last = np.maximum(rend - 1, 0)
    slow = np.flatnonzero((rend > starts) & _WS[buf[last]])
    for i in slow:  # trailing spaces or tabs: rare
        a, e = int(starts[i]), int(rend[i])
        while e > a and _WS[buf[e - 1]]:
            e -= 1
        rend[i] = e
    return starts, ends, rend


#: why a lone CR is refused (FormatError's text)
LONE_CR = ("a lone carriage return (not followed by a line feed): FASTA lines end with \\n or \\r\\n, and readers "
           "disagree on a lone \\r (Biopython ends the line there, samtools does not), so the rows would depend on "
           "the reader")


def _lone_cr(buf: np.ndarray, junk: np.ndarray) -> int:
    """Position in ``buf`` of the first CR followed by something other than a line break, or -1.

    ``junk`` holds (at least) every CR's position, ascending. A CR before ``\\n`` is a CRLF break, CRs before
    one are trailing whitespace, and a CR at the buffer's end is trailing whitespace of the object's last line
    (a buffer ends at a line break, at the object's end, or before a slice's next base): all read the same
    whichever line-break rule applies. A CR before anything else starts a new line for Biopython (whose title
    would end there and whose next line may be a header) and not for samtools: ambiguous input, refused.
    """
    cr = junk[buf[junk] == CR]
    cr = cr[cr + 1 < len(buf)]
    if not len(cr):
        return -1
    nxt = buf[cr + 1]
    lone = cr[(nxt != NL) & (nxt != CR)]
    return int(lone[0]) if len(lone) else -1


class FASTA(ChunkedBuild):
    name: ClassVar[str] = "fasta"
    options: ClassVar[tuple[Opt, ...]] = (
        *LINE_OPTIONS,
        Opt("sequenceChunkSize", "int", DEFAULT_CHUNK, bounds=(0, 1 << 30),
            doc="bases per row: longer records become several rows (0: whole records, whatever their size)"),
    )
    strategies: ClassVar[dict[str, str]] = {
        "bases": "equal bases per slice, cutting inside long records at row boundaries",
        "records": "equal numbers of whole records per slice",
    }

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field("id", pa.string()), pa.field("description", pa.string()),
                          pa.field("start", pa.int64()), pa.field("sequence", pa.string())])

    @property
    def chunk(self) -> int:
        value = self.params.get("sequenceChunkSize")
        return DEFAULT_CHUNK if value is None else int(value)

    # -- index build: what one chunk of lines reports -------------------------------------------------
    def _scan_chunks(self, data: np.ndarray, base: int, nominal: list[int], last: int,
                     size: int, state: int | None = None) -> list[dict[str, Any]]:
        """One report for the whole task: headers, and runs of equal lines between them.

        A run is ``[lines, bases, width, clean, end]``: that many consecutive lines with the same bases and
        byte width (``clean``: nothing but bases and the line break), ``end`` the byte after the last base
        of its last line. A record of any length is a handful of runs; the reduce joins the runs of
        neighbouring chunks (a line never crosses an edge: edges are line starts).
        """
        edge = self._edges(data, base, nominal[:1], last)[0]
        buf = data[edge - base: last - base]
        starts, ends, rend = _lines(buf)
        width = np.where(ends < len(buf), ends + 1, ends) - starts
        header = (ends > starts) & (buf[np.minimum(starts, max(len(buf) - 1, 0))] == GT) if len(buf) else \
            np.zeros(0, dtype=bool)
        junk = np.flatnonzero((buf == SP) | (buf == CR))  # removed from sequence lines (Biopython)
        lone = _lone_cr(buf, junk)
        if lone >= 0:
            raise FormatError(self._uri, edge + lone, LONE_CR)
        removed = np.searchsorted(junk, rend) - np.searchsorted(junk, starts)
        bases = rend - starts - removed
        clean = (removed == 0) & ((rend == ends) | ((rend == ends - 1) & (buf[np.maximum(ends - 1, 0)] == CR)))
        hidx = np.flatnonzero(header)
        seg = np.cumsum(header)  # segment of each line: headers seen at or before it
        body = np.flatnonzero(~header)
        segments: list[list[list[int]]] = [[] for _ in range(len(hidx) + 1)]
        if len(body):
            key_b, key_w, key_c, key_s = bases[body], width[body], clean[body], seg[body]
            change = np.ones(len(body), dtype=bool)
            change[1:] = ((key_s[1:] != key_s[:-1]) | (key_b[1:] != key_b[:-1]) | (key_w[1:] != key_w[:-1])
                          | (key_c[1:] != key_c[:-1]))
            first = np.flatnonzero(change)
            count = np.diff(np.append(first, len(body)))
            last_line = body[first + count - 1]
            for f, c, ll in zip(first.tolist(), count.tolist(), last_line.tolist(), strict=True):
                i = int(body[f])
                segments[int(key_s[f])].append([c, int(bases[i]), int(width[i]), bool(clean[i]),
                                                edge + int(rend[ll])])
        heads = []
        for i in hidx.tolist():
            a, e = int(starts[i]), int(rend[i])
            try:
                title = bytes(buf[a + 1: e]).decode()
            except UnicodeDecodeError as err:
                raise FormatError(self._uri, edge + a, f"a FASTA header is not valid UTF-8 ({err})") from err
            nxt = int(ends[i]) + 1 if ends[i] < len(buf) else int(ends[i])
            heads.append([edge + a, edge + nxt, title])
        # text before this chunk's first header that is neither blank nor a comment (matters only when no
        # header came before: the reduce decides)
        pre = body[seg[body] == 0] if len(body) else body
        pre_bad = -1
        for i in pre.tolist():
            if bases[i] > 0 and buf[starts[i]] not in (ord(";"), ord("#")):
                pre_bad = edge + int(starts[i])
                break
        return [{"chunk": edge, "end": last, "headers": heads, "segments": segments, "pre_bad": pre_bad,
                 "pre_lines": int(len(pre))}]

    _uri = ""

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        self._uri = task["uri"]
        return super().build_map(task, storage)

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        gzip_index, rows = self._gzip_index(info, rows)
        size = int(gzip_index["size"]) if gzip_index else info.size
        rows = sorted(rows, key=lambda r: r["chunk"])
        recs: list[dict[str, Any]] = []
        cur: dict[str, Any] | None = None
        for row in rows:
            segs = row["segments"]
            if cur is None and row["pre_bad"] >= 0:
                raise FormatError(info.uri, row["pre_bad"], "sequence before the first '>' header: only blank "
                                  "lines and ';' or '#' comment lines may come before it (not FASTA, or its first "
                                  "header line is damaged)")
            if cur is not None:
                _join(cur["runs"], segs[0])
            for head, seg in zip(row["headers"], segs[1:], strict=True):
                if cur is not None:
                    recs.append(_finish(cur))
                cur = {"at": head[0], "offset": head[1], "title": head[2], "runs": []}
                _join(cur["runs"], seg)
        if cur is not None:
            recs.append(_finish(cur))
        table = pa.table({
            "name": pa.array([r["name"] for r in recs], pa.string()),
            "length": pa.array([r["length"] for r in recs], pa.int64()),
            "offset": pa.array([r["offset"] for r in recs], pa.int64()),
            "linebases": pa.array([r["lb"] for r in recs], pa.int64()),
            "linewidth": pa.array([r["lw"] for r in recs], pa.int64()),
            "end": pa.array([r["end"] for r in recs], pa.int64()),
            "regular": pa.array([r["regular"] for r in recs], pa.bool_()),
        })
        manifest: dict[str, Any] = {"index_params": self.index_params(), "records": len(recs),
                                    "uncompressed_size": size, "bases": int(sum(r["length"] for r in recs)),
                                    "irregular": int(sum(not r["regular"] for r in recs))}
        tables = {"records": table}
        if gzip_index is None:
            manifest.update(compression="none")
        else:
            seeks = gzip_index["seeks"]
            tables["seeks"] = pa.table({
                "u": pa.array([s[0] for s in seeks], pa.int64()), "c": pa.array([s[1] for s in seeks], pa.int64()),
                "bits": pa.array([s[2] for s in seeks], pa.int64()),
                "window_offset": pa.array([s[3] for s in seeks], pa.int64()),
                "window_size": pa.array([s[4] for s in seeks], pa.int64()),
                "member": pa.array([bool(gzip_index.get("member"))] * len(seeks), pa.bool_())})
            manifest.update(compression="gzip", spacing=self.gzip_spacing(info.size))
            if not gzip_index.get("member"):
                manifest.update(blobs={"windows": gzip_index["blob"]},
                                blob_sizes={"windows": int(gzip_index["blob_size"])})
        return Index(manifest, tables)

    # -- an existing .fai (and .gzi) instead of a build -------------------------------------------------
    def sidecar_index(self, info: ObjectInfo, storage: StorageOptions) -> Index | None:
        """The object's samtools ``.fai`` (and ``.gzi`` when it is bgzipped) as its index, or None.

        Checked against the object as far as planning can without reading data: the layout must be
        consistent and end inside the object. Slices check the rest as they decode (header names and
        bases per record), so a ``.fai`` that belongs to another version of the object fails a read.
        """
        st = get_storage(info.uri, storage)
        try:
            fai = st.read_all(info.uri + ".fai")
        except ObjectNotFoundError:
            return None
        head = st.read(info.uri, 0, min(info.size, 2)) if info.size else b""
        seeks = None
        usize = info.size
        if gz.is_gzip(head):
            try:
                gzi = st.read_all(info.uri + ".gzi")
            except ObjectNotFoundError:
                return None  # a .fai of a plain gzip FASTA cannot be used (samtools only indexes BGZF)
            seeks, usize = _read_gzi(info, gzi, st)
        return _fai_index(info, fai, usize, seeks, self.index_params())

    # -- planning -----------------------------------------------------------------------------------
    def _rows(self, index: Index) -> dict[str, np.ndarray]:
        """Every row of the object: its record, its first base in the record and its bases."""
        t = index.tables["records"]
        length = t.column("length").to_numpy()
        chunk = self.chunk
        per = np.ones(len(length), dtype=np.int64) if chunk == 0 else np.maximum(1, -(-length // chunk))
        first_row = np.concatenate(([0], np.cumsum(per)))
        rec = np.repeat(np.arange(len(length)), per)
        k = np.arange(len(rec)) - first_row[rec]
        start = k * chunk
        size = length[rec] - start if chunk == 0 else np.minimum(chunk, length[rec] - start)
        return {"rec": rec, "start": start, "size": size, "first_row": first_row,
                "regular": t.column("regular").to_numpy(zero_copy_only=False)}

    def units(self, index: Index, strategy: str) -> int:
        if strategy == "records":
            return index.records
        return int(np.maximum(self._rows(index)["size"], 1).sum())

    def slices(self, index: Index, strategy: str, cuts: list[int],
               storage_options: StorageOptions) -> list[Slice | None]:
        rows = self._rows(index)
        n_rows = len(rows["rec"])
        if strategy == "records":
            ks = [int(rows["first_row"][min(c, index.records)]) for c in cuts]
        else:
            bounds = np.concatenate(([0], np.cumsum(np.maximum(rows["size"], 1))))
            ks = []
            for c in cuts:
                j = int(np.searchsorted(bounds, c))
                k = min((i for i in (j - 1, j) if 0 <= i <= n_rows), key=lambda i: abs(int(bounds[i]) - c))
                if 0 < k < n_rows and not rows["regular"][rows["rec"][k]]:
                    k = int(rows["first_row"][rows["rec"][k]])  # an irregular record is never cut
                ks.append(k)
            ks[0], ks[-1] = 0, n_rows
            ks = list(np.maximum.accumulate(ks))
        return [self._slice(index, rows, a, b, storage_options) if b > a else None
                for a, b in zip(ks, ks[1:], strict=False)]

    def _slice(self, index: Index, rows: dict[str, np.ndarray], ka: int, kb: int,
               storage_options: StorageOptions) -> Slice:
        """Rows ``[ka, kb)``: the bytes from the first row's first base (or its record's header) to the last's."""
        t = index.tables["records"]
        col = {n: t.column(n).to_numpy() for n in ("length", "offset", "linebases", "linewidth", "end")}
        names = t.column("name")
        ra, rb = int(rows["rec"][ka]), int(rows["rec"][kb - 1])
        s = int(rows["start"][ka])
        e = int(rows["start"][kb - 1] + rows["size"][kb - 1])
        usize = int(index.manifest.get("uncompressed_size", index.source.size))

        def byte(r: int, i: int) -> int:  # the .fai formula: the byte of base i of record r
            lb, lw = int(col["linebases"][r]), int(col["linewidth"][r])
            return int(col["offset"][r]) + i // lb * lw + i % lb

        def gap_start(r: int) -> int:  # after the previous record's last base: its line break, blanks, header
            return int(col["end"][r - 1]) if r > 0 else 0

        a = gap_start(ra) if s == 0 else byte(ra, s)
        if e < int(col["length"][rb]):
            b = byte(rb, e - 1) + 1
        else:
            b = usize if rb == len(col["length"]) - 1 else int(col["end"][rb])
        spans = [(a, b)]
        if s > 0:
            spans.insert(0, (gap_start(ra), int(col["offset"][ra])))
        seen = [int(col["length"][r]) for r in range(ra, rb + 1)]
        seen[-1] = e if ra != rb else e - s
        if ra != rb:
            seen[0] -= s
        name_list = names.slice(ra, rb - ra + 1).to_pylist()
        ranges: list[ByteRange] = []
        span_ctx = [_span(index, x, y, ranges) for x, y in spans]
        context = {
            "s": s, "e": e, "head": s > 0, "first_name": name_list[0], "preamble": ra == 0 and s == 0,
            "headers": rb - ra + 1 - (1 if s > 0 else 0), "bases": int(sum(seen)),
            "lens_crc": zlib.crc32(np.asarray(seen, dtype=np.int64).tobytes()),
            "names_crc": zlib.crc32("\n".join(name_list).encode()), "records": rb - ra + 1,
            "spans": span_ctx, "size": index.source.size,
        }
        return Slice(format=self.name, uri=index.source.uri, etag=index.source.etag, ranges=tuple(ranges),
                     params=self.params, context=context, storage=storage_options, rows=kb - ka)

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        return Slice(format=self.name, uri=info.uri, etag=info.etag, ranges=(ByteRange(info.uri, 0, info.size),),
                     params=self.params, context={"codec": "auto", "preamble": True, "size": info.size},
                     storage=storage_options)

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        from ..slices import PIECE_BYTES

        ctx = slice_.context
        if ctx.get("codec") == "auto":  # no index: the whole object in one task, as Spark would
            raw: bytes | memoryview = data.read(0)
            if gz.is_gzip(raw[:2]):
                raw = gz.inflate_all(slice_.uri, raw)
            view = memoryview(raw)
            parser = _Parser(self, slice_.uri, 0, None, 0, preamble=True)
            for i in range(0, len(view), PIECE_BYTES):
                yield from parser.feed(view[i: i + PIECE_BYTES])
            yield from parser.finish()
            return
        spans = ctx["spans"]
        title = None
        if ctx["head"]:
            gap = b"".join(bytes(p) for p in _span_pieces(slice_, data, spans[0]))
            title = _last_header(slice_.uri, spans[0]["u"], gap)
            if _name(title) != ctx["first_name"]:
                raise StaleIndexError(f"{slice_.uri}: the header before offset {spans[0]['end']} is {title!r}, its "
                                      f"index names record {ctx['first_name']!r}: the object changed since it was "
                                      f"indexed (rebuild: dataplug index --force --format fasta {slice_.uri})")
        main = spans[-1]
        parser = _Parser(self, slice_.uri, main["u"], title, int(ctx["s"]), preamble=bool(ctx["preamble"]))
        for piece in _span_pieces(slice_, data, main):
            yield from parser.feed(piece)
        yield from parser.finish()
        parser.check(ctx)


def _join(runs: list[list[Any]], more: list[list[Any]]) -> None:
    """Append runs, merging the first with the last when they describe the same kind of line."""
    for r in more:
        if runs and runs[-1][1:4] == r[1:4]:
            runs[-1][0] += r[0]
            runs[-1][4] = r[4]
        else:
            runs.append(list(r))


def _finish(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A record's ``.fai`` entry from its runs of lines: regular when its layout fits the formula."""
    runs = list(rec["runs"])
    while runs and runs[-1][1] == 0:
        runs.pop()  # blank lines after the last bases
    length = sum(r[0] * r[1] for r in runs)
    regular = all(r[3] and r[1] > 0 for r in runs) and (
        len(runs) <= 1 or (len(runs) == 2 and runs[1][0] == 1 and runs[1][1] <= runs[0][1]))
    lb, lw = (runs[0][1], runs[0][2]) if runs else (0, 0)
    title = rec["title"]
    words = title.split(None, 1)
    return {"name": words[0] if words else "", "length": length, "offset": rec["offset"], "lb": lb if regular else 0,
            "lw": lw if regular else 0, "end": runs[-1][4] if runs else rec["offset"], "regular": bool(regular)}


def _read_gzi(info: ObjectInfo, gzi: bytes, st: Any) -> tuple[list[tuple[int, int]], int]:
    """A bgzip ``.gzi``: (compressed, uncompressed) offsets of every block after the first, little-endian."""
    if len(gzi) < 8:
        raise FormatError(info.uri + ".gzi", 0, "not a bgzip .gzi index (too short)")
    (n,) = struct.unpack_from("<Q", gzi)
    if len(gzi) != 8 + 16 * n:
        raise FormatError(info.uri + ".gzi", 0, f"not a bgzip .gzi index ({n} entries need {8 + 16 * n} bytes, "
                          f"it has {len(gzi)})")
    pairs = np.frombuffer(gzi, dtype="<u8", offset=8).reshape(-1, 2).astype(np.int64)
    seeks = [(0, 0)] + [(int(c), int(u)) for c, u in pairs]
    if any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(seeks, seeks[1:], strict=False)) or seeks[-1][0] >= info.size:
        raise StaleIndexError(f"{info.uri}.gzi does not describe {info.uri} (offsets out of order or past its end): "
                              "regenerate it with bgzip -r, or build a dataplug index")
    c_last, u_last = seeks[-1]
    tail = st.read(info.uri, c_last, info.size, etag=info.etag)
    return seeks, u_last + len(gz.inflate_all(info.uri, tail))


def _fai_index(info: ObjectInfo, fai: bytes, usize: int, seeks: list[tuple[int, int]] | None,
               index_params: dict[str, Any]) -> Index:
    import pyarrow as pa

    from ..index.store import Index

    where = info.uri + ".fai"
    names, cols = [], []
    for i, line in enumerate(fai.decode(errors="replace").splitlines()):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 5:
                raise ValueError(f"{len(parts)} columns, a FASTA .fai has 5")
            nums = [int(p) for p in parts[1:]]
        except ValueError as e:
            raise StaleIndexError(f"{where} line {i + 1} is not a FASTA .fai entry ({e})") from e
        names.append(parts[0])
        cols.append(nums)
    arr = np.array(cols, dtype=np.int64).reshape(-1, 4)
    length, offset, lb, lw = (arr[:, j] for j in range(4))
    bad = (length < 0) | (offset < 0) | ((length > 0) & ((lb <= 0) | (lw < lb)))
    last = np.maximum(length - 1, 0)
    end = np.where(length > 0, offset + last // np.maximum(lb, 1) * lw + last % np.maximum(lb, 1) + 1, offset)
    order = np.ones(len(end), dtype=bool)
    order[1:] = offset[1:] > end[:-1]
    if bad.any() or not order.all() or (len(end) and end[-1] > usize):
        raise StaleIndexError(f"{where} does not describe {info.uri} (a record's layout is impossible, out of order "
                              f"or ends past the object's {usize} bytes): regenerate it with samtools faidx, or "
                              "build a dataplug index (dataplug index --format fasta)")
    table = pa.table({"name": pa.array(names, pa.string()), "length": pa.array(length),
                      "offset": pa.array(offset), "linebases": pa.array(lb), "linewidth": pa.array(lw),
                      "end": pa.array(end), "regular": pa.array(np.ones(len(end), dtype=bool))})
    manifest: dict[str, Any] = {
        "source": {"uri": info.uri, "size": info.size, "etag": info.etag}, "format": "fasta",
        "index_params": index_params, "records": len(names), "uncompressed_size": usize,
        "bases": int(length.sum()), "sidecar": ".fai" + (" + .gzi" if seeks else ""),
        "compression": "none" if seeks is None else "bgzf"}
    tables = {"records": table}
    if seeks is not None:
        tables["seeks"] = pa.table({"u": pa.array([u for _, u in seeks], pa.int64()),
                                    "c": pa.array([c for c, _ in seeks], pa.int64()),
                                    "bits": pa.array([0] * len(seeks), pa.int64()),
                                    "window_offset": pa.array([0] * len(seeks), pa.int64()),
                                    "window_size": pa.array([0] * len(seeks), pa.int64()),
                                    "member": pa.array([True] * len(seeks), pa.bool_())})
    return Index(manifest, tables)


def _span(index: Index, a: int, b: int, ranges: list[ByteRange]) -> dict[str, Any]:
    """How to read uncompressed bytes ``[a, b)``: appends the byte ranges it needs, returns its context."""
    src = index.source
    if "seeks" not in index.tables:
        ranges.append(ByteRange(src.uri, a, b))
        return {"u": a, "end": b, "range": len(ranges) - 1}
    seeks = index.tables["seeks"]
    su = seeks.column("u").to_numpy()
    sc = seeks.column("c").to_numpy()
    k = int(np.searchsorted(su, a, side="right")) - 1
    j = int(np.searchsorted(su, b, side="left"))  # the first point at or after the span's end
    member = bool(seeks.column("member")[k].as_py())
    c_end = src.size if j >= len(su) else min(src.size, int(sc[j]) + (0 if member else END_SLACK))
    bits = int(seeks.column("bits")[k].as_py())
    c = int(sc[k])
    ctx: dict[str, Any] = {"u": a, "end": b, "seek_u": int(su[k]), "c": c, "bits": bits, "member": member,
                           "window": None}
    win_size = int(seeks.column("window_size")[k].as_py())
    if win_size > 0:
        off = int(seeks.column("window_offset")[k].as_py())
        ranges.append(ByteRange(index.blob_uri("windows"), off, off + win_size))
        ctx["window"] = len(ranges) - 1
    ranges.append(ByteRange(src.uri, c - 1 if bits else c, c_end))
    ctx["range"] = len(ranges) - 1
    return ctx


def _span_pieces(slice_: Slice, data: RangeReader, span: Mapping[str, Any]) -> Iterator[bytes | memoryview]:
    """The uncompressed bytes of one span, a piece at a time (inflated from its seek point for gzip)."""
    from ..slices import PIECE_BYTES
    from ._lines import _drop

    idx = int(span["range"])
    if "seek_u" not in span:
        yield from data.pieces(idx)
        return
    window = zlib.decompress(data.read(int(span["window"]))) if span.get("window") is not None else None
    u0 = int(span["seek_u"])
    pieces = gz.inflate_pieces(slice_.uri, data.pieces(idx), slice_.ranges[idx].start, int(span["c"]),
                               int(span["bits"]), window, int(span["end"]) - u0, int(slice_.context["size"]),
                               piece=PIECE_BYTES, member=bool(span["member"]))
    yield from _drop(pieces, int(span["u"]) - u0)


def _last_header(uri: str, at: int, gap: bytes) -> str:
    """The title of the header line that ends a record's gap (blank lines may come before it)."""
    body = gap.rstrip(b"\r\n")
    line = body[body.rfind(b"\n") + 1:]
    if not line.startswith(b">"):
        raise StaleIndexError(f"{uri}: no '>' header line ends at offset {at + len(gap)}, where its index puts a "
                              f"record's first base: the object changed since it was indexed, or its .fai belongs "
                              f"to another file (rebuild: dataplug index --force --format fasta {uri})")
    try:
        return line[1:].decode().rstrip()
    except UnicodeDecodeError as e:
        raise FormatError(uri, at + len(gap) - len(line), f"a FASTA header is not valid UTF-8 ({e})") from e


class _Parser:
    """Biopython's FASTA reading, vectorised, over a stream of pieces; yields rows as they complete.

    Rows are cut at multiples of the chunk size of their record's bases: the bases of the row still open
    at the end of a piece are carried (never more than one row), the line cut by the piece's end too.
    """

    def __init__(self, fmt: FASTA, uri: str, base: int, title: str | None, pos: int, preamble: bool) -> None:
        self.fmt, self.uri = fmt, uri
        self.chunk = fmt.chunk
        self.at = base  # object offset of the next byte fed
        self.line = b""  # the line cut by the last piece's end
        self.mid_line = title is not None  # the stream starts inside a sequence line
        self.title = title  # the current record (None: before the first header)
        self.row = b""  # bases of the open row
        self.row_pos = pos  # its first base's position in the record
        self.preamble = preamble
        self.names: list[str] = []
        self.seen: list[int] = []  # bases met per record
        self.headers = 0
        if title is not None:
            self.names.append(_name(title))
            self.seen.append(0)
        select = fmt.params.get("select")
        self.want_ids = not select or bool({"id", "description"} & set(select))

    def feed(self, piece: bytes | memoryview) -> Iterator[pa.RecordBatch]:
        if not len(piece):
            return
        data = self.line + bytes(piece) if self.line else piece
        arr = np.frombuffer(data, dtype=np.uint8)
        cut, step = 0, 1 << 16
        for hi in range(len(arr), 0, -step):  # the last line break: look back from the end, a little at a time
            nl = np.flatnonzero(arr[max(0, hi - step): hi] == NL)
            if len(nl):
                cut = max(0, hi - step) + int(nl[-1]) + 1
                break
        base = self.at - len(self.line)
        self.at += len(piece)
        self.line = bytes(arr[cut:])
        if cut:
            yield from self._lines(arr[:cut], base, final=False)

    def finish(self) -> Iterator[pa.RecordBatch]:
        arr = np.frombuffer(self.line, dtype=np.uint8)
        self.line = b""
        yield from self._lines(arr, self.at - len(arr), final=True)

    def check(self, ctx: Mapping[str, Any]) -> None:
        """What the slice met against what its index promised (headers, names, bases per record)."""
        got = {"headers": self.headers, "bases": sum(self.seen),
               "names_crc": zlib.crc32("\n".join(self.names).encode()),
               "lens_crc": zlib.crc32(np.asarray(self.seen, dtype=np.int64).tobytes())}
        for key, value in got.items():
            if value != ctx[key]:
                raise StaleIndexError(
                    f"{self.uri}: the slice ending at offset {self.at} met {self.headers} header(s) and "
                    f"{sum(self.seen)} bases where its index promises {ctx['headers']} and {ctx['bases']} "
                    f"({key} differs): the object changed since it was indexed, or its .fai belongs to another "
                    f"file; rebuild its index (dataplug index --force --format fasta {self.uri})")

    def _lines(self, buf: np.ndarray, base: int, final: bool) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        n = len(buf)
        if n == 0 and not final:
            return
        starts, ends, rend = _lines(buf)
        header = (ends > starts) & (buf[np.minimum(starts, max(n - 1, 0))] == GT) if n else np.zeros(0, bool)
        if self.mid_line and len(header):
            header[0] = False  # the stream starts at a base inside a line: that line is sequence
        self.mid_line = False
        hidx = np.flatnonzero(header)
        # bytes that are bases: in a sequence line before its trailing whitespace, not a space or a CR. Counted
        # per line (cheap), then one mask: line breaks out, header lines and trailing whitespace out by range
        junk = np.flatnonzero((buf == SP) | (buf == CR))
        lone = _lone_cr(buf, junk)
        if lone >= 0:  # checked here too: a samtools .fai serves reads of an object never built
            raise FormatError(self.uri, base + lone, LONE_CR)
        kept = rend - starts - (np.searchsorted(junk, rend) - np.searchsorted(junk, starts))
        kept[header] = 0
        if self.title is None:  # before the first header: blank or comment lines only
            stop = int(hidx[0]) if len(hidx) else len(starts)
            text = np.flatnonzero(kept[:stop])
            if len(text):
                if not (self.preamble and all(buf[starts[i]] in (ord(";"), ord("#")) for i in text)):
                    bad = next(int(i) for i in text if not (self.preamble and buf[starts[i]] in (ord(";"), ord("#"))))
                    what = ("sequence before the first '>' header: only blank lines and ';' or '#' comment lines "
                            "may come before it") if self.preamble else (
                        "bases where the index puts a record's header (the object changed since it was indexed; "
                        f"rebuild: dataplug index --force --format fasta {self.uri})")
                    raise FormatError(self.uri, base + int(starts[bad]), what)
                kept[:stop] = 0  # comments
                header = header.copy()
                header[:stop] = True  # dropped whole, like header lines
        keep = buf != NL
        cut = header | (rend < ends)
        lo = np.where(header, starts, rend)[cut]
        hi = ends[cut]
        if len(lo):
            lens = hi - lo
            total = int(lens.sum())
            if total:
                keep[np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(total)] = False
        if len(junk):
            keep[junk] = False
        ck = np.concatenate(([0], np.cumsum(kept)))  # bases before each line
        bases = buf[keep]
        if self.row:
            bases = np.concatenate((np.frombuffer(self.row, np.uint8), bases))
        shift = len(self.row)
        # segments of the base stream: the open record's, then one per header
        seg_start = np.concatenate(([0], ck[hidx] + shift)).astype(np.int64)
        seg_len = np.diff(np.append(seg_start, len(bases)))
        pos0 = np.zeros(len(seg_start), dtype=np.int64)
        pos0[0] = self.row_pos
        closed = np.ones(len(seg_start), dtype=bool)
        closed[-1] = final
        titles = [self.title] + [bytes(buf[starts[i] + 1: rend[i]]).decode(errors="replace") for i in hidx]
        if self.title is None:  # no record open: the first segment holds no bases (checked above)
            seg_start, seg_len, pos0, closed, titles = seg_start[1:], seg_len[1:], pos0[1:], closed[1:], titles[1:]
            new = 0
        else:
            self.seen[-1] += int(seg_len[0]) - shift  # the carried row was counted when it arrived
            new = 1
        for t, ln in zip(titles[new:], seg_len[new:], strict=True):
            self.names.append(_name(t))
            self.seen.append(int(ln))
        self.headers += len(hidx)
        # rows of each segment: full chunks, then (when the record is closed) what is left, or one empty row
        # for an empty record
        chunk = self.chunk
        if chunk == 0:
            full = np.zeros(len(seg_len), dtype=np.int64)
            rest = seg_len
        else:
            full, rest = seg_len // chunk, seg_len % chunk
        tail = closed & ((rest > 0) | ((pos0 == 0) & (seg_len == 0)))
        count = full + tail
        seg_of_row = np.repeat(np.arange(len(seg_len)), count)
        k = np.arange(len(seg_of_row)) - np.repeat(np.cumsum(count) - count, count)
        row_start = seg_start[seg_of_row] + k * chunk
        row_pos = pos0[seg_of_row] + k * chunk
        row_len = np.minimum(chunk, seg_len[seg_of_row] - k * chunk) if chunk else seg_len[seg_of_row]
        if len(seg_len) and not final:
            used = int(row_start[-1] + row_len[-1]) if len(row_start) and seg_of_row[-1] == len(seg_len) - 1 \
                else int(seg_start[-1])
            self.row = bases[used:].tobytes()
            self.row_pos = int(pos0[-1] + (used - seg_start[-1]))
            self.title = titles[-1] if titles else self.title
        else:
            self.row, self.row_pos = b"", 0
            self.title = titles[-1] if titles else self.title
        if not len(row_start):
            return
        offsets = np.append(row_start, row_start[-1] + row_len[-1]).astype(np.int32)
        if len(offsets) and offsets[0]:
            offsets = offsets - offsets[0]
            bases = bases[int(row_start[0]):]
        used_bases = bases[:int(offsets[-1])]
        if len(used_bases) and int(used_bases.max()) >= 0x80:
            # residues are ASCII letters: a multi-byte character would make positions and sequenceChunkSize count
            # bytes where Biopython counts characters (found by the quick fuzz); only damage puts one there
            bad = int(used_bases[np.argmax(used_bases >= 0x80)])
            raise FormatError(self.uri, base, f"a FASTA sequence holds byte 0x{bad:02x}, not an ASCII residue letter "
                                              "(damaged, or not FASTA)")
        seq = pa.StringArray.from_buffers(len(row_start), pa.py_buffer(offsets), pa.py_buffer(bases))
        out: dict[str, Any] = {"start": pa.array(row_pos, pa.int64()), "sequence": seq}
        if self.want_ids:
            from .fastq import _split_header

            ident, desc = _split_header(pa.array([">" + t for t in titles], pa.string()))
            take = pa.array(seg_of_row)
            out["id"], out["description"] = ident.take(take), desc.take(take)
        schema = self.fmt.output_schema()
        yield pa.RecordBatch.from_arrays([out[nm] for nm in schema.names], schema=schema)


def _name(title: str) -> str:
    words = title.split(None, 1)
    return words[0] if words else ""


partition_records_batches = by_strategy("records")
partition_bases_batches = by_strategy("bases")


#: the seed Dataplug's name (formats.genomics.fasta): ``num_chunks`` slices of about equal bases
partition_chunks_strategy = by_strategy("bases", "num_chunks")
