"""imzML mass-spectrometry images: one row per spectrum (pixel), read from the ``.ibd`` beside the ``.imzML``.

An imzML dataset is two files with one stem: the ``.imzML`` (XML metadata: one ``<spectrum>`` per pixel with its
coordinates and where its arrays lie) and the ``.ibd`` (binary: a 16-byte UUID, then the arrays). The object a
read names is the ``.imzML``; its ``.ibd`` (or ``.IBD``) is found beside it, and listing a folder never returns
``.ibd`` files as objects of their own.

Columns: ``index`` (long: the spectrum's 0-based position in the XML), ``x``, ``y``, ``z`` (int: the pixel,
IMS:1000050/51/52, 1-based as written; ``z`` is 1 when the file gives none, as pyimzML reports it, so the
column is never null), ``mz`` (array<double>: m/z values, widened to double whatever their storage) and
``intensity`` (array of the stored type: float for 32-bit floats, double for 64-bit, int/bigint for 32/64-bit
integers, tinyint/smallint for 8/16-bit integers; 16-bit floats are widened to float, which Spark lacks). The
intensity type comes from the first object of a read; objects whose intensities decode to another type must
be read separately.

**Continuous mode** (IMS:1000030) stores one m/z axis that every spectrum shares; the ``mz`` column then holds
that same array in every row, which costs as much as the intensities themselves. ``mzColumn=false`` leaves
``mz`` out of the schema (as does ``columns=index,x,y,z,intensity``, in either mode), and
:func:`imzml_mz_axis` returns the shared axis once, as a numpy array, from the index and one ranged read::

    df = spark.read.format("dataplug").option("mzColumn", "false").load("s3://lab/run1.imzML")
    axis = pyspark_dataplug.imzml_mz_axis("s3://lab/run1.imzML")   # float64 numpy array

Whatever the declared mode, a file whose spectra all point at one m/z array is read as sharing it (its bytes
are read once per slice), and one whose spectra point at different arrays reads each spectrum's own.

**The index** is the XML parsed once, streamed through expat in 4 MiB ranged reads (a big imzML is hundreds of
MB of XML: no DOM is ever built), with referenceable parameter groups resolved (a local cvParam overrides the
group's for the same kind of term: data type, compression, array role, or the same accession). Per spectrum it
holds ``index``, ``x``, ``y``, ``z`` and, for the m/z and intensity arrays, ``offset``, ``length`` (values,
IMS:1000103) and ``encoded_length`` (bytes in the ``.ibd``, IMS:1000104). Its attributes hold the mode, each
array's data type and compression (every spectrum must agree: one schema per file), the UUID, and the ``.ibd``'s
URI, size and ETag. The build fails, naming the object and what to do, when the ``.ibd`` is missing (both names
tried are named), when its first 16 bytes are not the UUID the XML declares (IMS:1000080), when an array lies past
the end of the ``.ibd`` (truncated, or not this XML's) or overlaps its UUID, when an uncompressed array's
encoded length is not its length times the value size, or when the XML is malformed or holds a DTD entity
declaration (refused: no entity expansion). Offsets written as signed 32-bit numbers by some exporters (negative
past 2 GiB) are unwrapped in file order.

Data types (imzML 1.1 and the PSI-MS ontology): MS:1000521 32-bit float, MS:1000523 64-bit float, MS:1000519 and
IMS:1000141 32-bit integer, MS:1000522 and IMS:1000142 64-bit integer, MS:1000520 16-bit float, IMS:1100000 and
IMS:1100001 8/16-bit integer. Where a cvParam's accession and its name disagree on the data type (known exporter
bugs, e.g. MS:1000523 named "32-bit float"), the name wins, as pyimzML reads it. Compression: MS:1000576 none,
MS:1000574 zlib; MS-Numpress and the others are refused at build, by name. Values are little-endian (imzML 1.1).

**Slices and strategies.** ``spectra`` (default) cuts the spectra, in file order, into runs of equal counts;
``bytes`` into runs of equal encoded bytes (compressed or processed files vary per spectrum); ``tiles`` groups
spectra by square tiles of ``tileSize`` pixels (tile ``(tx, ty)`` holds ``x`` in ``[tx*T + 1, (tx+1)*T]`` and
the same in ``y``), tiles in row-major order, and cuts only between tiles, at the boundary nearest to equal
spectrum counts: a slice holds whole tiles, every spectrum is in exactly one. Within a slice rows come in file
order. A slice reads the byte spans of its spectra's arrays, one ranged read per run whose gaps are under
``maxGap`` bytes (default 1 MiB); a shared m/z array is one more small range, read once per slice. Decoding
streams each range in pieces and yields a record batch per ~32 MB of decoded values, so a task holds a few
pieces and one batch, not its slice. Every range into the ``.ibd`` carries its indexed ETag: a rewritten
``.ibd`` fails the read with :class:`~pyspark_dataplug.errors.StaleIndexError`. zlib arrays are decompressed and
their decoded size checked against the index, so a corrupt array is an error naming the spectrum.

**Pruning.** ``bbox`` (``xmin,ymin,xmax,ymax`` in pixels, closed; or ``xmin,ymin,zmin,xmax,ymax,zmax``) keeps
the spectra inside the box, from the index alone: only their bytes are read and only they are returned, so a
slice still knows its exact row count. Comparisons on ``x``, ``y`` and ``z`` that Spark pushes
(``spark.sql.python.filterPushdown.enabled``) prune the same way; Spark applies them to the rows anyway.

**Without an index** (``missingIndex=scan``) a slice reads the whole XML and streams the whole ``.ibd``.

**Speed** (``benchmarks/imzml_decode.py``, 2-core shared VM, one process, 20,000 continuous uncompressed spectra of
2,000 points): slices decode 185k spectra/s with ``mzColumn=false`` and 144k with the repeated ``mz`` column,
against 99k for a pyimzML ``getspectrum`` loop (which builds no Arrow): back-to-back arrays are copied in runs of
up to 4 MiB, not one by one (zlib and processed files go spectrum by spectrum). The index build is bound by the XML
parse, at pyimzML's pace: 5-10k spectra/s per task (expat calls Python for each of ~25 elements per spectrum).
"""

from __future__ import annotations

import base64
import zlib
from array import array
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_size, by_strategy
from ..errors import FormatError, IndexFormatError, OptionError
from ..options import Opt
from ..slices import ByteRange, RangeTaker, Slice
from ..storage import get_storage
from ._base import Format
from ._spatial import Box, box_from_filters, parse_bbox

if TYPE_CHECKING:
    import pyarrow as pa

    from ..index.store import Index
    from ..slices import RangeReader
    from ..storage import ObjectInfo, StorageOptions

#: XML bytes read (and parsed) at a time by the index build
READ_BYTES = 4 << 20
#: decoded bytes per record batch: a task holds about one batch plus a few pieces of its ranges
BATCH_BYTES = 32 << 20
#: most bytes of back-to-back uncompressed arrays copied at once (a run straddling pieces is joined first)
RUN_BYTES = 4 << 20
#: size of the UUID that starts every .ibd
UUID_BYTES = 16

#: data-type terms -> numpy type code (little-endian); see the module docstring for the sources
DTYPES = {"MS:1000521": "f4", "MS:1000523": "f8", "MS:1000519": "i4", "IMS:1000141": "i4", "MS:1000522": "i8",
          "IMS:1000142": "i8", "MS:1000520": "f2", "IMS:1100000": "i1", "IMS:1100001": "i2"}
DTYPE_NAMES = {"32-bit float": "f4", "64-bit float": "f8", "32-bit integer": "i4", "64-bit integer": "i8",
               "16-bit float": "f2", "8-bit integer": "i1", "16-bit integer": "i2"}
#: how each stored type is returned (Spark has no half float)
OUTPUT_TYPES = {"f2": "float32", "f4": "float32", "f8": "float64", "i1": "int8", "i2": "int16", "i4": "int32",
                "i8": "int64"}
#: compression terms; None: supported
COMPRESSIONS = {"MS:1000576": "none", "MS:1000574": "zlib", "MS:1002312": "MS-Numpress linear prediction",
                "MS:1002313": "MS-Numpress positive integer", "MS:1002314": "MS-Numpress short logged float",
                "MS:1002746": "MS-Numpress linear prediction + zlib",
                "MS:1002747": "MS-Numpress positive integer + zlib",
                "MS:1002748": "MS-Numpress short logged float + zlib", "MS:1003088": "truncation + zlib",
                "MS:1003089": "truncation, delta prediction + zlib",
                "MS:1003090": "truncation, linear prediction + zlib", "IMS:1005001": "xz", "IMS:1005002": "lz4",
                "IMS:1005003": "zstd"}
SUPPORTED_COMPRESSIONS = ("none", "zlib")
ROLES = {"MS:1000514": "mz", "MS:1000515": "intensity"}
#: terms whose value the index keeps, by key
VALUES = {"IMS:1000102": "offset", "IMS:1000103": "length", "IMS:1000104": "encoded_length",
          "IMS:1000101": "external", "IMS:1000050": "x", "IMS:1000051": "y", "IMS:1000052": "z"}
MODES = {"IMS:1000030": "continuous", "IMS:1000031": "processed"}
#: scan settings worth keeping in the index attributes (image size and pixel size)
SETTINGS = {"IMS:1000042": "max count of pixels x", "IMS:1000043": "max count of pixels y",
            "IMS:1000044": "max dimension x", "IMS:1000045": "max dimension y", "IMS:1000046": "pixel size x",
            "IMS:1000047": "pixel size y"}
#: columns of the index table, in order; the per-spectrum fields of a slice's context come from them
INDEX_COLUMNS = ("index", "x", "y", "z", "mz_offset", "mz_length", "mz_encoded_length", "intensity_offset",
                 "intensity_length", "intensity_encoded_length")
_INT32_COLUMNS = ("x", "y", "z")
_HOLDERS = frozenset(("referenceableParamGroup", "fileContent", "scanSettings", "spectrum", "scan", "binaryDataArray"))


# -- the XML -----------------------------------------------------------------------------------------------------
class _FirstSpectrum(Exception):
    """Stops a parse once the first spectrum is known (learning the schema from an object's first bytes)."""


def _terms(params: list[tuple[str, str, str]]) -> dict[str, str]:
    """cvParams -> what they say, keyed by kind of term, so a later one overrides an earlier one of its kind."""
    out: dict[str, str] = {}
    for acc, value, name in params:
        if acc in VALUES:
            out[VALUES[acc]] = value
        elif acc in DTYPES:
            out["dtype"] = DTYPE_NAMES.get(name.strip().lower(), DTYPES[acc])
        elif acc in COMPRESSIONS:
            out["compression"] = COMPRESSIONS[acc]
        elif acc in ROLES:
            out["role"] = ROLES[acc]
        elif acc in MODES:
            out["mode"] = MODES[acc]
        elif acc == "IMS:1000080":
            out["uuid"] = value
        elif acc in ("IMS:1000090", "IMS:1000091"):
            out["md5" if acc == "IMS:1000090" else "sha1"] = value
        elif acc in SETTINGS:
            out[SETTINGS[acc]] = value
    return out


class ImzmlParser:
    """The spectra of an imzML document, fed in pieces (``feed``) to expat: no tree, constant memory per spectrum.

    Only the start and end of elements matter: each holder of cvParams (a parameter group, the file content, a
    spectrum, its scan, its binary data arrays) collects the cvParams and group references that are its direct
    children, and is resolved when it ends. Spectra are appended to compact ``array`` columns.
    """

    def __init__(self, uri: str, first_only: bool = False) -> None:
        from xml.parsers import expat

        self.uri = uri
        self.first_only = first_only
        self.parser = expat.ParserCreate()
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.EntityDeclHandler = self._entity
        self.depth = 0
        self.stack: list[list[Any]] = []  # [depth, kind, cvParams, group refs, attributes, children]
        self.groups: dict[str, dict[str, str]] = {}
        self._merged: dict[tuple[str, ...], dict[str, str]] = {}
        self.file: dict[str, str] = {}
        self.settings: dict[str, str] = {}
        self.arrays: dict[str, dict[str, str]] = {}  # role -> dtype and compression of the first spectrum
        self.columns: dict[str, array] = {c: array("q") for c in INDEX_COLUMNS if c != "index"}
        self.missing_encoded = {"mz": False, "intensity": False}
        self.count = 0
        self.done = False

    # expat callbacks ---------------------------------------------------------------------------------------
    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if ":" in name:
            name = name.rpartition(":")[2]
        if name == "cvParam":
            if self.stack and self.stack[-1][0] == self.depth - 1:
                self.stack[-1][2].append((attrs.get("accession", ""), attrs.get("value", ""), attrs.get("name", "")))
        elif name == "referenceableParamGroupRef":
            if self.stack and self.stack[-1][0] == self.depth - 1:
                self.stack[-1][3].append(attrs.get("ref", ""))
        elif name in _HOLDERS:
            self.stack.append([self.depth, name, [], [], attrs, [], self.parser.CurrentByteIndex])

    def _end(self, name: str) -> None:
        if self.stack and self.stack[-1][0] == self.depth:
            holder = self.stack.pop()
            kind = holder[1]
            if kind == "binaryDataArray" or kind == "scan":
                if self.stack and self.stack[-1][1] == "spectrum":
                    self.stack[-1][5].append((kind, self._resolve(holder)))
            elif kind == "spectrum":
                self._spectrum(holder)
            elif kind == "referenceableParamGroup":
                self.groups[holder[4].get("id", "")] = _terms(holder[2])
                self._merged.clear()
            elif kind == "fileContent":
                self.file = self._resolve(holder)
            elif kind == "scanSettings":
                self.settings.update({k: v for k, v in self._resolve(holder).items() if k in SETTINGS.values()})
        self.depth -= 1

    def _entity(self, *args: Any) -> None:
        raise FormatError(self.uri, self.parser.CurrentByteIndex, "the XML declares an entity (a DTD): imzML needs "
                                                                  "none, and entity expansion is refused")

    # resolution ----------------------------------------------------------------------------------------------
    def _resolve(self, holder: list[Any]) -> dict[str, str]:
        refs = tuple(holder[3])
        merged = self._merged.get(refs)
        if merged is None:
            merged = {}
            for ref in refs:
                if ref not in self.groups:
                    raise FormatError(self.uri, holder[6], f"a <{holder[1]}> refers to the parameter group {ref!r}, "
                                                           "which the file does not define (before its use)")
                merged.update(self.groups[ref])
            self._merged[refs] = merged
        if not holder[2]:
            return merged
        return {**merged, **_terms(holder[2])}

    def _spectrum(self, holder: list[Any]) -> None:
        i = self.count
        at = holder[6]
        own = self._resolve(holder)
        pos: dict[str, str] = {}
        arrays: dict[str, dict[str, str]] = {}
        for kind, terms in holder[5]:
            if kind == "scan":
                if "x" not in pos and "x" in terms:
                    pos = terms
            elif terms.get("role") in ("mz", "intensity") and terms["role"] not in arrays:
                arrays[terms["role"]] = terms
        if "x" not in pos:
            pos = own
        try:
            x, y = int(pos["x"]), int(pos["y"])
            z = int(pos["z"]) if pos.get("z") else 1
        except KeyError as e:
            raise FormatError(self.uri, at, f"spectrum {i} has no position {e.args[0]} (IMS:10000"
                                            f"{50 + 'xyz'.index(e.args[0])}); an imzML spectrum needs x and y") from e
        except ValueError:  # written as 12.0
            x = _whole(pos.get("x"), self.uri, at, f"spectrum {i}'s x")
            y = _whole(pos.get("y"), self.uri, at, f"spectrum {i}'s y")
            z = _whole(pos.get("z"), self.uri, at, f"spectrum {i}'s z") if pos.get("z") else 1
        cols = self.columns
        cols["x"].append(x)
        cols["y"].append(y)
        cols["z"].append(z)
        for role in ("mz", "intensity"):
            terms = arrays.get(role)
            if terms is None:
                raise FormatError(self.uri, at, f"spectrum {i} has no {'m/z' if role == 'mz' else role} array "
                                                f"({'MS:1000514' if role == 'mz' else 'MS:1000515'})")
            self._array(i, at, role, terms)
        self.count += 1
        if self.first_only:
            self.done = True
            raise _FirstSpectrum

    def _array(self, i: int, at: int, role: str, terms: dict[str, str]) -> None:
        first = self.arrays.get(role)
        what = f"spectrum {i}'s {'m/z' if role == 'mz' else role} array"
        if first is None:
            if "dtype" not in terms:
                raise FormatError(self.uri, at, f"{what} names no data type (e.g. MS:1000521 32-bit float)")
            compression = terms.get("compression", "none")
            if compression not in SUPPORTED_COMPRESSIONS:
                raise FormatError(self.uri, at, f"{what} uses {compression} compression; supported: no compression "
                                                "(MS:1000576) and zlib (MS:1000574). Convert the file (e.g. with "
                                                "pyimzML) to read it")
            if terms.get("external", "true").strip().lower() not in ("true", "1"):
                raise FormatError(self.uri, at, f"{what} is not external data (IMS:1000101): imzML keeps arrays in "
                                                "the .ibd; a plain mzML is not supported")
            first = self.arrays[role] = {"dtype": terms["dtype"], "compression": compression}
        elif terms.get("dtype") != first["dtype"] or terms.get("compression", "none") != first["compression"]:
            raise FormatError(self.uri, at, f"{what} is {terms.get('dtype')}/{terms.get('compression', 'none')}, "
                                            f"spectrum 0's is {first['dtype']}/{first['compression']}: a file whose "
                                            "spectra mix data types or compressions is not supported")
        cols = self.columns
        try:
            cols[f"{role}_offset"].append(int(terms["offset"]))
            cols[f"{role}_length"].append(int(terms["length"]))
        except (KeyError, ValueError) as e:
            raise FormatError(self.uri, at, f"{what} has no valid external offset (IMS:1000102) and array length "
                                            "(IMS:1000103)") from e
        enc = terms.get("encoded_length")
        if enc in (None, ""):
            self.missing_encoded[role] = True
            cols[f"{role}_encoded_length"].append(-1)
        else:
            cols[f"{role}_encoded_length"].append(_whole(enc, self.uri, at, f"{what}'s encoded length"))

    # driving --------------------------------------------------------------------------------------------------
    def feed(self, data: bytes | memoryview, final: bool = False) -> None:
        from xml.parsers import expat

        try:
            self.parser.Parse(bytes(data), final)
        except _FirstSpectrum:
            return
        except expat.ExpatError as e:
            raise FormatError(self.uri, self.parser.ErrorByteIndex, f"not valid XML ({expat.errors.messages[e.code]}, "
                                                                    f"line {e.lineno}): truncated or not an imzML "
                                                                    "file") from e

    def finish(self) -> dict[str, Any]:
        """The parsed document: spectra columns (numpy, file order) and what the file declares."""
        if not self.arrays or self.count == 0:
            raise FormatError(self.uri, None, "holds no spectrum: not an imzML file, or an empty one")
        cols = {k: np.frombuffer(v, dtype=np.int64) if len(v) else np.zeros(0, np.int64)
                for k, v in self.columns.items()}
        cols["index"] = np.arange(self.count, dtype=np.int64)
        for role in ("mz", "intensity"):
            dt = np.dtype(self.arrays[role]["dtype"])
            off = cols[f"{role}_offset"]
            if (off < 0).any():  # signed 32-bit offsets: unwrap each time they turn negative, in file order
                neg = off < 0
                turns = neg & ~np.concatenate(([False], neg[:-1]))
                cols[f"{role}_offset"] = off + np.cumsum(turns) * (1 << 32)
            enc = cols[f"{role}_encoded_length"]
            if self.missing_encoded[role]:
                if self.arrays[role]["compression"] != "none":
                    i = int(np.flatnonzero(enc < 0)[0])
                    raise FormatError(self.uri, None, f"spectrum {i}'s {role} array is compressed but has no encoded "
                                                      "length (IMS:1000104)")
                cols[f"{role}_encoded_length"] = np.where(enc < 0, cols[f"{role}_length"] * dt.itemsize, enc)
        return {"columns": cols, "arrays": self.arrays, "mode": self.file.get("mode"), "uuid": self.file.get("uuid"),
                "checksum": {k: self.file[k] for k in ("md5", "sha1") if k in self.file}, "settings": self.settings}


def _whole(value: Any, uri: str, at: int | None, what: str) -> int:
    """A whole number written as ``12`` or ``12.0``; anything else is an error naming it."""
    try:
        v = float(value)
        if v == int(v):
            return int(v)
    except (TypeError, ValueError, OverflowError):
        pass
    raise FormatError(uri, at, f"{what} is {value!r}, not a whole number")


def parse_imzml(uri: str, pieces: Iterator[bytes | memoryview]) -> dict[str, Any]:
    """Parse a whole imzML from consecutive pieces of its bytes (see :class:`ImzmlParser`)."""
    p = ImzmlParser(uri)
    for piece in pieces:
        p.feed(piece)
    p.feed(b"", final=True)
    return p.finish()


def check_layout(uri: str, doc: Mapping[str, Any], ibd: str, ibd_size: int, ibd_head: bytes) -> bool:
    """Check the XML against its ``.ibd`` (UUID, sizes, offsets); returns whether all spectra share one m/z array.

    Everything here is decided from the index and 16 bytes of the ``.ibd``, so a wrong or truncated ``.ibd``
    fails the build with a message that says which, rather than a read with wrong rows.
    """
    if len(ibd_head) < UUID_BYTES:
        raise FormatError(ibd, 0, f"holds {len(ibd_head)} bytes, less than the 16-byte UUID every .ibd starts with; "
                                  f"it is not the binary file of {uri}")
    declared = doc.get("uuid")
    if declared:
        hexa = "".join(c for c in declared.lower() if c in "0123456789abcdef")
        if hexa != ibd_head[:UUID_BYTES].hex():
            raise FormatError(ibd, 0, f"starts with UUID {ibd_head[:UUID_BYTES].hex()}, but {uri} declares "
                                      f"{declared} (IMS:1000080): the .ibd belongs to another imzML, or was "
                                      "rewritten without its XML")
    cols = doc["columns"]
    outside = []  # (first spectrum whose array lies outside the .ibd, role)
    for role in ("mz", "intensity"):
        off, enc, n = cols[f"{role}_offset"], cols[f"{role}_encoded_length"], cols[f"{role}_length"]
        bad = np.flatnonzero((off + enc > ibd_size) | ((off < UUID_BYTES) & (enc > 0)) | (n < 0) | (enc < 0))
        if len(bad):
            outside.append((int(bad[0]), role))
    if outside:
        i, role = min(outside)
        off, enc = int(cols[f"{role}_offset"][i]), int(cols[f"{role}_encoded_length"][i])
        where = "overlaps the .ibd's 16-byte UUID" if off < UUID_BYTES else f"ends past the end of {ibd} " \
            f"({ibd_size} bytes): the .ibd is truncated, or not this file's"
        raise FormatError(uri, None, f"spectrum {i}'s {'m/z' if role == 'mz' else role} array at offset {off} "
                                     f"({enc} bytes) {where}")
    for role in ("mz", "intensity"):
        off, enc, n = cols[f"{role}_offset"], cols[f"{role}_encoded_length"], cols[f"{role}_length"]
        info = doc["arrays"][role]
        label = "m/z" if role == "mz" else role
        if info["compression"] == "none":
            size = np.dtype(info["dtype"]).itemsize
            bad = np.flatnonzero(enc != n * size)
            if len(bad):
                i = int(bad[0])
                raise FormatError(uri, None, f"spectrum {i}'s {label} array holds {int(n[i])} values of "
                                             f"{size} bytes ({info['dtype']}) but its encoded length is "
                                             f"{int(enc[i])} bytes: the file's data type or lengths are wrong")
    mz = np.stack([cols["mz_offset"], cols["mz_length"], cols["mz_encoded_length"]], axis=1)
    return bool((mz == mz[0]).all())


def ibd_candidates(uri: str) -> list[str]:
    """The names the ``.ibd`` of ``uri`` may have: its stem plus ``.ibd``, then ``.IBD``."""
    name = uri.rsplit("/", 1)[-1]
    if name.lower().endswith(".imzml"):
        stem = uri[: -len(".imzml")]
    elif "." in name:
        stem = uri[: uri.rfind(".")]
    else:
        stem = uri
    return [stem + ".ibd", stem + ".IBD"]


def find_ibd(uri: str, storage: StorageOptions | None) -> ObjectInfo:
    """The ``.ibd`` beside an ``.imzML`` (its size and version), or an error naming both names tried."""
    from ..errors import ObjectNotFoundError

    names = ibd_candidates(uri)
    for name in names:
        try:
            return get_storage(name, storage).info(name)
        except ObjectNotFoundError:
            continue
    raise FormatError(uri, None, f"its binary file is missing: neither {names[0]} nor {names[1]} exists. An imzML "
                                 "is read with the .ibd of the same name beside it")


# -- the format ------------------------------------------------------------------------------------------------
class ImzML(Format):
    """Spectra of an imzML image as rows; see the module docstring for the columns and options.

    Examples
    --------
    >>> df = (spark.read.format("dataplug").option("bbox", "10,10,60,40").option("mzColumn", "false")
    ...       .load("s3://lab/brain.imzML"))  # doctest: +SKIP
    >>> from pyspark_dataplug import CloudObject
    >>> co = CloudObject.from_path("imzml", "brain.imzML", strategy="tiles")  # doctest: +SKIP
    >>> co.preprocess()  # doctest: +SKIP
    >>> first = co.partition(partition_tiles_batches, num_batches=8)[0].get()  # doctest: +SKIP
    """

    name: ClassVar[str] = "imzml"
    options: ClassVar[tuple[Opt, ...]] = (
        Opt("bbox", "str", None,
            doc="xmin,ymin,xmax,ymax (or xmin,ymin,zmin,xmax,ymax,zmax) in pixels, closed: read and return only the "
                "spectra inside it"),
        Opt("mzColumn", "bool", True,
            doc="return the mz column; false leaves it out (continuous files repeat one m/z axis in every row: get "
                "it once with pyspark_dataplug.imzml_mz_axis(path))"),
        Opt("tileSize", "int", 64, bounds=(1, 1 << 24),
            doc="side in pixels of the square tiles the 'tiles' strategy keeps whole"),
        Opt("maxGap", "size", 1 << 20, bounds=(0, 1 << 30),
            doc="bytes of unneeded spectra one ranged read may span rather than being split in two"),
    )
    strategies: ClassVar[dict[str, str]] = {
        "spectra": "equal numbers of spectra per slice (consecutive in file order)",
        "bytes": "equal encoded bytes per slice (consecutive in file order)",
        "tiles": "whole square tiles of tileSize pixels per slice, about equal spectra each",
    }

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        self.box: Box | None = parse_bbox(self.params["bbox"]) if self.params.get("bbox") else None
        self._memo: dict[tuple[int, str], tuple[Any, dict[str, np.ndarray]]] = {}

    # -- schema ----------------------------------------------------------------------------------------------
    def resolve(self, index: Index | None, head: bytes | None) -> dict[str, Any]:
        if index is not None:
            stored = _attrs(index)["arrays"]["intensity"]["dtype"]
        else:  # no index: the first spectrum of the first object's first bytes
            p = ImzmlParser("the first object", first_only=True)
            p.feed(head or b"")
            if not p.done:
                raise FormatError("the first object", None, f"no spectrum in its first {len(head or b'')} bytes, "
                                                            "read to learn the schema without an index; build its "
                                                            "index (dataplug index --format imzml)")
            stored = p.arrays["intensity"]["dtype"]
        return {"intensity_type": OUTPUT_TYPES[stored]}

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        kind = self.params.get("intensity_type")
        if kind is None:
            raise FormatError("?", None, "no imzML intensity type is known for this read (internal: resolve first)")
        fields = [pa.field("index", pa.int64()), pa.field("x", pa.int32()), pa.field("y", pa.int32()),
                  pa.field("z", pa.int32())]
        if self.params.get("mzColumn", True):
            fields.append(pa.field("mz", pa.list_(pa.float64())))
        fields.append(pa.field("intensity", pa.list_(pa.from_numpy_dtype(np.dtype(kind)))))
        return pa.schema(fields)

    def _wants(self) -> tuple[bool, bool]:
        """Whether rows need the m/z and the intensity arrays (the other columns come from the index)."""
        names = set(self.output_schema().names)
        return "mz" in names, "intensity" in names

    # -- index build: one task per object parses its XML -----------------------------------------------------
    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str,
                    storage: StorageOptions | None = None) -> list[dict[str, Any]]:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if head and not text.startswith(b"<"):
            raise FormatError(info.uri, 0, "does not start like XML: not an imzML file (an imzML read names the "
                                           ".imzML; its .ibd is found beside it)")
        return [{"uri": info.uri, "etag": info.etag, "size": info.size}]

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        uri, size, etag = task["uri"], int(task["size"]), task.get("etag")
        ibd = find_ibd(uri, storage)
        st = get_storage(uri, storage)
        doc = parse_imzml(uri, (st.read(uri, a, min(size, a + READ_BYTES), etag=etag)
                                for a in range(0, size, READ_BYTES)))
        head = get_storage(ibd.uri, storage).read(ibd.uri, 0, min(ibd.size, UUID_BYTES), etag=ibd.etag)
        shared = check_layout(uri, doc, ibd.uri, ibd.size, head)
        packed = {k: _pack(v.astype(np.int32 if k in _INT32_COLUMNS else np.int64))
                  for k, v in doc["columns"].items()}
        return [{"columns": packed, "arrays": doc["arrays"], "mode": doc["mode"], "uuid": doc["uuid"],
                 "checksum": doc["checksum"], "settings": doc["settings"], "shared_mz": shared,
                 "ibd": {"uri": ibd.uri, "size": ibd.size, "etag": ibd.etag}}]

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        (row,) = rows
        cols = {k: _unpack(v, np.int32 if k in _INT32_COLUMNS else np.int64) for k, v in row["columns"].items()}
        table = pa.table({k: pa.array(cols[k]) for k in INDEX_COLUMNS})
        n = len(cols["index"])
        arrays = row["arrays"]
        out_size = {r: np.dtype(OUTPUT_TYPES[arrays[r]["dtype"]]).itemsize for r in arrays}
        decoded = int(cols["intensity_length"].sum()) * out_size["intensity"] + int(cols["mz_length"].sum()) * 8
        extent = [int(cols[c].min()) for c in "xyz"] + [int(cols[c].max()) for c in "xyz"]
        attrs = {"imzml": {k: row[k] for k in ("arrays", "mode", "uuid", "checksum", "settings", "shared_mz", "ibd")},
                 "extent": extent}
        manifest = {"index_params": self.index_params(), "records": n, "uncompressed_size": decoded,
                    "mode": row["mode"], "attrs": attrs}
        return Index(manifest, {"spectra": table})

    # -- planning --------------------------------------------------------------------------------------------
    def _boxes(self) -> list[Box]:
        boxes = [self.box] if self.box is not None else []
        if self.params.get("pushed_box"):
            boxes.append(Box.from_json(self.params["pushed_box"]))
        return boxes

    def _selection(self, index: Index, strategy: str) -> dict[str, np.ndarray]:
        """The spectra a read returns (inside every box), in the strategy's order (file order, or by tile)."""
        key = (id(index), strategy)
        memo = self._memo.get(key)
        if memo is not None and memo[0] is index:
            return memo[1]
        try:
            t = index.tables["spectra"]
            sel = {c: t.column(c).to_numpy() for c in INDEX_COLUMNS}
        except KeyError as e:
            raise IndexFormatError(f"{index.source.uri}: its imzml index is damaged ({e}); rebuild it with: dataplug "
                                   f"index --force --format imzml {index.source.uri}") from e
        keep = np.ones(len(sel["index"]), dtype=bool)
        for b in self._boxes():
            keep &= ((sel["x"] >= b.xmin) & (sel["x"] <= b.xmax) & (sel["y"] >= b.ymin) & (sel["y"] <= b.ymax)
                     & (sel["z"] >= b.zmin) & (sel["z"] <= b.zmax))
        if not keep.all():
            sel = {c: v[keep] for c, v in sel.items()}
        if strategy == "tiles":
            side = int(self.params.get("tileSize") or 64)
            tx, ty = (sel["x"].astype(np.int64) - 1) // side, (sel["y"].astype(np.int64) - 1) // side
            order = np.lexsort((sel["index"], tx, ty))
            sel = {c: v[order] for c, v in sel.items()}
            tile = np.stack([ty[order], tx[order]], axis=1)
            sel["tile_start"] = np.concatenate(([True], (tile[1:] != tile[:-1]).any(axis=1))) if len(tile) else \
                np.zeros(0, dtype=bool)
        self._memo[key] = (index, sel)
        return sel

    def _unit_bytes(self, index: Index, sel: Mapping[str, np.ndarray]) -> np.ndarray:
        """Encoded bytes each spectrum makes a read fetch (at least 1, so empty spectra still count)."""
        want_mz, want_int = self._wants()
        nbytes = sel["intensity_encoded_length"] if want_int else np.zeros(len(sel["index"]), np.int64)
        if want_mz and not _attrs(index)["shared_mz"]:
            nbytes = nbytes + sel["mz_encoded_length"]
        return np.maximum(nbytes, 1)

    def units(self, index: Index, strategy: str) -> int:
        sel = self._selection(index, strategy)
        if strategy == "bytes":
            return int(self._unit_bytes(index, sel).sum())
        return len(sel["index"])

    def weight(self, index: Index) -> int:
        sel = self._selection(index, "spectra")
        want_mz, want_int = self._wants()
        size = np.dtype(self.params.get("intensity_type") or "float32").itemsize
        total = 20 * len(sel["index"])
        if want_int:
            total += int(sel["intensity_length"].sum()) * size
        if want_mz:
            total += int(sel["mz_length"].sum()) * 8
        return total

    def slices(self, index: Index, strategy: str, cuts: list[int],
               storage_options: StorageOptions) -> list[Slice | None]:
        a_ = _attrs(index)
        stored = a_["arrays"]["intensity"]["dtype"]
        if OUTPUT_TYPES[stored] != self.params.get("intensity_type"):
            raise OptionError(f"{index.source.uri}: its intensities are {OUTPUT_TYPES[stored]}, the first object's "
                              f"{self.params.get('intensity_type')}, so they cannot share one schema; read such "
                              "objects separately")
        sel = self._selection(index, strategy)
        n = len(sel["index"])
        if strategy == "spectra":
            ks = list(cuts)
        else:
            if strategy == "bytes":
                bounds = np.concatenate(([0], np.cumsum(self._unit_bytes(index, sel))))
                pos = np.arange(n + 1)
            else:  # tiles: spectrum counts, cut only where a tile starts
                starts = np.concatenate((np.flatnonzero(sel["tile_start"]), [n]))
                bounds = pos = starts
            c = np.asarray(cuts, dtype=np.int64)
            j = np.clip(np.searchsorted(bounds, c), 1, max(1, len(bounds) - 1))
            left, right = j - 1, np.minimum(j, len(bounds) - 1)
            near = np.where(c - bounds[left] <= bounds[right] - c, pos[left], pos[right])
            near[0], near[-1] = 0, n
            ks = [int(v) for v in np.maximum.accumulate(near)]
        out: list[Slice | None] = []
        for a, b in zip(ks, ks[1:], strict=False):
            if b <= a:
                out.append(None)
                continue
            part = {c: v[a:b] for c, v in sel.items() if c in INDEX_COLUMNS}
            if strategy == "tiles":
                order = np.argsort(part["index"], kind="stable")
                part = {c: v[order] for c, v in part.items()}
            ranges, context = self._plan(a_, part, a_["ibd"])
            out.append(Slice(format=self.name, uri=index.source.uri, etag=index.source.etag, ranges=tuple(ranges),
                             params=self.params, context=context, storage=storage_options, rows=b - a))
        return out

    def _plan(self, a_: Mapping[str, Any], part: Mapping[str, np.ndarray], ibd: Mapping[str, Any],
              whole: int | None = None) -> tuple[list[ByteRange], dict[str, Any]]:
        """Ranges and decoding context for spectra ``part`` (file order); ``whole``: read from that range only.

        Segments (one array of one spectrum) are sorted by offset and coalesced over gaps of up to ``maxGap``;
        each spectrum then points at its arrays as (range, offset in the range, bytes, values).
        """
        want_mz, want_int = self._wants()
        shared = bool(a_["shared_mz"])
        n = len(part["index"])
        roles = [r for r, w in (("mz", want_mz and not shared), ("intensity", want_int)) if w]
        ranges: list[ByteRange] = []
        context: dict[str, Any] = {"arrays": a_["arrays"], "ibd": ibd["uri"], "shared_mz": None}
        if want_mz and shared and n:
            off, enc, length = (int(part[f"mz_{k}"][0]) for k in ("offset", "encoded_length", "length"))
            if whole is None:
                ranges.append(ByteRange(ibd["uri"], off, off + enc, etag=ibd["etag"]))
                context["shared_mz"] = [0, 0, enc, length]
            else:
                context["shared_mz"] = [whole, off, enc, length]
        segs = np.zeros((len(roles), 4, n), dtype=np.int64)  # per role: range, offset in it, bytes, values
        seg_off = np.concatenate([part[f"{r}_offset"] for r in roles]) if roles else np.zeros(0, np.int64)
        seg_enc = np.concatenate([part[f"{r}_encoded_length"] for r in roles]) if roles else np.zeros(0, np.int64)
        rng = np.full(len(seg_off), -1, np.int64)
        rel = np.zeros(len(seg_off), np.int64)
        if whole is not None:
            rng[:], rel[:] = whole, seg_off
        else:
            real = np.flatnonzero(seg_enc > 0)
            if len(real):
                order = real[np.argsort(seg_off[real], kind="stable")]
                s, e = seg_off[order], seg_off[order] + seg_enc[order]
                reach = np.maximum.accumulate(e)
                gap = int(self.params.get("maxGap", 1 << 20))
                new = np.concatenate(([True], s[1:] - reach[:-1] > gap))
                rid = np.cumsum(new) - 1
                starts = s[new]
                ends = np.maximum.reduceat(e, np.flatnonzero(new))
                base = len(ranges)
                ranges.extend(ByteRange(ibd["uri"], int(lo), int(hi), etag=ibd["etag"])
                              for lo, hi in zip(starts, ends, strict=True))
                rng[order] = rid + base
                rel[order] = s - starts[rid]
        for k, role in enumerate(roles):
            sl = slice(k * n, (k + 1) * n)
            segs[k] = [rng[sl], rel[sl], seg_enc[sl], part[f"{role}_length"]]
        # decoding reads each spectrum's arrays in turn (m/z first): it streams when, range by range, that order
        # never goes back (pyimzML and most writers write spectra in order), else it reads ranges whole
        takes = segs.transpose(2, 0, 1).reshape(-1, 4)
        takes = takes[takes[:, 2] > 0]
        stream = True
        if context["shared_mz"] is not None and whole is not None:
            takes = np.concatenate(([context["shared_mz"]], takes))
        for r in np.unique(takes[:, 0]):
            t = takes[takes[:, 0] == r]
            if len(t) > 1 and (t[1:, 1] < t[:-1, 1] + t[:-1, 2]).any():
                stream = False
                break
        context.update(roles=roles, stream=stream, spectra=_pack(np.concatenate(
            [np.stack([part["index"], part["x"], part["y"], part["z"]]).astype(np.int64),
             segs.reshape(-1, n)])))
        return ranges, context

    def extent(self, index: Index, slice_: Slice) -> tuple[float, float, float, float] | None:
        """The pixels of the slice's spectra (their x, y travel in its context), each drawn as a unit square."""
        ctx = slice_.context
        if ctx.get("scan") or "spectra" not in ctx:
            return None
        packed = _unpack(ctx["spectra"], np.int64)
        n = len(packed) // (4 + 4 * len(ctx["roles"]))
        if n == 0:
            return None
        x, y = packed.reshape(-1, n)[1:3]
        return float(x.min()) - 0.5, float(y.min()) - 0.5, float(x.max()) + 0.5, float(y.max()) + 0.5

    def scan_slice(self, info: ObjectInfo, storage_options: StorageOptions) -> Slice:
        ibd = find_ibd(info.uri, storage_options)
        ranges = (ByteRange(info.uri, 0, info.size), ByteRange(ibd.uri, 0, ibd.size, etag=ibd.etag))
        return Slice(format=self.name, uri=info.uri, etag=info.etag, ranges=ranges, params=self.params,
                     context={"scan": True}, storage=storage_options)

    # -- decoding --------------------------------------------------------------------------------------------
    def decode(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        ctx = slice_.context
        if ctx.get("scan"):
            yield from self._decode_scan(slice_, data)
            return
        takes = RangeTaker(data, bool(ctx.get("stream", True)), "an array")
        try:
            yield from self._decode(slice_.uri, ctx, takes.take)
        finally:
            takes.close()

    def _decode_scan(self, slice_: Slice, data: RangeReader) -> Iterator[pa.RecordBatch]:
        """A whole object without an index: its XML parsed here, its ``.ibd`` streamed (``missingIndex=scan``)."""
        uri, ibd = slice_.uri, slice_.ranges[1]
        doc = parse_imzml(uri, iter([data.read(0)]))
        if OUTPUT_TYPES[doc["arrays"]["intensity"]["dtype"]] != self.params.get("intensity_type"):
            raise OptionError(f"{uri}: its intensities are {OUTPUT_TYPES[doc['arrays']['intensity']['dtype']]}, "
                              f"the first object's {self.params.get('intensity_type')}; read such objects separately")
        takes = RangeTaker(data, True, "an array")
        try:
            shared = check_layout(uri, doc, ibd.uri, ibd.size, bytes(takes.take(1, 0, min(ibd.size, UUID_BYTES))))
            cols = doc["columns"]
            keep = np.ones(len(cols["index"]), dtype=bool)
            for b in self._boxes():
                keep &= ((cols["x"] >= b.xmin) & (cols["x"] <= b.xmax) & (cols["y"] >= b.ymin)
                         & (cols["y"] <= b.ymax) & (cols["z"] >= b.zmin) & (cols["z"] <= b.zmax))
            part = {c: v[keep] for c, v in cols.items()}
            a_ = {"arrays": doc["arrays"], "shared_mz": shared}
            _, ctx = self._plan(a_, part, {"uri": ibd.uri, "etag": ibd.etag}, whole=1)
            takes.stream = ctx["stream"]
            yield from self._decode(uri, ctx, takes.take)
        finally:
            takes.close()

    def _decode(self, uri: str, ctx: Mapping[str, Any], take: Callable[[int, int, int], Any]
                ) -> Iterator[pa.RecordBatch]:
        """Record batches of about :data:`BATCH_BYTES` decoded values, spectra in the slice's (file) order."""
        import pyarrow as pa

        roles = list(ctx["roles"])
        packed = _unpack(ctx["spectra"], np.int64)
        n = len(packed) // (4 + 4 * len(roles))
        if n == 0:
            return
        packed = packed.reshape(-1, n)
        meta = packed[:4]
        segs = {r: packed[4 + 4 * k: 8 + 4 * k] for k, r in enumerate(roles)}
        schema = self.output_schema()
        names = set(schema.names)
        arrays = ctx["arrays"]
        ibd = ctx["ibd"]
        out_type = {r: np.dtype(OUTPUT_TYPES[arrays[r]["dtype"]]) if r == "intensity" else np.dtype("f8")
                    for r in ("mz", "intensity")}
        shared = None
        if "mz" in names and ctx.get("shared_mz") is not None:
            r, rel, enc, length = ctx["shared_mz"]
            shared = _values(take(r, rel, enc) if enc else b"", arrays["mz"], length, ibd, rel,
                             f"the m/z array {uri} shares").astype(np.float64, copy=False)
        per = np.full(n, 20, np.int64)
        for r in roles:
            per += segs[r][3] * out_type[r].itemsize
        if shared is not None:
            per += len(shared) * 8
        cum = np.concatenate(([0], np.cumsum(per)))
        start = 0
        while start < n:
            stop = max(start + 1, int(np.searchsorted(cum, cum[start] + BATCH_BYTES, "right")) - 1)
            cols: dict[str, Any] = {
                "index": pa.array(meta[0, start:stop], pa.int64()), "x": pa.array(meta[1, start:stop], pa.int32()),
                "y": pa.array(meta[2, start:stop], pa.int32()), "z": pa.array(meta[3, start:stop], pa.int32()),
            }
            if shared is not None:
                k = stop - start
                offsets = np.arange(k + 1, dtype=np.int64) * len(shared)
                cols["mz"] = _list_array(offsets, np.tile(shared, k))
            # spectrum by spectrum, m/z then intensity: the order in which planning checked that ranges stream
            offsets = {r: np.concatenate(([0], np.cumsum(segs[r][3, start:stop]))) for r in roles}
            values = {r: np.empty(int(offsets[r][-1]), dtype=out_type[r]) for r in roles}
            if len(roles) == 1 and arrays[roles[0]]["compression"] == "none":
                role = roles[0]  # one uncompressed array per spectrum: runs of them back to back, one copy each
                _copy_runs(uri, ibd, role, segs[role][:, start:stop], meta[0, start:stop], arrays[role],
                           values[role], take)
                cols[role] = _list_array(offsets[role], values[role])
                yield pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)
                start = stop
                continue
            parts = [(r, segs[r][:, start:stop].T.tolist(), offsets[r], values[r]) for r in roles]
            for j in range(stop - start):
                for role, seg, offs, vals in parts:
                    r, rel, enc, length = seg[j]
                    if length or enc:
                        vals[offs[j]: offs[j + 1]] = _values(
                            take(r, rel, enc) if enc else b"", arrays[role], length, ibd, None,
                            f"spectrum {int(meta[0, start + j])} of {uri}: its {'m/z' if role == 'mz' else role} array")
            for role in roles:
                cols[role] = _list_array(offsets[role], values[role])
            yield pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)
            start = stop

    # -- pushed filters ----------------------------------------------------------------------------------------
    @staticmethod
    def push_filters(filters: list[Any]) -> dict[str, Any]:
        """The box implied by comparisons on ``x``, ``y`` and ``z``: the spectra outside it are never read."""
        box = box_from_filters(filters, {"x": "x", "y": "y", "z": "z"})
        return {"pushed_box": box.to_json()} if box is not None else {}


def _attrs(index: Index) -> dict[str, Any]:
    try:
        return index.attrs["imzml"]
    except KeyError as e:
        raise IndexFormatError(f"{index.source.uri}: its imzml index has no imzML attributes; rebuild it with: "
                               f"dataplug index --force --format imzml {index.source.uri}") from e


def _values(raw: bytes | memoryview, info: Mapping[str, str], length: int, ibd: str, at: int | None,
            what: str) -> np.ndarray:
    """One array's values from its bytes: decompressed when zlib, its decoded size checked against the index."""
    dt = np.dtype(info["dtype"]).newbyteorder("<")
    if info["compression"] == "zlib":
        try:
            raw = zlib.decompress(raw)
        except zlib.error as e:
            raise FormatError(ibd, at, f"{what} is not valid zlib data ({e}): the .ibd changed or is corrupt") from e
    if len(raw) != length * dt.itemsize:
        raise FormatError(ibd, at, f"{what} decodes to {len(raw)} bytes where its index promises {length} values of "
                                   f"{dt.itemsize} bytes: the .ibd changed or is corrupt")
    return np.frombuffer(raw, dtype=dt)


def _copy_runs(uri: str, ibd: str, role: str, seg: np.ndarray, index: np.ndarray, info: Mapping[str, str],
               out: np.ndarray, take: Callable[[int, int, int], Any]) -> None:
    """Uncompressed arrays of consecutive spectra into ``out``: each run of arrays that follow one another in a
    range (the usual layout) is one take and one copy of up to :data:`RUN_BYTES`, not one per spectrum."""
    r, rel, enc, length = seg
    dt = np.dtype(info["dtype"]).newbyteorder("<")
    bad = np.flatnonzero(enc != length * dt.itemsize)
    if len(bad):  # checked at build too: only a damaged index gets here
        i = int(bad[0])
        raise FormatError(ibd, None, f"spectrum {int(index[i])} of {uri}: its {role} array has {int(enc[i])} bytes "
                                     f"where its index promises {int(length[i])} values of {dt.itemsize} bytes; "
                                     "rebuild the index")
    real = np.flatnonzero(enc > 0)  # empty arrays have no bytes to copy
    if not len(real):
        return
    r, rel, enc = r[real], rel[real], enc[real]
    at = np.concatenate(([0], np.cumsum(length)))[real]  # where each one's values go in out
    before = np.concatenate(([0], np.cumsum(enc)[:-1]))
    new = np.concatenate(([True], (r[1:] != r[:-1]) | (rel[1:] != rel[:-1] + enc[:-1])))
    first = np.flatnonzero(new)
    chunk = (before - before[first][np.cumsum(new) - 1]) // RUN_BYTES
    new[1:] |= chunk[1:] != chunk[:-1]
    starts = np.flatnonzero(new).tolist()
    for a, b in zip(starts, [*starts[1:], len(real)], strict=True):
        nbytes = int(before[b - 1] + enc[b - 1] - before[a])
        raw = take(int(r[a]), int(rel[a]), nbytes)
        o = int(at[a])
        out[o: o + nbytes // dt.itemsize] = np.frombuffer(raw, dtype=dt)


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    if len(values) >= 1 << 31:
        raise FormatError("?", None, "a record batch of more than 2^31 values (internal: batches are ~32 MB)")
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def _pack(values: np.ndarray) -> str:
    """Integers as compact JSON-able text (slice contexts and map results travel as JSON or pickles)."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"))
                                          .tobytes(), 1)).decode()


def _unpack(text: str, dtype: Any) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.dtype(dtype).newbyteorder("<"))


def imzml_mz_axis(path: str, **options: Any) -> np.ndarray:
    """The m/z axis every spectrum of a continuous imzML shares, as float64: one ranged read of its ``.ibd``.

    Reads with ``mzColumn=false`` leave this axis out of every row; this gives it once. ``options`` are read
    options (``indexLocation``, ``endpointUrl``, ...); the object needs its index (``dataplug index``).
    """
    from ..plan import open_dataset

    ds = open_dataset({**{k: (str(v).lower() if isinstance(v, bool) else v) for k, v in options.items()},
                       "path": path, "format": "imzml"})
    if len(ds.objects) != 1:
        raise OptionError(f"imzml_mz_axis({path!r}): names {len(ds.objects)} objects; name one .imzML")
    index = ds.indexes[0]
    if index is None:
        raise OptionError(f"imzml_mz_axis({path!r}): {ds.objects[0].uri} has no imzml index; build it with: "
                          f"dataplug index --format imzml {ds.objects[0].uri}")
    a_ = _attrs(index)
    if not a_["shared_mz"]:
        raise OptionError(f"{index.source.uri}: its spectra have m/z arrays of their own ({a_['mode'] or 'processed'} "
                          "mode), no shared axis; read the mz column")
    t = index.tables["spectra"]
    off, enc, length = (int(t.column(f"mz_{k}")[0].as_py()) for k in ("offset", "encoded_length", "length"))
    ibd = a_["ibd"]
    raw = get_storage(ibd["uri"], ds.storage).read(ibd["uri"], off, off + enc, etag=ibd["etag"]) if enc else b""
    return _values(raw, a_["arrays"]["mz"], length, ibd["uri"], off, f"the m/z array {index.source.uri} shares"
                   ).astype(np.float64)


partition_spectra_batches = by_strategy("spectra")
partition_bytes_batches = by_strategy("bytes")
partition_tiles_batches = by_strategy("tiles")

#: the seed Dataplug's name (formats.metabolomics.imzml): slices of whole spectra, at most about
#: ``chunk_size`` encoded bytes each (a spectrum bigger than that is a slice of its own, not an error)
partition_chunks_strategy = by_size("bytes", "chunk_size")

__all__ = ["ImzML", "ImzmlParser", "check_layout", "find_ibd", "imzml_mz_axis", "parse_imzml"]
