"""VCF: one row per variant line, in Glow's schema (see :mod:`._vcfparse` for the columns and values).

A VCF is a line format: the ``##`` meta lines and the ``#CHROM`` line come first (read once when the index
is built and kept in it, so every slice decodes with the header and none re-reads it), then one record per
line. Plain, gzip and BGZF objects are split like any line format (index points every ``indexSpacing`` bytes,
or at gzip seek points).

**Region pruning.** For every index point the index keeps, per contig, the least ``start`` and the greatest
``end`` of the records that start between that point and the next. A read asking for regions (the
``region`` option, or ``contigName``/``start``/``end`` filters Spark pushes when
``spark.sql.python.filterPushdown.enabled`` is true) plans only the runs of points that can hold an
overlapping record, so a query on one contig of three reads about a third of the object. ``region`` also
filters the rows to those overlapping it (as ``tabix``/pysam ``fetch``); pushed filters only prune, and
Spark applies them to the rows.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_strategy
from ..errors import FormatError, OptionError
from ..options import Opt
from ._lines import LINE_OPTIONS, NL, LineFormat, LineScan

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import Slice
    from ..storage import ObjectInfo, StorageOptions

#: the end of a region with no end (``chr2``, ``chr2:1000``)
NO_END = 1 << 62
_REGION = re.compile(r"^\s*([^:\s]+)(?::([\d_]+)(?:-([\d_]+))?)?\s*$")

#: the genomic columns filters can prune on, and the Spark filter classes that can prune (by name, so
#: this module never imports pyspark)
_PRUNABLE = {"contigName", "start", "end"}


def parse_regions(spec: str) -> list[tuple[str, int, int]]:
    """``chr2``, ``chr2:1000000-2000000``, ``chr2:1000`` (to its end), comma-separated -> 0-based half-open.

    Positions are 1-based and inclusive, as in samtools/tabix; ``chr2:1000-2000`` is ``[999, 2000)``.
    """
    out = []
    for part in str(spec).split(","):
        if not part.strip():
            continue
        m = _REGION.match(part)
        if not m:
            raise OptionError(f"bad region {part.strip()!r}: write contig, contig:start or contig:start-end "
                              "(1-based, inclusive; several separated by commas), e.g. chr2:1000000-2000000")
        contig, beg, end = m.group(1), m.group(2), m.group(3)
        lo = int(beg.replace("_", "")) - 1 if beg else 0
        hi = int(end.replace("_", "")) if end else NO_END
        if lo < 0 or hi <= lo:
            raise OptionError(f"bad region {part.strip()!r}: positions start at 1 and the end must not come "
                              "before the start")
        out.append((contig, lo, hi))
    if not out:
        raise OptionError(f"option region={spec!r} names no region")
    return out


class VCF(LineFormat):
    name: ClassVar[str] = "vcf"
    options: ClassVar[tuple[Opt, ...]] = (
        *LINE_OPTIONS,
        Opt("includeSampleIds", "bool", True, doc="genotypes carry sampleId (Glow's option)"),
        Opt("flattenInfoFields", "bool", True,
            doc="one INFO_<key> column per header INFO line (false: one attributes map<string,string>)"),
        Opt("validationStringency", "choice", "STRICT", ("STRICT", "LENIENT", "SILENT"),
            doc="a malformed line fails the read (STRICT), or is skipped with a warning (LENIENT) or silently"),
        Opt("region", "str", None,
            doc="contig[:start[-end]] (1-based, inclusive), comma-separated: read only the index points that can "
                "hold overlapping variants, and return only those"),
    )

    # -- the header ---------------------------------------------------------------------------------
    def header(self) -> Any:
        from ._vcfparse import VCFHeader

        doc = self.params.get("vcf")
        if doc is None:
            raise FormatError(self.params.get("uri", "?"), 0, "no VCF header is known for this read")
        return VCFHeader.from_json(doc)

    def sniff(self, uri: str, head: bytes, complete: bool) -> dict[str, Any] | None:
        """The header (every line up to and with ``#CHROM``): parsed here once, for every slice to use."""
        from ._vcfparse import VCFHeader

        arr = np.frombuffer(head, dtype=np.uint8)
        nl = np.flatnonzero(arr == NL)
        starts = np.concatenate(([0], nl + 1))
        starts = starts[starts < len(arr)]
        data = np.flatnonzero(arr[starts] != ord("#"))
        n_lines = int(data[0]) if len(data) else len(starts)
        if not len(data) and not complete:
            return None  # the header goes on past these bytes
        if n_lines == 0 or not head.startswith(b"##fileformat=VCF"):
            raise FormatError(uri, 0, "not a VCF: it does not start with a '##fileformat=VCF' line")
        end = int(starts[n_lines]) if n_lines < len(starts) else len(head)
        text = head[:end].decode("utf-8", errors="replace")
        header = VCFHeader.parse(text, uri)
        last = text.rstrip("\r\n").rsplit("\n", 1)[-1]
        if not last.startswith("#CHROM"):
            raise FormatError(uri, end, "the VCF header does not end with a '#CHROM' line")
        doc = header.to_json()
        doc["contigs"] = []  # not needed to decode; can be thousands of lines
        return {"vcf": doc, "header_lines": n_lines}

    def first_record(self) -> int:
        return int(self.params.get("header_lines") or 0)

    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        if index is not None:
            return dict(index.attrs.get("sniff") or {})
        sniffed = self.sniff("", head or b"", True)
        return sniffed or {}

    def arrow_schema(self) -> pa.Schema:
        from ._vcfparse import vcf_schema

        return vcf_schema(self.header(), bool(self.params.get("includeSampleIds", True)),
                          bool(self.params.get("flattenInfoFields", True)))

    # -- index build: per chunk, contig ranges for pruning ------------------------------------------
    def chunk_stats(self, buf: np.ndarray, offset: int) -> list[list[Any]] | None:
        from ._vcfparse import positions

        nl = np.flatnonzero(buf == NL)
        starts = np.concatenate(([0], nl + 1))
        starts = starts[starts < len(buf)]
        data = np.flatnonzero(buf[starts] != ord("#"))
        if not len(data):
            return []
        lines = buf[int(starts[data[0]]):]
        try:
            str(memoryview(lines), "utf-8")  # the parser makes Arrow strings of these bytes unchecked
            contigs, start, end = positions(lines, "", offset)
        except (FormatError, UnicodeDecodeError):
            return [[None, 0, NO_END]]  # a malformed line or bad UTF-8: never pruned (the read reports it)
        import pyarrow as pa

        arr = pa.array(contigs, pa.string()) if not isinstance(contigs, pa.Array) else contigs
        table = pa.table({"c": arr, "s": pa.array(start, pa.int64()), "e": pa.array(end, pa.int64())})
        grouped = table.group_by("c").aggregate([("s", "min"), ("e", "max")])
        return [[c, int(s), int(e)] for c, s, e in zip(grouped.column("c").to_pylist(),
                                                       grouped.column("s_min").to_pylist(),
                                                       grouped.column("e_max").to_pylist(), strict=True)]

    # -- planning: prune points -------------------------------------------------------------------------
    def kept_points(self, index: Index) -> list[tuple[int, int]] | None:
        """Points whose records can overlap every way in: the ``region`` option *and* the pushed filters."""
        asks: list[list[tuple[str | None, int, int]]] = []
        if self.params.get("region"):
            asks.append(list(parse_regions(self.params["region"])))
        if self.params.get("pushed"):
            asks.append([(c, int(lo), int(hi)) for c, lo, hi in self.params["pushed"]])
        if not asks or "stats" not in index.tables:
            return None
        stats = index.tables["stats"]
        point = stats.column("point").to_numpy()
        keys = stats.column("key").to_pylist()
        low, high = stats.column("low").to_numpy(), stats.column("high").to_numpy()
        n = index.tables["points"].num_rows
        keep = np.ones(n, dtype=bool)
        for regions in asks:
            any_hit = np.zeros(n, dtype=bool)
            for contig, lo, hi in regions:
                match = np.array([k is None or contig is None or k == contig for k in keys], dtype=bool)
                hit = match & (low < hi) & (high > lo)
                any_hit[point[hit]] = True
            keep &= any_hit
        runs, i = [], 0
        while i < n:
            if keep[i]:
                j = i
                while j < n and keep[j]:
                    j += 1
                runs.append((i, j))
                i = j
            else:
                i += 1
        return runs

    def record_slice(self, index: Index, a: int, b: int, storage_options: StorageOptions) -> Slice:
        own = (index.attrs.get("sniff") or {}).get("vcf")
        if own is not None and self.params.get("vcf") is not None and own != self.params["vcf"]:
            raise OptionError(f"{index.source.uri}: its VCF header declares other INFO/FORMAT fields or samples "
                              "than the first object's, so its rows cannot share one schema; read such objects "
                              "separately (objects of one call set, e.g. one per chromosome, share a header)")
        s = super().record_slice(index, a, b, storage_options)
        if self.params.get("region") or self.params.get("validationStringency", "STRICT") != "STRICT":
            s = dataclasses.replace(s, rows=None)  # filtered or skipped rows: the count is not the index's
        return s

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        s = super().scan_slice(info, storage_options)
        return dataclasses.replace(s, context={**s.context, "skip": 0})  # header lines are dropped by decoding

    # -- decoding -----------------------------------------------------------------------------------
    def decode_records(self, slice_: Slice, buf: np.ndarray, offset: int, count: int,
                       scanned: tuple[LineScan, int] | None = None) -> pa.RecordBatch:
        import pyarrow as pa
        import pyarrow.compute as pc

        from ._vcfparse import decode_lines

        if len(buf) and buf[0] == ord("#"):  # a read without an index starts with the header
            nl = np.flatnonzero(buf == NL)
            starts = np.concatenate(([0], nl + 1))
            starts = starts[starts < len(buf)]
            data = np.flatnonzero(buf[starts] != ord("#"))
            cut = int(starts[data[0]]) if len(data) else len(buf)
            buf, offset = buf[cut:], offset + cut
        try:  # the parser slices bytes into Arrow strings unchecked: a stray byte would reach Spark as a bad string
            str(memoryview(buf), "utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(slice_.uri, offset + e.start, f"VCF text is not valid UTF-8 ({e.reason})") from None
        region = parse_regions(self.params["region"]) if self.params.get("region") else None
        select = self.params.get("select")
        need = None
        if select:
            need = list(select) + [c for c in ("contigName", "start", "end") if region and c not in select]
        batch = decode_lines(buf, self.header(), include_sample_ids=bool(self.params.get("includeSampleIds", True)),
                             flatten_info=bool(self.params.get("flattenInfoFields", True)),
                             stringency=str(self.params.get("validationStringency") or "STRICT"), select=need,
                             uri=slice_.uri, offset=offset)
        if region:
            contig, start, end = (batch.column(c) for c in ("contigName", "start", "end"))
            mask = None
            for c, lo, hi in region:
                m = pc.and_(pc.equal(contig, c), pc.and_(pc.less(start, hi), pc.greater(end, lo)))
                mask = m if mask is None else pc.or_(mask, m)
            batch = batch.filter(mask)
        if select and batch.schema.names != list(select):
            batch = pa.RecordBatch.from_arrays([batch.column(c) for c in select], names=list(select))
        return batch

    # -- pushed filters --------------------------------------------------------------------------------
    @staticmethod
    def push_filters(filters: list[Any]) -> dict[str, Any]:
        """Regions implied by the filters Spark pushes: ``contigName`` =/IN and ``start``/``end`` bounds.

        Filters on other columns or of other kinds are ignored (Spark applies every filter to the rows
        anyway); the result only decides which index points are read.
        """
        contigs: set[str] | None = None
        lo, hi = 0, NO_END
        for f in filters:
            kind = type(f).__name__
            col = ".".join(getattr(f, "attribute", ()) or ())
            if col not in _PRUNABLE:
                continue
            value = getattr(f, "value", None)
            if col == "contigName":
                if kind == "EqualTo" and isinstance(value, str):
                    vals = {value}
                elif kind == "In":
                    vals = {v for v in value if isinstance(v, str)}
                else:
                    continue
                contigs = vals if contigs is None else contigs & vals
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            # a record [start, end) can pass: start >= v needs end > v; start <= v needs start <= v; end
            # bounds likewise; each narrows the window [lo, hi) a record must overlap
            if kind == "GreaterThanOrEqual" and col == "end":
                lo = max(lo, value - 1)  # end >= v: a record ending at v passes
            elif kind in ("GreaterThan", "GreaterThanOrEqual"):
                lo = max(lo, value)
            elif kind in ("LessThan", "LessThanOrEqual", "EqualTo") and col == "start":
                hi = min(hi, value + 1)
                if kind == "EqualTo":
                    lo = max(lo, value)
            elif kind in ("LessThan", "LessThanOrEqual") and col == "end":
                hi = min(hi, value)
            elif kind == "EqualTo" and col == "end":
                lo, hi = max(lo, value - 1), min(hi, value)
        if contigs is None and lo == 0 and hi == NO_END:
            return {}
        names: list[str | None] = sorted(contigs) if contigs is not None else [None]
        return {"pushed": [[c, lo, max(hi, lo)] for c in names]}


partition_variants_batches = by_strategy("bytes")
partition_records_batches = by_strategy("records")


#: the seed Dataplug's name (formats.genomics.vcf); slices end at whole records, so ``padding`` is unused
partition_num_chunks = by_strategy("bytes", "num_chunks", accepts={"padding": 256})
