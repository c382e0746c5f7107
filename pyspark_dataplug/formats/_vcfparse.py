"""VCF header parsing and vectorised decoding of VCF data lines into Arrow, with Glow's schema.

Pure (no storage, no Spark): the VCF format plumbing hands it whole data lines as a ``uint8`` numpy
buffer and gets back a :class:`pyarrow.RecordBatch`. Parsing is byte-level numpy plus pyarrow kernels:
line and column boundaries come from the tab / newline positions; the sample columns are read in one
linear pass (a byte lookup table marks tabs, ``:``, ``,``, ``/``, ``|``; running counts give every
sub-field its span and every comma its sub-field, no binary search); typed values come from
``pyarrow.compute.cast`` over string arrays cut out of the buffer, and single-digit calls (``0/1``, ``1|1``,
``./.``, ``0``) are read straight from their bytes. Python loops run per declared header field or per
distinct FORMAT string -- never per row or per sample.

Schema (Glow's ``VCFSchemaInferrer``, column for column)
--------------------------------------------------------
``contigName`` string, ``start`` long (POS-1), ``end`` long, ``names`` array<string>, ``referenceAllele``
string, ``alternateAlleles`` array<string>, ``qual`` double, ``filters`` array<string>,
``splitFromMultiAllelic`` boolean (always false), then one ``INFO_<ID>`` per header INFO line
(``flatten_info=True``) or ``attributes`` map<string,string> (``flatten_info=False``), then ``genotypes``
array<struct>. The ``genotypes`` column always exists (Glow adds it whatever the header says); it is null
on every row when the header names no samples. The genotype struct is ``sampleId`` (when
``include_sample_ids``) then, per header FORMAT line, Glow's names: GT -> ``phased`` boolean and ``calls``
array<int> (in that order, at GT's place), DP ``depth``, FT ``filters``, GL ``genotypeLikelihoods``,
PL ``phredLikelihoods``, GP ``posteriorProbabilities``, GQ ``conditionalQuality``, HQ
``haplotypeQualities``, EC ``expectedAlleleCounts``, MQ ``mappingQuality``, AD ``alleleDepths``; any
other FORMAT keeps its ID. Types: Integer -> int, Float -> double, String/Character -> string, Flag ->
boolean; Number 0 or 1 -> scalar, anything else (2, A, R, G, .) -> array. INFO/FORMAT ``CSQ`` and ``ANN``
(VEP / SnpEff) are array<struct> with one field per name listed in the header description, typed as
Glow's ``AnnotationUtils`` does. Like htsjdk (which Glow reads headers with), standard header lines with a
non-standard Number/Type are repaired: FORMAT GT/GQ/DP/AD/PL/FT/PS/PQ and INFO END/DB/DP/SB/AF/AC/AN/MQ0/
MQ/SOMATIC get the spec's definition, so FT is always Number=. (array). Every Arrow type is one Spark
reads (string, never large_string).

Columns are in header order. (Glow's own order is whatever a Scala ``groupBy`` over header lines yields --
hash order -- so header order is the only deterministic reading of "Glow's order".) A header ID declared
twice keeps its first definition.

Values (Glow's fast reader, ``VCFLineToInternalRowConverter``, unless noted)
---------------------------------------------------------------------------
- A scalar ``.`` or empty value -> null. An array element ``.`` -> null: ``3,.`` -> ``[3, null]``; an array
  whose elements are all missing is null if it has one element (``.``) and ``[]`` if several (``.,.``),
  exactly Glow's (documented-as-odd) rule. QUAL ``.`` -> null; ID ``.``, ALT ``.`` and FILTER ``.`` -> null;
  ``PASS`` -> ``["PASS"]``.
- GT: ``phased`` is true iff the first allele separator is ``|`` (haploid ``0`` -> false, ``.`` -> false);
  a missing allele is -1 (``./.`` -> ``[-1, -1]``, ``0|.`` -> ``[0, -1]``, ``.`` -> ``[-1]``). A row whose
  FORMAT lacks GT has null ``phased`` and ``calls``.
- A sample with fewer ``:`` fields than FORMAT keys has nulls for the missing trailing fields; a FORMAT key
  absent from a row's FORMAT string is null for that row. FORMAT strings may differ between rows.
- A Flag is true when its key is present (whatever follows ``=``), false otherwise -- never null.
- An INFO key repeated on a line keeps its *last* value (Glow; pysam keeps the first). An INFO value is
  everything after the key's first ``=``, so values may contain ``=``.
- ``end`` is ``start + len(REF)``, or INFO ``END`` when present (declared or not), as Glow does.
- Keys not declared in the header: the schema comes from the header alone, so with ``flatten_info`` an
  undeclared INFO key has no column and is ignored (Glow's fast reader does the same); an undeclared FORMAT
  key is ignored (Glow's default schema has no ``otherFields``). With ``flatten_info=False`` *every* INFO
  key, declared or not, is in ``attributes`` (Glow's htsjdk reader, which is the one Glow uses for that
  schema): the raw text after the first ``=``; ``""`` for a key without ``=`` (a flag, or an undeclared
  key), ``"."`` for a declared non-Flag key without ``=`` or an empty value, a declared Flag ``=0`` left
  out, a repeated key keeping its last value. Undeclared keys are never an error.

Deviations from Glow, on purpose
--------------------------------
- ID and FILTER are split on ``;`` (the spec's separator; Glow's fast reader splits on ``,``); FT is split on
  ``;`` too (Glow's htsjdk reader and the spec; the fast reader splits it on ``,``).
- ``INFO_END`` holds the END value (Glow's fast reader sets ``end`` but leaves ``INFO_END`` null).
- A Flag is always a scalar boolean, even declared with Number=A/R/G/. (Glow would make array<boolean>
  and never fill it); a non-Flag Number=0 is a scalar (htsjdk rejects the header).
- A sites-only header (no samples) gives null ``genotypes`` even on lines with a FORMAT column (Glow's
  fast reader gives ``[]`` there, its htsjdk reader null).
- ``contigName`` and ``referenceAllele`` are taken verbatim (Glow turns a ``.`` into null).
- Floats accept what Arrow's parser does (``1.5``, ``.5``, ``1e5``, ``nan``, ``inf``, ``Infinity``, any
  case and sign); Java's extras (``1f``, hex, surrounding blanks) are errors.

Errors and ``stringency``
-------------------------
A line is malformed when: it is empty; its column count is not 8 + FORMAT + one per header sample (a
sites-only header accepts 8 or 9 columns; one surplus empty column from a trailing tab is dropped); POS is
not an integer; a sample has more ``:`` fields than its FORMAT string; or a typed value does not parse (an
Integer that is not a 32-bit integer, a Float or QUAL that is not a number, a GT allele that is not an
integer or ``.``, INFO END that is not an integer, an annotation ``Distance`` that is not an integer). Then:

- ``STRICT`` (default here): raise :class:`FormatError` naming ``uri``, the malformed line's byte offset in
  the object (``offset`` + its position in ``buf``) and what is wrong.
- ``LENIENT``: skip malformed lines; one ``logging.getLogger("pyspark_dataplug")`` warning per batch with
  the number skipped and the first one's offset.
- ``SILENT``: skip malformed lines without logging.

(Glow's default is SILENT and it keeps a malformed line with the bad field null; skipping the whole line
keeps every value we return one the file really holds.)

Speed (``benchmarks/vcf_decode.py``: one process, every column decoded, best of 3; pysam 0.24.1
iterating the records and calling ``values()`` on every sample, which reads every FORMAT value; Python 3.11
on a shared 2-core VM where another job ran, so ranges over four runs; GT:AD:DP:GQ:PL genotypes):

- 20,000 rows x 100 samples (54.9 MB): decode_lines 2.2-2.9 s (7-9k variants/s, 0.7-0.9M genotypes/s);
  pysam 6.4-13 s (1.5-3.1k variants/s): 2.9-4.6x faster.
- 2,000 rows x 1,000 samples (53.6 MB): decode_lines 2.2-2.8 s (0.7-0.9k variants/s, 0.7-0.9M
  genotypes/s); pysam 16.6-25 s (0.08-0.12k variants/s): 7.7-9.5x faster (pysam's per-sample access
  re-reads the record's FORMAT values).
- :func:`positions`: 0.09-0.15 s for either (360-630 MB/s).
- Memory: temporaries take ~16x the bytes of a piece (PIECE_BYTES, 8 MB), so a 55 MB buffer peaks at
  ~+300 MB RSS, mostly the ~110 MB result and its concatenation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FormatError, OptionError

log = logging.getLogger("pyspark_dataplug")

NL, CR, TAB = 10, 13, 9
_COLON, _SEMI, _COMMA, _EQ, _SLASH, _PIPE, _DOT, _PLUS = (ord(c) for c in ":;,=/|.+")

STRINGENCIES = ("STRICT", "LENIENT", "SILENT")

# token kinds of the sample-column pass (see _Decoder._sample_tokens)
_K_TAB, _K_COLON, _K_END, _K_COMMA, _K_GTSEP = 1, 2, 3, 4, 5  # the closing kinds first: "<= _K_END"
_TOKEN_LUT = np.zeros(256, np.uint8)
_TOKEN_LUT[[TAB, ord(":"), ord(","), ord("/"), ord("|")]] = [_K_TAB, _K_COLON, _K_COMMA, _K_GTSEP, _K_GTSEP]
BASE_COLUMNS = ("contigName", "start", "end", "names", "referenceAllele", "alternateAlleles", "qual",
                "filters", "splitFromMultiAllelic")
_FIXED = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")

# Glow's GenotypeFields aliases (GT is special: phased + calls)
GENOTYPE_ALIASES = {"DP": "depth", "FT": "filters", "GL": "genotypeLikelihoods", "PL": "phredLikelihoods",
                    "GP": "posteriorProbabilities", "GQ": "conditionalQuality", "HQ": "haplotypeQualities",
                    "EC": "expectedAlleleCounts", "MQ": "mappingQuality", "AD": "alleleDepths"}

# htsjdk VCFStandardHeaderLines: a header line with one of these IDs but another Number/Type is replaced
_STD_FORMAT = {"GT": ("1", "String"), "GQ": ("1", "Integer"), "DP": ("1", "Integer"), "PL": ("G", "Integer"),
               "AD": ("R", "Integer"), "FT": (".", "String"), "PS": ("1", "Integer"), "PQ": ("1", "Float")}
_STD_INFO = {"END": ("1", "Integer"), "DB": ("0", "Flag"), "DP": ("1", "Integer"), "SB": ("1", "Float"),
             "AF": ("A", "Float"), "AC": ("A", "Integer"), "AN": ("1", "Integer"), "MQ0": ("1", "Integer"),
             "MQ": ("1", "Float"), "SOMATIC": ("0", "Flag")}
_TYPES = ("Integer", "Float", "Flag", "Character", "String")

# Glow's AnnotationUtils: typed sub-fields of VEP (CSQ) / SnpEff (ANN) annotations; others are strings
_ANNOTATION_IDS = ("CSQ", "ANN")
_RANK = ("rank", "total")
_POS_LEN = ("pos", "length")
_REF_VAR = ("reference", "variant")
_ANNOTATION_TYPES: dict[str, Any] = {
    "Annotation": "list", "Rank": _RANK, "cDNA_pos/cDNA_length": _POS_LEN, "CDS_pos/CDS_length": _POS_LEN,
    "AA_pos/AA_length": _POS_LEN, "Distance": "int",
    "Consequence": "list", "EXON": _RANK, "INTRON": _RANK, "Amino_acids": _REF_VAR, "Codons": _REF_VAR,
    "Existing_variation": "list", "FLAGS": "list",
    "LoF_filter": "list", "LoF_flags": "list", "LoF_info": "list",
}

_INT_RE = r"^-?[0-9]{1,10}$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"


# ---------------------------------------------------------------------------------------------------
# header
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldDef:
    """One INFO or FORMAT header line: ID, Number ("0", "1", "2", "A", "R", "G", "."), Type, Description.

    ``number``/``type`` are the effective ones (after htsjdk's standard-line repair, Flag -> "0"), because
    the schema and the decoder must agree with what Glow would infer from the same header.
    """

    id: str
    number: str
    type: str
    description: str

    @property
    def scalar(self) -> bool:
        """Number 0 or 1: one value, not an array (Glow: ``isFixedCount && count <= 1``)."""
        return self.number in ("0", "1")


@dataclass(frozen=True)
class VCFHeader:
    """What decoding needs from a VCF header; JSON-able so an index manifest can carry it."""

    info: tuple[FieldDef, ...]
    format: tuple[FieldDef, ...]
    samples: tuple[str, ...]
    contigs: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, uri: str = "") -> VCFHeader:
        """Parse all header lines (``##...`` meta lines and the ``#CHROM`` line), ``\\n`` or ``\\r\\n``."""
        info: dict[str, FieldDef] = {}
        fmt: dict[str, FieldDef] = {}
        contigs: list[str] = []
        samples: tuple[str, ...] | None = None
        for raw in text.splitlines():
            line = raw.rstrip("\r")
            if not line:
                continue
            if line.startswith("##"):
                line = line.rstrip()  # some writers leave a tab after the closing '>'

                key, eq, rest = line[2:].partition("=")
                if not eq or not rest.startswith("<") or key not in ("INFO", "FORMAT", "contig"):
                    continue
                attrs = _parse_structured(rest, uri, line)
                if "ID" not in attrs:
                    raise FormatError(uri, None, f"VCF header line without ID: {line!r}")
                if key == "contig":
                    contigs.append(attrs["ID"])
                    continue
                fd = _field_def(key, attrs, uri, line)
                target = info if key == "INFO" else fmt
                target.setdefault(fd.id, fd)
            elif line.startswith("#"):
                cols = line.rstrip().split("\t")  # a trailing tab names no sample (htsjdk drops it too)
                if tuple(cols[:8]) != _FIXED or (len(cols) > 8 and cols[8] != "FORMAT"):
                    raise FormatError(uri, None, "VCF #CHROM header line must be tab-separated "
                                      f"{' '.join(_FIXED)} [FORMAT sample...]; got {line[:200]!r}")
                samples = tuple(cols[9:])
            else:
                raise FormatError(uri, None, f"VCF header: a line that does not start with '#': {line[:200]!r}")
        if samples is None:
            raise FormatError(uri, None, "VCF header has no #CHROM line")
        return cls(tuple(info.values()), tuple(fmt.values()), samples, tuple(contigs))

    def to_json(self) -> dict:
        """Plain lists and strings, so an index manifest can store the header and readers skip re-parsing it."""
        return {
            "info": [[f.id, f.number, f.type, f.description] for f in self.info],
            "format": [[f.id, f.number, f.type, f.description] for f in self.format],
            "samples": list(self.samples),
            "contigs": list(self.contigs),
        }

    @classmethod
    def from_json(cls, d: dict) -> VCFHeader:
        """The inverse of :meth:`to_json` (no repair again: the stored definitions are already effective)."""
        return cls(tuple(FieldDef(*f) for f in d["info"]), tuple(FieldDef(*f) for f in d["format"]),
                   tuple(d["samples"]), tuple(d["contigs"]))


def _parse_structured(rest: str, uri: str, line: str) -> dict[str, str]:
    """``<ID=x,Number=1,Description="a, \\"b\\"">`` -> dict; quoted values may hold commas and escapes."""
    if not rest.endswith(">"):
        raise FormatError(uri, None, f"VCF header line does not end with '>': {line!r}")
    s, i, out = rest[1:-1], 0, {}
    while i < len(s):
        eq = s.find("=", i)
        if eq < 0:
            raise FormatError(uri, None, f"VCF header line: expected key=value in {line!r}")
        key = s[i:eq].strip()
        i = eq + 1
        if i < len(s) and s[i] == '"':
            i += 1
            buf = []
            while i < len(s) and s[i] != '"':
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                buf.append(s[i])
                i += 1
            if i >= len(s):
                raise FormatError(uri, None, f"VCF header line: unterminated quote in {line!r}")
            val = "".join(buf)
            i += 1
            comma = s.find(",", i)
            i = len(s) if comma < 0 else comma + 1
        else:
            comma = s.find(",", i)
            end = len(s) if comma < 0 else comma
            val, i = s[i:end], end + 1
        out.setdefault(key, val)
    return out


def _field_def(kind: str, a: dict[str, str], uri: str, line: str) -> FieldDef:
    fid, number, typ = a["ID"], a.get("Number"), a.get("Type")
    if number is None or typ is None:
        raise FormatError(uri, None, f"VCF {kind} header line without Number or Type: {line!r}")
    if typ not in _TYPES:
        raise FormatError(uri, None, f"VCF {kind} header line: Type={typ} is not one of {', '.join(_TYPES)} "
                          f"(types are case-sensitive): {line!r}")
    if number not in ("A", "R", "G", ".") and not number.isdigit():
        raise FormatError(uri, None, f"VCF {kind} header line: Number={number} is not an integer, A, R, G or '.'"
                          f": {line!r}")
    if kind == "FORMAT" and typ == "Flag":
        raise FormatError(uri, None, f"VCF FORMAT header line: Type=Flag is not allowed in FORMAT: {line!r}")
    if number.isdigit():
        number = str(int(number))
    if typ == "Flag":
        number = "0"
    std = (_STD_FORMAT if kind == "FORMAT" else _STD_INFO).get(fid)
    if std is not None:
        number, typ = std
    return FieldDef(fid, number, typ, a.get("Description", ""))


# ---------------------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------------------

_PRIM = {"Integer": pa.int32(), "Float": pa.float64(), "String": pa.string(), "Character": pa.string(),
         "Flag": pa.bool_()}


def _annotation_fields(description: str) -> list[tuple[str, Any]]:
    """Glow's sub-field names for a CSQ/ANN description: after the last ':', quotes dropped, '|'-split."""
    names = description.split(":")[-1].replace("'", "").split("|")
    while names and names[-1] == "":  # Java's String.split drops trailing empty strings
        names.pop()
    out = []
    for n in names:
        safe = n.replace(" ", "").replace(".", "_")
        out.append((safe, _ANNOTATION_TYPES.get(safe, "str")))
    return out


def _annotation_type(description: str) -> pa.DataType:
    fields = []
    for name, kind in _annotation_fields(description):
        if kind == "str":
            t = pa.string()
        elif kind == "int":
            t = pa.int32()
        elif kind == "list":
            t = pa.list_(pa.string())
        else:
            t = pa.struct([pa.field(k, pa.string()) for k in kind])
        fields.append(pa.field(name, t))
    return pa.list_(pa.struct(fields))


def _value_type(fd: FieldDef, info: bool) -> pa.DataType:
    if fd.id in _ANNOTATION_IDS:
        return _annotation_type(fd.description)
    if info and fd.id == "GT":
        return pa.bool_()  # Glow: INFO GT takes the first of GT's (phased, calls) types
    t = _PRIM[fd.type]
    return t if fd.type == "Flag" or fd.scalar else pa.list_(t)


def _meta(fd: FieldDef) -> dict[bytes, bytes]:
    num = {"A": "A", "R": "R", "G": "G", ".": "UNBOUNDED"}.get(fd.number, fd.number)
    return {b"vcf_header_count": num.encode(), b"vcf_header_description": fd.description.encode()}


def _genotype_fields(header: VCFHeader, include_sample_ids: bool) -> list[tuple[pa.Field, FieldDef | None]]:
    out: list[tuple[pa.Field, FieldDef | None]] = []
    if include_sample_ids:
        out.append((pa.field("sampleId", pa.string()), None))
    for fd in header.format:
        if fd.id == "GT":
            out.append((pa.field("phased", pa.bool_(), metadata=_meta(fd)), fd))
            out.append((pa.field("calls", pa.list_(pa.int32()), metadata=_meta(fd)), fd))
        else:
            out.append((pa.field(GENOTYPE_ALIASES.get(fd.id, fd.id), _value_type(fd, False), metadata=_meta(fd)),
                        fd))
    return out


def vcf_schema(header: VCFHeader, include_sample_ids: bool = True, flatten_info: bool = True) -> pa.Schema:
    """Glow's VCF schema for this header (see the module docstring for the rules)."""
    fields = [
        pa.field("contigName", pa.string()),
        pa.field("start", pa.int64()),
        pa.field("end", pa.int64()),
        pa.field("names", pa.list_(pa.string())),
        pa.field("referenceAllele", pa.string()),
        pa.field("alternateAlleles", pa.list_(pa.string())),
        pa.field("qual", pa.float64()),
        pa.field("filters", pa.list_(pa.string())),
        pa.field("splitFromMultiAllelic", pa.bool_()),
    ]
    if flatten_info:
        fields += [pa.field("INFO_" + fd.id, _value_type(fd, True), metadata=_meta(fd)) for fd in header.info]
    else:
        fields.append(pa.field("attributes", pa.map_(pa.string(), pa.string())))
    gfields = [f for f, _ in _genotype_fields(header, include_sample_ids)]
    fields.append(pa.field("genotypes", pa.list_(pa.struct(gfields))))
    return pa.schema(fields)


# ---------------------------------------------------------------------------------------------------
# byte-level machinery
# ---------------------------------------------------------------------------------------------------

class _Bytes:
    """The buffer, its positions of each delimiter byte (computed once), and spans -> Arrow strings."""

    def __init__(self, buf: np.ndarray) -> None:
        b = np.ascontiguousarray(buf)
        if b.dtype != np.uint8:
            b = b.view(np.uint8) if b.dtype.itemsize == 1 else b.astype(np.uint8)
        self.buf = b.reshape(-1)
        self.n = len(self.buf)
        self._pos: dict[Any, np.ndarray] = {}
        self._data = pa.py_buffer(self.buf)
        self._large = self.n >= 2**31 - 1

    def where(self, *bytes_: int) -> np.ndarray:
        """Sorted positions of any of ``bytes_``; cached because several fields split on the same byte."""
        key = bytes_
        if key not in self._pos:
            m = self.buf == bytes_[0]
            for b in bytes_[1:]:
                m |= self.buf == b
            self._pos[key] = np.flatnonzero(m)
        return self._pos[key]

    def at(self, pos: np.ndarray) -> np.ndarray:
        """``buf[pos]`` with out-of-range positions reading 0 (callers mask those entries anyway)."""
        if not self.n:
            return np.zeros(len(pos), np.uint8)
        return np.take(self.buf, pos, mode="clip")

    def missing(self, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Spans that are empty or exactly ``.``."""
        ln = e - s
        return (ln == 0) | ((ln == 1) & (self.at(s) == _DOT))

    def strings(self, s: np.ndarray, e: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
        """Arrow strings for sorted, non-overlapping spans ``[s, e)``; ``null`` marks null entries.

        A zero-copy string array over the buffer whose offsets interleave span starts and ends holds every
        span at an even index (and the gaps between them at odd ones); ``take`` of the even ones copies out
        just the span bytes in C++. Null entries still need a monotone (s, e), e.g. an empty span.
        """
        n = len(s)
        if n == 0:
            return pa.array([], pa.string())
        odt = np.int64 if self._large else np.int32
        off = np.empty(2 * n + 1, odt)
        off[0:-1:2] = s
        off[1::2] = e
        off[-1] = e[-1]
        typ = pa.large_string() if self._large else pa.string()
        arr = pa.Array.from_buffers(typ, 2 * n, [None, pa.py_buffer(off), self._data])
        idx = np.arange(0, 2 * n, 2, dtype=np.int64 if 2 * n >= 2**31 else np.int32)
        out = arr.take(pa.array(idx, mask=null) if null is not None and null.any() else pa.array(idx))
        return out.cast(pa.string()) if self._large else out

    def split(self, s: np.ndarray, e: np.ndarray, delims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split sorted, non-overlapping spans on delimiter positions -> element starts, ends, per-span counts.

        Every span yields at least one (possibly empty) element; element order follows span order.
        """
        if len(s) == 0:
            z = np.zeros(0, np.int64)
            return z, z, z
        lo, hi = np.searchsorted(delims, [s[0], e[-1]])
        d = delims[lo:hi]
        sid = np.searchsorted(s, d, "right") - 1
        ok = d < e[np.maximum(sid, 0)]
        if not ok.all():
            d, sid = d[ok], sid[ok]
        return self.elements(s, e, d, sid)

    @staticmethod
    def elements(s: np.ndarray, e: np.ndarray, d: np.ndarray, sid: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Elements of spans given the delimiters inside them (``d`` sorted, ``sid`` the span of each)."""
        n = len(s)
        if n == 0:
            z = np.zeros(0, np.int64)
            return z, z, z
        counts = np.bincount(sid, minlength=n) + 1
        m = len(d)
        es = np.empty(n + m, np.int64)
        ee = np.empty(n + m, np.int64)
        first = np.zeros(n, np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        es[first] = s
        ee[first + counts - 1] = e
        if m:
            j = sid + np.arange(m)
            es[j + 1] = d + 1
            ee[j] = d
        return es, ee, counts


class _Errors:
    """Malformed rows of one batch: STRICT raises at once, LENIENT/SILENT mark rows to drop."""

    def __init__(self, stringency: str, uri: str, offset: int, line_starts: np.ndarray) -> None:
        self.strict = stringency == "STRICT"
        self.uri, self.offset, self.line_starts = uri, offset, line_starts
        self.bad = np.zeros(len(line_starts), bool)

    def fail(self, rows: np.ndarray, what: str | Any) -> None:
        """``rows`` (indices into the rows being decoded) are malformed; ``what`` is text or row -> text."""
        rows = np.asarray(rows)
        if not len(rows):
            return
        if self.strict:
            r = int(rows.min())
            msg = what(r) if callable(what) else what
            raise FormatError(self.uri, self.offset + int(self.line_starts[r]), f"malformed VCF line: {msg}")
        self.bad[rows] = True


def _check_stringency(stringency: str) -> str:
    s = str(stringency).upper()
    if s not in STRINGENCIES:
        raise OptionError(f"stringency={stringency!r}: must be one of {', '.join(STRINGENCIES)}")
    return s


def _lines(B: _Bytes) -> tuple[np.ndarray, np.ndarray]:
    """Line starts and content ends (terminator and a CR before it excluded); a last unterminated line counts."""
    nl = B.where(NL)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [B.n]))
    if starts[-1] >= B.n:
        starts, ends = starts[:-1], ends[:-1]
    cr = (ends > starts) & (B.at(ends - 1) == CR)
    return starts, ends - cr


def _show(B: _Bytes, s: int, e: int, limit: int = 60) -> str:
    raw = bytes(B.buf[s:min(e, s + limit)]).decode("utf-8", "replace")
    return repr(raw + ("..." if e - s > limit else ""))


class _Rows:
    """Structurally valid lines: per-line spans of the 8 fixed columns, FORMAT and the sample cells."""

    def __init__(self, B: _Bytes, header: VCFHeader, errors_for: Any, stringency: str, uri: str, offset: int,
                 need_columns: bool = True) -> None:
        self.B = B
        starts, ends = _lines(B)
        tabs = B.where(TAB)
        tlo = np.searchsorted(tabs, starts)
        ntab = np.searchsorted(tabs, ends) - tlo
        nsamp = len(header.samples)
        # a tab ending the line, when it is the only surplus column, is a writer's quirk (bcftools output in
        # Glow's test data; Glow ignores columns past the last sample): drop it
        surplus = ntab == (8 + nsamp if nsamp else 8) + 1
        trailing = surplus & (ends > starts) & (B.at(ends - 1) == TAB)
        if trailing.any():
            ends = ends - trailing
            ntab = ntab - trailing
        if nsamp:
            ok = ntab == 8 + nsamp
            expect = f"{9 + nsamp} tab-separated columns (8 + FORMAT + {nsamp} samples)"
        else:
            ok = (ntab == 7) | (ntab == 8) if need_columns else ntab >= 7
            expect = ("8 tab-separated columns (9 with FORMAT; the header names no samples)" if need_columns
                      else "at least 8 tab-separated columns")
        empty = ends == starts
        ok &= ~empty
        self.skipped = int((~ok).sum())
        self.dropped = (starts[~ok], ends[~ok])  # spans of the lines left out
        self.first_skipped = int(starts[np.argmin(ok)]) if self.skipped else -1
        if self.skipped:
            bad = np.flatnonzero(~ok)
            if stringency == "STRICT":
                r = int(bad[0])
                what = "empty line" if empty[r] else f"expected {expect}, found {int(ntab[r]) + 1}"
                raise FormatError(uri, offset + int(starts[r]), f"malformed VCF line: {what}")
            starts, ends, tlo, ntab = starts[ok], ends[ok], tlo[ok], ntab[ok]
        self.starts, self.ends, self.tlo, self.ntab, self.tabs = starts, ends, tlo, ntab, tabs
        self.R = len(starts)
        self.nsamp = nsamp
        self.errors = errors_for(starts)
        self._cols: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._fixed: np.ndarray | None = None

    def fixed_where(self, byte: int) -> np.ndarray:
        """Positions of ``byte`` in the 8 fixed columns only (a small part of a file with samples)."""
        if self._fixed is None:
            s, _ = self.col(0)
            _, e = self.col(7)
            self._fixed = _span_positions(s, e)
            self._fixed_bytes = self.B.buf[self._fixed]
            self._fixed_pos: dict[int, np.ndarray] = {}
        if byte not in self._fixed_pos:
            self._fixed_pos[byte] = self._fixed[np.flatnonzero(self._fixed_bytes == byte)]
        return self._fixed_pos[byte]

    def col(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Spans of column ``k`` (0 = CHROM ... 8 = FORMAT, 9.. = samples) of every row."""
        if k not in self._cols:
            tabs, tlo = self.tabs, self.tlo
            if self.R == 0:
                z = np.zeros(0, np.int64)
                self._cols[k] = (z, z)
            else:
                s = self.starts if k == 0 else tabs[np.minimum(tlo + k - 1, len(tabs) - 1)] + 1
                has_end = k < self.ntab
                e = np.where(has_end, tabs[np.minimum(tlo + k, max(len(tabs) - 1, 0))] if len(tabs) else 0,
                             self.ends)
                self._cols[k] = (s, e)
        return self._cols[k]


# ---------------------------------------------------------------------------------------------------
# typed values
# ---------------------------------------------------------------------------------------------------

def _cast_checked(strs: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast strings to int32/int64/float64; returns (values with bad ones null, indices of bad ones)."""
    try:
        return pc.cast(strs, typ), np.zeros(0, np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if pa.types.is_floating(typ):
        good = pc.match_substring_regex(strs, _FLOAT_RE)
    else:
        pat = _INT_RE if typ == pa.int32() else r"^-?[0-9]{1,19}$"
        good = pc.match_substring_regex(strs, pat)
    good = pc.fill_null(good, True)
    cand = pc.if_else(good, strs, pa.scalar(None, pa.string()))
    if typ == pa.int32():
        try:
            wide = pc.cast(cand, pa.int64())
        except pa.ArrowInvalid:
            wide = None
        if wide is not None:
            inr = pc.and_(pc.greater_equal(wide, -(2**31)), pc.less_equal(wide, 2**31 - 1))
            good = pc.and_(good, pc.fill_null(inr, True))
            cand = pc.if_else(good, strs, pa.scalar(None, pa.string()))
    try:
        out = pc.cast(cand, typ)
    except pa.ArrowInvalid:  # the regex let through something Arrow rejects: find it one by one
        vals = cand.to_pylist()
        okl = []
        for v in vals:
            try:
                pc.cast(pa.array([v], pa.string()), typ)
                okl.append(True)
            except pa.ArrowInvalid:
                okl.append(False)
        good = pc.and_(good, pa.array(okl))
        out = pc.cast(pc.if_else(good, strs, pa.scalar(None, pa.string())), typ)
    bad = np.flatnonzero(~np.asarray(good.to_numpy(zero_copy_only=False), bool))
    return out, bad


_KIND_TYPE = {"Integer": pa.int32(), "Float": pa.float64()}


class _Typed:
    """Typed Arrow values from spans, Glow's missing-value rules, errors mapped back to rows."""

    def __init__(self, B: _Bytes, errors: _Errors) -> None:
        self.B = B
        self.errors = errors

    def scalars(self, typ: str, s: np.ndarray, e: np.ndarray, absent: np.ndarray | None, owner: np.ndarray | Any,
                what: Any) -> pa.Array:
        """One value per span (``typ`` a VCF Type); null where absent, empty or ``.``."""
        B = self.B
        null = B.missing(s, e)
        if absent is not None:
            null |= absent
        if typ == "Integer":
            plus = ~null & (e - s > 1) & (B.at(s) == _PLUS)  # Java accepts "+5", Arrow does not
            if plus.any():
                s = s + plus
        strs = B.strings(s, e, null)
        if typ in _KIND_TYPE:
            out, bad = _cast_checked(strs, _KIND_TYPE[typ])
            if len(bad):
                self._report(bad, strs, owner, what, typ)
            return out
        return strs

    def _report(self, bad: np.ndarray, strs: pa.Array, owner: np.ndarray | Any, what: Any, typ: str) -> None:
        """Mark the rows of the ``bad`` elements; ``owner`` maps elements to rows (or makes that map)."""
        if callable(owner):
            owner = owner()
        rows = owner[bad]
        first = int(bad[np.argmin(rows)])
        label = what(first) if callable(what) else what

        def msg(_r: int) -> str:
            return f"{label}: {strs[first].as_py()!r} is not a valid {typ}"

        self.errors.fail(np.unique(rows), msg)

    def lists(self, typ: str, s: np.ndarray, e: np.ndarray, absent: np.ndarray | None, owner: np.ndarray,
              what: Any, delims: np.ndarray | tuple[np.ndarray, np.ndarray], elem_type: pa.DataType | None = None
              ) -> pa.Array:
        """A list per span, split on ``delims``; Glow's rule for all-missing lists (1 -> null, more -> []).

        ``delims`` is either sorted delimiter positions, or already (positions inside the spans, span of each).
        """
        B = self.B
        if isinstance(delims, tuple):
            es, ee, counts = B.elements(s, e, *delims)
        else:
            es, ee, counts = B.split(s, e, delims)
        n = len(s)
        first = np.zeros(n, np.int64)
        np.cumsum(counts[:-1], out=first[1:])

        def span_of() -> np.ndarray:  # element -> span; only errors need it
            return np.repeat(np.arange(n), counts)

        def eowner() -> np.ndarray:
            return (owner() if callable(owner) else owner)[span_of()]

        if callable(what):
            def ewhat(i: int) -> str:
                return what(int(np.searchsorted(first, i, "right") - 1))
        else:
            ewhat = what
        if typ == "ann":
            vals = self.annotations(es, ee, eowner, ewhat, elem_type)
            enull = np.asarray(vals.is_null().to_numpy(zero_copy_only=False), bool)
        else:
            enull = B.missing(es, ee)
            vals = self.scalars(typ, es, ee, None, eowner, ewhat)
            if typ in _KIND_TYPE and vals.null_count:
                enull = np.asarray(vals.is_null().to_numpy(zero_copy_only=False), bool)
        if n and enull.any():
            all_null = np.add.reduceat(enull.astype(np.int32), first) == counts
            list_null = all_null & (counts == 1)
            drop = all_null
        else:
            list_null = drop = np.zeros(n, bool)
        if absent is not None:
            drop = drop | absent
            list_null = list_null | absent
        if drop.any():
            keep = ~np.repeat(drop, counts)
            vals = vals.filter(pa.array(keep))
            counts = np.where(drop, 0, counts)
        offs = np.zeros(n + 1, np.int32)
        np.cumsum(counts, out=offs[1:])
        return pa.ListArray.from_arrays(pa.array(offs), vals, mask=pa.array(list_null) if list_null.any() else None)

    def annotations(self, s: np.ndarray, e: np.ndarray, owner: np.ndarray | Any, what: Any,
                    elem_type: pa.DataType) -> pa.Array:
        """VEP/SnpEff annotations (one per span) -> struct, as Glow's ``getAnnotationArray``."""
        null = self.B.missing(s, e)
        strs = self.B.strings(s, e, null)
        fields = list(elem_type)
        nf = len(fields)
        n = len(strs)
        if nf == 0:
            return pa.StructArray.from_arrays([], fields=[], mask=pa.array(null)) if n else pa.array(
                [], elem_type)
        parts = pc.split_pattern(pc.fill_null(strs, ""), "|", max_splits=nf - 1)
        offs = parts.offsets.to_numpy()
        flat = parts.values
        lens = np.diff(offs)
        children = []
        for j, f in enumerate(fields):
            valid = j < lens
            col = flat.take(pa.array(offs[:-1] + j, mask=~valid))
            col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
            t = f.type
            if pa.types.is_list(t):
                trimmed = pc.utf8_rtrim(col, characters="&")
                col = pc.split_pattern(trimmed, "&")
            elif pa.types.is_struct(t):
                pieces = pc.split_pattern(col, "/", max_splits=len(t) - 1)
                po = pieces.offsets.to_numpy()
                pl = np.diff(po)
                pv = pieces.values
                sub = [pv.take(pa.array(po[:-1] + k, mask=(k >= pl) | np.asarray(
                    pieces.is_null().to_numpy(zero_copy_only=False), bool))) for k in range(len(t))]
                col = pa.StructArray.from_arrays(sub, fields=list(t), mask=pieces.is_null())
            elif t == pa.int32():
                out, bad = _cast_checked(col, pa.int32())
                if len(bad):
                    name = f.name
                    self._report(bad, col, owner, lambda i, name=name: f"{what(i) if callable(what) else what} {name}",
                                 "Integer")
                col = out
            children.append(col)
        return pa.StructArray.from_arrays(children, fields=fields, mask=pa.array(null))


# ---------------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------------

class _Decoder:
    def __init__(self, buf: np.ndarray, header: VCFHeader, stringency: str, uri: str, offset: int) -> None:
        self.B = _Bytes(buf)
        self.header = header
        self.stringency = stringency
        self.uri, self.offset = uri, offset
        self.rows = _Rows(self.B, header, lambda st: _Errors(stringency, uri, offset, st), stringency, uri, offset)
        self.errors = self.rows.errors
        self.typed = _Typed(self.B, self.errors)
        self.R = self.rows.R
        self._cache: dict[str, Any] = {}

    # -- fixed columns ----------------------------------------------------------------------------
    def start(self) -> np.ndarray:
        if "start" not in self._cache:
            s, e = self.rows.col(1)
            # int64, as Glow's parseLong
            strs = self.B.strings(s, e, self.B.missing(s, e))
            vals, bad = _cast_checked(strs, pa.int64())
            nulls = np.asarray(vals.is_null().to_numpy(zero_copy_only=False), bool)
            badrows = np.union1d(bad, np.flatnonzero(nulls))
            if len(badrows):
                self.errors.fail(badrows, lambda r: f"POS {_show(self.B, int(s[r]), int(e[r]))} is not an integer")
            self._cache["start"] = np.asarray(vals.fill_null(1).to_numpy(zero_copy_only=False), np.int64) - 1
        return self._cache["start"]

    def end(self) -> np.ndarray:
        start = self.start()
        s, e = self.rows.col(3)
        end = start + (e - s)
        rows, val = _info_end(self.B, self.rows, self.errors)
        if len(rows):
            end[rows] = val
        return end

    def string_col(self, k: int) -> pa.Array:
        s, e = self.rows.col(k)
        return self.B.strings(s, e)

    def list_col(self, k: int, sep: int, label: str) -> pa.Array:
        s, e = self.rows.col(k)
        return self.typed.lists("String", s, e, None, np.arange(self.R), label, self.rows.fixed_where(sep))

    def qual(self) -> pa.Array:
        s, e = self.rows.col(5)
        return self.typed.scalars("Float", s, e, None, np.arange(self.R), "QUAL")

    # -- INFO -------------------------------------------------------------------------------------
    def info_entries(self) -> dict[str, np.ndarray]:
        """Every ``key[=value]`` entry of every INFO column, with its row, key and value spans."""
        if "info" in self._cache:
            return self._cache["info"]
        B = self.B
        s, e = self.rows.col(7)
        es, ee, counts = B.split(s, e, self.rows.fixed_where(_SEMI))
        row = np.repeat(np.arange(self.R), counts)
        keep = (ee > es) & ~((ee - es == 1) & (B.at(es) == _DOT))
        es, ee, row = es[keep], ee[keep], row[keep]
        eqs = self.rows.fixed_where(_EQ)
        j = np.searchsorted(eqs, es)
        eq = eqs[np.minimum(j, len(eqs) - 1)] if len(eqs) else np.zeros(len(es), np.int64)
        has = (j < len(eqs)) & (eq < ee) if len(eqs) else np.zeros(len(es), bool)
        kend = np.where(has, eq, ee)
        vs = np.where(has, eq + 1, ee)
        keys = B.strings(es, kend)
        self._cache["info"] = d = {"row": row, "ks": es, "ke": kend, "vs": vs, "ve": ee, "has": has, "keys": keys}
        return d

    def info_columns(self, wanted: list[FieldDef]) -> dict[str, pa.Array]:
        d = self.info_entries()
        ids = pa.array([fd.id for fd in self.header.info], pa.string())
        code = pc.index_in(d["keys"], value_set=ids)
        code = np.asarray(code.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
        index = {fd.id: i for i, fd in enumerate(self.header.info)}
        out = {}
        for fd in wanted:
            sel = np.flatnonzero(code == index[fd.id])
            rows = d["row"][sel]
            if len(rows) > 1:  # a repeated key keeps its last value, as Glow
                last = np.ones(len(rows), bool)
                last[:-1] = rows[1:] != rows[:-1]
                sel, rows = sel[last], rows[last]
            typ = _value_type(fd, True)
            if typ == pa.bool_():
                flag = np.zeros(self.R, bool)
                flag[rows] = True
                out[fd.id] = pa.array(flag)
                continue
            vs, ve = d["vs"][sel], d["ve"][sel]
            label = f"INFO {fd.id}"
            if pa.types.is_list(typ) and pa.types.is_struct(typ.value_type):
                vals = self.typed.lists("ann", vs, ve, None, rows, label, self.rows.fixed_where(_COMMA), typ.value_type)
            elif pa.types.is_list(typ):
                vals = self.typed.lists(fd.type, vs, ve, None, rows, label, self.rows.fixed_where(_COMMA))
            else:
                vals = self.typed.scalars(fd.type, vs, ve, None, rows, label)
            out[fd.id] = _scatter(vals, rows, self.R)
        return out

    def attributes(self) -> pa.Array:
        """Glow's htsjdk-reader ``attributes``: every INFO key -> its raw value (see module docstring)."""
        d = self.info_entries()
        B = self.B
        keys = d["keys"]
        declared = {fd.id: fd for fd in self.header.info}
        flag_ids = pa.array([k for k, fd in declared.items() if fd.type == "Flag"], pa.string())
        other_ids = pa.array([k for k, fd in declared.items() if fd.type != "Flag"], pa.string())
        is_flag = np.asarray(pc.is_in(keys, value_set=flag_ids).to_numpy(zero_copy_only=False), bool)
        is_other = np.asarray(pc.is_in(keys, value_set=other_ids).to_numpy(zero_copy_only=False), bool)
        has, vs, ve, row = d["has"], d["vs"], d["ve"], d["row"]
        # a declared Flag "=0" is dropped (htsjdk)
        zero = has & is_flag & (ve - vs == 1) & (B.at(vs) == ord("0"))
        keep = ~zero
        # the last of repeated keys wins
        codes = np.asarray(pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False), np.int64)
        combo = row * (int(codes.max()) + 1 if len(codes) else 1) + codes
        idx = np.flatnonzero(keep)
        rev = idx[::-1]
        _, first_rev = np.unique(combo[rev], return_index=True)
        chosen = np.sort(rev[first_rev])
        vals = B.strings(vs[chosen], ve[chosen])
        dot = (~has[chosen] & is_other[chosen]) | (has[chosen] & (ve[chosen] == vs[chosen]))
        if dot.any():
            vals = pc.if_else(pa.array(dot), pa.scalar("."), vals)
        counts = np.bincount(row[chosen], minlength=self.R)
        offs = np.zeros(self.R + 1, np.int32)
        np.cumsum(counts, out=offs[1:])
        return pa.MapArray.from_arrays(pa.array(offs), keys.take(pa.array(chosen)), vals)

    # -- genotypes --------------------------------------------------------------------------------
    def genotypes(self, gtype: pa.DataType, include_sample_ids: bool) -> pa.Array:
        R, S = self.R, self.rows.nsamp
        if S == 0 or R == 0:
            return pa.nulls(R, gtype)
        B = self.B
        header = self.header
        # FORMAT strings -> per row, the position of each declared FORMAT key (-1: absent)
        fs, fe = self.rows.col(8)
        fstr = B.strings(fs, fe)
        enc = pc.dictionary_encode(fstr)
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
        distinct = enc.dictionary.to_pylist()
        fmt_ids = [fd.id for fd in header.format]
        table = np.full((len(distinct), len(fmt_ids)), -1, np.int64)
        nkeys = np.zeros(len(distinct), np.int64)
        for i, f in enumerate(distinct):
            keys = (f or "").split(":")
            nkeys[i] = len(keys)
            for k, key in enumerate(keys):
                if key in fmt_ids:
                    table[i, fmt_ids.index(key)] = k  # a repeated key: the last one, as Glow
        # every sub-field of every sample cell, and the commas / GT separators inside them
        tk = self._sample_tokens()
        nsub, first_sub, sub_s, sub_e = tk["nsub"], tk["first_sub"], tk["sub_s"], tk["sub_e"]
        ce = sub_e[first_sub + nsub - 1]
        cell_row = np.repeat(np.arange(R), S)
        rowkeys = nkeys[codes]
        over = np.flatnonzero(nsub > rowkeys[cell_row])
        if len(over):
            samples = header.samples

            def over_msg(_r: int) -> str:
                c = int(over[0])
                return (f"sample {samples[c % S]!r} has {int(nsub[c])} ':'-separated fields, more than "
                        f"the {int(rowkeys[cell_row[c]])} keys of its FORMAT")
            self.errors.fail(np.unique(cell_row[over]), over_msg)

        samples = header.samples

        def cell_label(label: str) -> Any:
            def f(c: int) -> str:
                return f"FORMAT {label} of sample {samples[int(c) % S]!r}"
            return f

        children = []
        gfields = _genotype_fields(header, include_sample_ids)
        done_gt: dict[str, pa.Array] = {}
        cell_ids = np.arange(R * S, dtype=np.int32)
        for field, fd in gfields:
            if fd is None:
                ids = pa.array(list(samples), pa.string())
                children.append(ids.take(pa.array(np.tile(np.arange(S, dtype=np.int32), R))))
                continue
            k = table[codes, fmt_ids.index(fd.id)][cell_row]
            present = (k >= 0) & (k < nsub)
            sub = first_sub + np.where(present, k, 0)
            s, e = sub_s[sub], sub_e[sub]
            absent = ~present
            if absent.any():
                s = np.where(absent, ce, s)
                e = np.where(absent, ce, e)

            def inside(kind: str, sub: np.ndarray = sub, present: np.ndarray = present
                       ) -> tuple[np.ndarray, np.ndarray]:
                """The ``kind`` delimiters inside this field's sub-fields, and the cell of each."""
                owner = np.full(len(sub_s), -1, np.int32)
                owner[sub[present]] = cell_ids[present]
                cid = owner[tk[kind + "_sub"]]
                keep = cid >= 0
                return tk[kind + "_pos"][keep], cid[keep].astype(np.int64)

            if fd.id == "GT":
                if not done_gt:
                    done_gt.update(self._gt(s, e, absent, cell_row, cell_label("GT"), inside("gtsep")))
                children.append(done_gt[field.name])
                continue
            typ = field.type
            label = cell_label(fd.id)
            if pa.types.is_list(typ) and pa.types.is_struct(typ.value_type):
                col = self.typed.lists("ann", s, e, absent, cell_row, label, inside("comma"), typ.value_type)
            elif pa.types.is_list(typ):
                seps = B.where(_SEMI) if fd.id == "FT" else inside("comma")
                col = self.typed.lists(fd.type, s, e, absent, cell_row, label, seps)
            else:
                col = self.typed.scalars(fd.type, s, e, absent, cell_row, label)
            children.append(col)
        struct = pa.StructArray.from_arrays(children, fields=list(gtype.value_type)) if children else \
            pa.StructArray.from_arrays([], fields=[], mask=pa.array(np.zeros(R * S, bool)))
        offs = np.arange(0, R * S + 1, S, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offs), struct)

    def _sample_tokens(self) -> dict[str, np.ndarray]:
        """One linear pass over the sample columns: every sub-field's span, and which sub-field holds each
        comma and each GT separator ('/', '|').

        A byte lookup table classifies tab, ':', ',', '/' and '|'; the bytes before each line's samples
        (fixed columns and FORMAT, a small share of the buffer) are cleared, and each line's end counts as
        a closing token. Every tab, colon or line end then closes one sub-field; a running count of those
        closers gives each comma / separator its sub-field, with no binary search.
        """
        B, rows = self.B, self.rows
        n = B.n
        rs = rows.tabs[rows.tlo + 8]  # the tab before sample 0
        kind = np.empty(n + 1, np.uint8)
        np.take(_TOKEN_LUT, B.buf, out=kind[:n])
        kind[n] = 0  # (set to _K_END below when the last line has no terminator)
        kind[_span_positions(rows.starts, rs + 1)] = 0
        if rows.skipped:
            kind[_span_positions(*rows.dropped)] = 0
        kind[rows.ends] = _K_END
        tok = np.flatnonzero(kind)
        tk = kind[tok]
        del kind
        bound = tk <= _K_END  # tab, colon or line end: closes a sub-field
        sub_e = tok[bound]
        bk = tk[bound]
        sub_s = np.empty(len(sub_e), np.int64)
        if len(sub_e):
            sub_s[1:] = sub_e[:-1] + 1
            line_first = np.concatenate(([0], np.flatnonzero(bk[:-1] == _K_END) + 1))
            sub_s[line_first] = rs + 1
        cell_close = bk != _K_COLON
        ncells = int(np.count_nonzero(cell_close))
        if ncells != rows.R * rows.nsamp:  # cannot happen once column counts are checked
            raise AssertionError(f"VCF sample cells: {ncells} != {rows.R} x {rows.nsamp}")
        last_sub = np.flatnonzero(cell_close)
        first_sub = np.zeros(ncells, np.int64)
        first_sub[1:] = last_sub[:-1] + 1
        nsub = last_sub - first_sub + 1
        # sub-field of a comma / separator = closers before it (sub-fields are numbered by their closer)
        before = np.cumsum(bound, dtype=np.int64)
        out = {"nsub": nsub, "first_sub": first_sub, "sub_s": sub_s, "sub_e": sub_e}
        for name, k in (("comma", _K_COMMA), ("gtsep", _K_GTSEP)):
            sel = np.flatnonzero(tk == k)
            out[name + "_pos"] = tok[sel]
            out[name + "_sub"] = before[sel]
        return out

    def _gt(self, s: np.ndarray, e: np.ndarray, absent: np.ndarray, owner: np.ndarray, what: Any,
            seps: tuple[np.ndarray, np.ndarray]) -> dict[str, pa.Array]:
        """GT spans -> ``phased`` (first separator is '|') and ``calls`` ('.' or empty allele -> -1)."""
        B = self.B
        n = len(s)
        ln = e - s
        b0, b1, b2 = B.at(s), B.at(s + 1), B.at(s + 2)
        d0, d2 = b0 - 48, b2 - 48  # uint8: a digit is < 10
        al0 = (d0 < 10) | (b0 == _DOT)
        dip = (ln == 3) & al0 & ((d2 < 10) | (b2 == _DOT)) & ((b1 == _SLASH) | (b1 == _PIPE))
        hap = (ln == 1) & al0
        slow = ~(dip | hap | absent)
        counts = np.where(absent, 0, np.where(dip, 2, 1)).astype(np.int64)
        phased = dip & (b1 == _PIPE)
        # the rest (ploidy > 2, alleles >= 10, empty or malformed calls): split on '/' and '|'
        idx_slow = np.flatnonzero(slow)
        if len(idx_slow):
            remap = np.full(n, -1, np.int64)
            remap[idx_slow] = np.arange(len(idx_slow))
            d, sid = seps
            sel = remap[sid]
            keep = sel >= 0
            es, ee, cnt = B.elements(s[idx_slow], e[idx_slow], d[keep], sel[keep])
            counts[idx_slow] = cnt
            sfirst = np.zeros(len(idx_slow), np.int64)
            np.cumsum(cnt[:-1], out=sfirst[1:])
            phased[idx_slow] = (cnt > 1) & (B.at(ee[sfirst]) == _PIPE)
            strs = B.strings(es, ee, B.missing(es, ee))
            svals, bad = _cast_checked(strs, pa.int32())
            if len(bad):
                def ewhat(i: int) -> str:
                    return what(int(idx_slow[np.searchsorted(sfirst, i, "right") - 1]))

                def eowner() -> np.ndarray:
                    return owner[idx_slow[np.repeat(np.arange(len(idx_slow)), cnt)]]
                self.typed._report(bad, strs, eowner, ewhat, "Integer (GT allele)")
            svals = np.asarray(pc.fill_null(svals, -1).to_numpy(zero_copy_only=False), np.int32)
        offs = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offs[1:])
        vals = np.empty(int(offs[-1]), np.int32)
        o = offs[:-1]
        v0 = np.where(b0 == _DOT, -1, d0.astype(np.int32))
        fast = dip | hap
        vals[o[fast]] = v0[fast]
        vals[o[dip] + 1] = np.where(b2[dip] == _DOT, -1, d2[dip].astype(np.int32))
        if len(idx_slow):
            within = np.arange(len(svals)) - np.repeat(sfirst, cnt)
            vals[np.repeat(o[idx_slow], cnt) + within] = svals
        mask = pa.array(absent) if absent.any() else None
        return {"phased": pa.array(phased, mask=absent if absent.any() else None),
                "calls": pa.ListArray.from_arrays(pa.array(offs.astype(np.int32)), pa.array(vals), mask=mask)}


def _span_positions(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Every position in the spans ``[s, e)``, concatenated."""
    ln = e - s
    tot = int(ln.sum())
    if tot == 0:
        return np.zeros(0, np.int64)
    base = np.repeat(s - np.concatenate(([0], np.cumsum(ln)[:-1])), ln)
    return base + np.arange(tot)


def _scatter(vals: pa.Array, rows: np.ndarray, R: int) -> pa.Array:
    """Values for ``rows`` (sorted, distinct) -> an array of ``R`` entries, null elsewhere."""
    if len(rows) == R:
        return vals
    idx = np.full(R, 0, np.int64)
    idx[rows] = np.arange(len(rows))
    mask = np.ones(R, bool)
    mask[rows] = False
    return vals.take(pa.array(idx, mask=mask))


def _info_end(B: _Bytes, rows: _Rows, errors: _Errors) -> tuple[np.ndarray, np.ndarray]:
    """Rows with an INFO ``END=`` key and its value (the last one if repeated), without splitting INFO.

    Finds ``=`` bytes preceded by ``END`` at the start of an INFO entry (after the INFO tab or a ``;``).
    """
    eqs = rows.fixed_where(_EQ)
    if not len(eqs) or rows.R == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s, e = rows.col(7)
    lo, hi = np.searchsorted(eqs, [s[0], e[-1]])
    q = eqs[lo:hi]
    q = q[(q >= 3)]
    m = (B.at(q - 1) == ord("D")) & (B.at(q - 2) == ord("N")) & (B.at(q - 3) == ord("E"))
    q = q[m]
    row = np.searchsorted(s, q, "right") - 1
    ok = (row >= 0) & (q < e[np.maximum(row, 0)])
    q, row = q[ok], row[ok]
    ok = (q - 3 == s[row]) | (B.at(q - 4) == _SEMI)
    q, row = q[ok], row[ok]
    if len(row) > 1:
        last = np.ones(len(row), bool)
        last[:-1] = row[1:] != row[:-1]
        q, row = q[last], row[last]
    semis = rows.fixed_where(_SEMI)
    nxt = np.searchsorted(semis, q + 1)
    ve = np.minimum(semis[np.minimum(nxt, len(semis) - 1)] if len(semis) else e[row], e[row])
    ve = np.where(nxt < len(semis), ve, e[row])
    vs = q + 1
    miss = B.missing(vs, ve)
    strs = B.strings(vs, ve, miss)
    vals, bad = _cast_checked(strs, pa.int64())
    if len(bad):
        first = int(bad[0])
        errors.fail(row[bad], f"INFO END: {strs[first].as_py()!r} is not a valid Integer")
    has = ~np.asarray(vals.is_null().to_numpy(zero_copy_only=False), bool)
    return row[has], np.asarray(vals.filter(pa.array(has)).to_numpy(zero_copy_only=False), np.int64)


#: decode_lines works through big buffers in pieces of about this many bytes (cut at line ends): its
#: temporaries take ~16x the bytes they decode, so a 64 MB slice would otherwise peak near 1 GB
PIECE_BYTES = 8 << 20


def decode_lines(buf: np.ndarray, header: VCFHeader, *, include_sample_ids: bool = True, flatten_info: bool = True,
                 stringency: str = "STRICT", select: list[str] | None = None, uri: str = "",
                 offset: int = 0) -> pa.RecordBatch:
    """Decode whole VCF data lines (no header lines) into one batch with :func:`vcf_schema`'s columns.

    ``select`` names the top-level columns wanted, in output order; unselected ones are not parsed
    (genotypes, the costliest, only when asked); None or empty means every column (as
    ``Format.output_schema``). ``offset`` is the object offset of ``buf[0]``, so errors
    name the malformed line's offset in the object. Buffers over :data:`PIECE_BYTES` are decoded piece by
    piece (same result, bounded memory).
    """
    stringency = _check_stringency(stringency)
    schema = vcf_schema(header, include_sample_ids, flatten_info)
    names = list(select) if select else list(schema.names)
    unknown = [n for n in names if n not in schema.names]
    if unknown:
        raise OptionError(f"unknown VCF column(s) {unknown}; the columns are {', '.join(schema.names)}")
    out_schema = pa.schema([schema.field(n) for n in names])
    buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
    batches, skipped, first = [], 0, None
    for lo, hi in _pieces(buf):
        b, n, f = _decode_piece(buf[lo:hi], header, schema, out_schema, include_sample_ids, flatten_info,
                                stringency, uri, offset + lo)
        batches.append(b)
        skipped += n
        if first is None and f is not None:
            first = f
    if skipped and stringency == "LENIENT":
        log.warning("%s: skipped %d malformed VCF line(s); the first at byte %d", uri, skipped, first)
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches, out_schema).combine_chunks().to_batches()[0]


def _pieces(buf: np.ndarray) -> list[tuple[int, int]]:
    """``[lo, hi)`` pieces of about PIECE_BYTES, each cut just after a newline (one piece if small)."""
    n = len(buf)
    if n <= PIECE_BYTES:
        return [(0, n)]
    out, lo = [], 0
    while lo < n:
        if n - lo <= PIECE_BYTES:
            out.append((lo, n))
            break
        nl = np.flatnonzero(buf[lo + PIECE_BYTES:min(n, lo + 2 * PIECE_BYTES)] == NL)
        if not len(nl):  # a line longer than a piece: take it whole, up to its end
            more = np.flatnonzero(buf[lo + PIECE_BYTES:] == NL)
            hi = lo + PIECE_BYTES + int(more[0]) + 1 if len(more) else n
        else:
            hi = lo + PIECE_BYTES + int(nl[0]) + 1
        out.append((lo, hi))
        lo = hi
    return out


def _decode_piece(buf: np.ndarray, header: VCFHeader, schema: pa.Schema, out_schema: pa.Schema,
                  include_sample_ids: bool, flatten_info: bool, stringency: str, uri: str, offset: int
                  ) -> tuple[pa.RecordBatch, int, int | None]:
    """One piece -> (batch, malformed lines skipped, object offset of the first skipped or None)."""
    names = out_schema.names
    dec = _Decoder(buf, header, stringency, uri, offset)
    R = dec.R
    cols: dict[str, pa.Array] = {}
    want_info = [fd for fd in header.info if "INFO_" + fd.id in names] if flatten_info else []
    if want_info:
        for k, v in dec.info_columns(want_info).items():
            cols["INFO_" + k] = v
    for n in names:
        if n in cols:
            continue
        if n == "contigName":
            cols[n] = dec.string_col(0)
        elif n == "start":
            cols[n] = pa.array(dec.start())
        elif n == "end":
            cols[n] = pa.array(dec.end())
        elif n == "names":
            cols[n] = dec.list_col(2, _SEMI, "ID")
        elif n == "referenceAllele":
            cols[n] = dec.string_col(3)
        elif n == "alternateAlleles":
            cols[n] = dec.list_col(4, _COMMA, "ALT")
        elif n == "qual":
            cols[n] = dec.qual()
        elif n == "filters":
            cols[n] = dec.list_col(6, _SEMI, "FILTER")
        elif n == "splitFromMultiAllelic":
            cols[n] = pa.array(np.zeros(R, bool))
        elif n == "attributes":
            cols[n] = dec.attributes()
        elif n == "genotypes":
            cols[n] = dec.genotypes(schema.field("genotypes").type, include_sample_ids)
    if "start" not in names:
        dec.start()  # a non-numeric POS makes the line malformed even when POS is not selected
    batch = pa.RecordBatch.from_arrays([cols[n] for n in names], schema=out_schema)
    bad = dec.errors.bad
    nbad = int(bad.sum())
    if nbad:
        batch = batch.filter(pa.array(~bad))
    firsts = [dec.rows.first_skipped] if dec.rows.skipped else []
    if nbad:
        firsts.append(int(dec.rows.starts[np.argmax(bad)]))
    return batch, nbad + dec.rows.skipped, (offset + min(firsts)) if firsts else None


def positions(buf: np.ndarray, uri: str = "", offset: int = 0) -> tuple[list[str] | pa.Array, np.ndarray, np.ndarray]:
    """Per data line: contigName (Arrow strings), start (POS-1) and end (start+len(REF), or INFO END).

    For index statistics, so it reads only the first 8 columns' boundaries and looks for ``END=`` without
    splitting INFO. Malformed lines (fewer than 8 columns, bad POS or END) raise :class:`FormatError`.
    """
    B = _Bytes(buf)
    rows = _Rows(B, VCFHeader((), (), (), ()), lambda st: _Errors("STRICT", uri, offset, st), "STRICT", uri, offset,
                 need_columns=False)
    errors = rows.errors
    s, e = rows.col(1)
    strs = B.strings(s, e, B.missing(s, e))
    vals, bad = _cast_checked(strs, pa.int64())
    nulls = np.flatnonzero(np.asarray(vals.is_null().to_numpy(zero_copy_only=False), bool))
    badrows = np.union1d(bad, nulls)
    if len(badrows):
        errors.fail(badrows, lambda r: f"POS {_show(B, int(s[r]), int(e[r]))} is not an integer")
    start = np.asarray(vals.to_numpy(zero_copy_only=False), np.int64) - 1
    rs, re_ = rows.col(3)
    end = start + (re_ - rs)
    er, ev = _info_end(B, rows, errors)
    if len(er):
        end[er] = ev
    cs, ce = rows.col(0)
    return B.strings(cs, ce), start, end


__all__ = ["FieldDef", "VCFHeader", "vcf_schema", "decode_lines", "positions", "STRINGENCIES"]
