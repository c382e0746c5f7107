"""casacore table files on disk: just enough of their layouts to find and decode the rows of a column.

A casacore table is a folder: ``table.dat`` (the description, plus a blob per data manager), and per data
manager ``table.f<seqnr>`` files. Learned from casacore's sources (``casa/IO/AipsIO.cc``,
``casa/Containers/BlockIO.tcc``, ``tables/DataMan/SSM*.cc``, ``StArrayFile.cc``, ``TiledStMan.cc``,
``TSMCube.cc``, ``TiledShapeStMan.cc``, ``TiledColumnStMan.cc``); no code is copied from them.

**AipsIO** (every header): an object is ``[magic 0xbebebebe at nesting level 0] u32 length, string type,
u32 version, fields...``; ``length`` counts from its own first byte to the object's end, so an object we do not
need (a ``Record`` of hypercube ids, a free-space map) is skipped whole. Strings are ``u32 n + n bytes``,
``Bool`` one byte, ``IPosition`` an object holding ``u32 n`` and ``n`` i32 (version 1) or i64 (version 2),
``Block`` an object holding ``u32 n`` and ``n`` values. ``table.dat`` and the tiled managers' header files are
big-endian; a StandardStMan header and all data follow the table's endianness.

**StandardStMan** (``table.fN``): a 512-byte AipsIO header (bucket size, number of buckets, first index bucket,
index length, number of indices), then buckets: bucket ``b`` at ``512 + b * bucketSize``. The index (one
``SSMIndex`` object per index: rows per bucket, then ``lastRow`` and ``bucketNumber`` blocks, one entry per
data bucket in row order) is stored in a chain of buckets (8-byte link header each) or, when small, at
``IdxBucketOffset`` of one bucket. Each column has an offset in the bucket and an index, kept in the
manager's blob in ``table.dat`` (object ``SSM``: name, ``Block<u32>`` offsets, ``Block<u32>`` index map,
indexed by the manager's column number: its columns in the order of the table description). A bucket holding rows
``[s, e]`` stores a column's cells back to back from its offset: fixed-size values (``nelem * size`` bytes,
complex as two floats), bools as bits (row ``s + k``, element ``j`` at bit ``k * nelem + j``, least
significant bit first), and for *indirect* arrays (not ``Direct`` in the column description) an i64 offset into
``table.fNi`` (0: undefined cell) where the cell is ``[u32 refcount if the file's version > 0] u32 ndim, i32
shape[ndim], values`` (bools as bits).

**Tiled managers** (``table.fN`` header, ``table.fN_TSM<k>`` data): each hypercube has a shape (cell axes in
casacore's Fortran order, then rows), a tile shape, a data file and an offset. Tile ``t`` is at ``offset + t *
tileBytes``, tiles numbered in Fortran order over the tile grid, values Fortran-ordered within the tile (bools
as bits). TiledColumnStMan has one hypercube holding row ``r`` at position ``r``; TiledShapeStMan maps row
intervals to hypercubes (``rowMap`` last row of each interval, ``cubeMap``, ``posMap`` position of that last
row; rows past the last interval have no cell). A column's cell in python-casacore order (``getcol``) is the
reverse of casacore's axis order, so Fortran order on disk is C order for numpy: no transposition within a cell.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = 0xBEBEBEBE
#: where a StandardStMan file's buckets start (its header lives before)
SSM_HEADER = 512
#: casacore value type name -> (numpy dtype char, bytes per value on disk); bools are bits
VALUE_TYPES: dict[str, tuple[str, int]] = {
    "boolean": ("?", 0), "uchar": ("u1", 1), "short": ("i2", 2), "ushort": ("u2", 2), "int": ("i4", 4),
    "uint": ("u4", 4), "int64": ("i8", 8), "float": ("f4", 4), "double": ("f8", 8), "complex": ("c8", 8),
    "dcomplex": ("c16", 16),
}


class LayoutError(ValueError):
    """The bytes are not the layout this module reads (another version, or a corrupt file)."""


class AipsReader:
    """Sequential reads of AipsIO-serialised values from a buffer."""

    def __init__(self, buf: bytes | memoryview, big: bool = True, pos: int = 0) -> None:
        self.buf = memoryview(buf)
        self.pos = pos
        self.e = ">" if big else "<"

    def _take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise LayoutError(f"AipsIO data ends at byte {len(self.buf)}, wanted {size} more at {self.pos}")
        (v,) = struct.unpack_from(self.e + fmt, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self) -> int:
        return self._take("I")

    def i32(self) -> int:
        return self._take("i")

    def u64(self) -> int:
        return self._take("Q")

    def i64(self) -> int:
        return self._take("q")

    def boolean(self) -> bool:
        return bool(self._take("B"))

    def string(self) -> str:
        n = self.u32()
        s = bytes(self.buf[self.pos: self.pos + n])
        if len(s) != n:
            raise LayoutError("AipsIO string runs past the data")
        self.pos += n
        return s.decode("latin-1")

    def start(self, expect: str | None = None, top: bool = False) -> tuple[int, int]:
        """Open an object: ``(version, end position)``; ``top`` objects begin with the magic value."""
        if top and self.u32() != MAGIC:
            raise LayoutError(f"no AipsIO object at byte {self.pos - 4}")
        at = self.pos
        length = self.u32()
        kind = self.string()
        if expect is not None and kind != expect:
            raise LayoutError(f"AipsIO object {kind!r} where {expect!r} was expected")
        return self.u32(), at + length

    def skip_object(self) -> None:
        at = self.pos
        self.pos = at + self.u32()

    def iposition(self) -> list[int]:
        version, end = self.start("IPosition")
        n = self.u32()
        vals = [self.i32() if version == 1 else self.i64() for _ in range(n)]
        self.pos = end
        return vals

    def block(self) -> np.ndarray:
        """A ``Block`` of unsigned integers; their width (4 or 8 bytes) follows from the object's length."""
        _, end = self.start("Block")
        n = self.u32()
        if n == 0:
            self.pos = end
            return np.zeros(0, np.int64)
        width = (end - self.pos) // n
        if width not in (4, 8) or self.pos + n * width != end:
            raise LayoutError(f"Block of {n} values in {end - self.pos} bytes")
        out = np.frombuffer(self.buf, dtype=f"{self.e}u{width}", count=n, offset=self.pos).astype(np.int64)
        self.pos = end
        return out


# ------------------------------------------------------------------------------------------ StandardStMan


@dataclass
class SSMHeader:
    big: bool
    bucket_size: int
    nbuckets: int
    first_idx_bucket: int
    n_idx_buckets: int
    idx_offset: int
    index_length: int
    n_indices: int


def parse_ssm_header(buf: bytes, big: bool) -> SSMHeader:
    """The first bytes of a StandardStMan file (``big``: the table's endianness, from the header itself)."""
    r = AipsReader(buf, big)
    version, _ = r.start("StandardStMan", top=True)
    if version >= 3:
        big = r.boolean()
    if version > 3:
        raise LayoutError(f"StandardStMan header version {version} (this reader knows 1-3)")
    bucket_size, nbuckets, _cache, _nfree, _first_free = r.u32(), r.u32(), r.u32(), r.u32(), r.i32()
    n_idx, first_idx = r.u32(), r.i32()
    idx_offset = r.u32() if version >= 2 else 0
    _last_string, index_length, n_indices = r.i32(), r.u32(), r.u32()
    return SSMHeader(big, bucket_size, nbuckets, first_idx, n_idx, idx_offset, index_length, n_indices)


def object_type(buf: bytes) -> str:
    """The type of the AipsIO object a file starts with ("" if none), in either byte order."""
    if len(buf) < 12 or buf[:4] != b"\xbe\xbe\xbe\xbe":
        return ""
    for e in (">", "<"):
        n = struct.unpack_from(e + "I", buf, 8)[0]
        if 0 < n < 64 and 12 + n <= len(buf):
            return bytes(buf[12: 12 + n]).decode("latin-1")
    return ""


def ssm_endianness(buf: bytes) -> bool:
    """Whether a StandardStMan header is big-endian: its object length reads sensibly only one way."""
    if len(buf) < 8 or buf[:4] != b"\xbe\xbe\xbe\xbe":
        raise LayoutError("not a StandardStMan file (no AipsIO magic)")
    return struct.unpack_from(">I", buf, 4)[0] < SSM_HEADER


def bucket_offset(hdr: SSMHeader, bucket: int) -> int:
    return SSM_HEADER + bucket * hdr.bucket_size


@dataclass
class SSMIndex:
    rows_per_bucket: int
    last_row: np.ndarray  # inclusive last row of each data bucket, in row order
    bucket: np.ndarray    # bucket number of each

    def first_row(self) -> np.ndarray:
        return np.concatenate(([0], self.last_row[:-1] + 1)) if len(self.last_row) else self.last_row


def read_ssm_indices(hdr: SSMHeader, read_bucket: Callable[[int], bytes]) -> tuple[list[SSMIndex], list[int]]:
    """The manager's indices, following the chain of index buckets; also which buckets were read."""
    link = 8
    parts, seen = [], []
    bucket, remaining = hdr.first_idx_bucket, hdr.index_length
    for _ in range(hdr.n_idx_buckets):
        if bucket < 0 or bucket >= hdr.nbuckets or bucket in seen:
            raise LayoutError(f"StandardStMan index bucket {bucket} out of range (a corrupt header?)")
        raw = read_bucket(bucket)
        seen.append(bucket)
        nxt = struct.unpack_from(">i", raw, 4)[0]
        if hdr.idx_offset > 0:
            parts.append(raw[hdr.idx_offset: hdr.idx_offset + remaining])
        else:
            parts.append(raw[link: link + min(remaining, hdr.bucket_size - link)])
        remaining -= hdr.bucket_size - link
        bucket = nxt
    data = b"".join(parts)
    r = AipsReader(data, hdr.big)
    out = []
    for _ in range(hdr.n_indices):
        _, end = r.start("SSMIndex", top=True)
        _nused, rpb, _ncol = r.u32(), r.u32(), r.u32()
        r.skip_object()  # the free-space map
        last = r.block()
        buckets = r.block()
        r.pos = end
        if len(last) != len(buckets):
            raise LayoutError("SSMIndex rows and buckets differ in length")
        out.append(SSMIndex(rpb, last, buckets))
    return out, seen


_SSM_BLOB = re.compile(rb"\xbe\xbe\xbe\xbe....\x00\x00\x00\x03SSM", re.DOTALL)


def ssm_column_maps(table_dat: bytes) -> dict[str, tuple[list[int], list[int]]]:
    """Per StandardStMan (by its name): column offsets in a bucket and column -> index, from ``table.dat``."""
    out = {}
    for m in _SSM_BLOB.finditer(table_dat):
        r = AipsReader(table_dat, True, m.start())
        version, end = r.start("SSM", top=True)
        name = r.string()
        offsets = [int(v) for v in r.block()]
        imap = [int(v) for v in r.block()] if version >= 2 else [0] * len(offsets)
        out[name] = (offsets, imap)
    return out


# ------------------------------------------------------------------------------------------ tiled managers


@dataclass
class Hypercube:
    shape: list[int]  # casacore order: cell axes (fastest first), rows last
    tile: list[int]
    file: int         # the k of table.fN_TSMk
    offset: int


@dataclass
class TSMHeader:
    kind: str         # TiledColumnStMan or TiledShapeStMan
    big: bool
    nrows: int
    dtypes: list[int]
    cubes: list[Hypercube]
    row_map: np.ndarray  # TiledShapeStMan: last row of each interval (empty for TiledColumnStMan)
    cube_map: np.ndarray
    pos_map: np.ndarray


def parse_tsm_header(buf: bytes) -> TSMHeader:
    """A TiledColumnStMan or TiledShapeStMan header file (``table.fN``)."""
    r = AipsReader(buf, True)
    if len(buf) < 12 or buf[:4] != b"\xbe\xbe\xbe\xbe":
        raise LayoutError("not a tiled storage manager header (no AipsIO magic)")
    kind = AipsReader(buf, True, 8).string()
    if kind not in ("TiledColumnStMan", "TiledShapeStMan"):
        raise LayoutError(f"tiled manager {kind!r} is not supported (TiledColumnStMan, TiledShapeStMan are)")
    _, top_end = r.start(kind, top=True)
    if kind == "TiledColumnStMan":
        r.iposition()
    version, tsm_end = r.start("TiledStMan")
    big = r.boolean() if version >= 2 else True
    _seqnr = r.u32()
    nrows = r.u64() if version >= 3 else r.u32()
    ncol = r.u32()
    dtypes = [r.i32() for _ in range(ncol)]
    r.string()  # hypercolumn name
    r.u64() if version >= 3 else r.u32()  # cache size
    nrdim = r.u32()
    nfiles = r.u64() if version >= 3 else r.u32()
    for _ in range(nfiles):
        if r.boolean():
            fv = r.u32()
            r.u32()
            r.u32() if fv == 1 else r.u64()
    ncubes = r.u64() if version >= 3 else r.u32()
    cubes = []
    for _ in range(ncubes):
        cv = r.u32()
        r.skip_object()  # the Record of hypercube id values
        r.boolean()
        if r.u32() not in (0, nrdim):  # TiledShapeStMan's cube 0 is an empty placeholder
            raise LayoutError("hypercube dimensionality differs from the manager's")
        shape, tile = r.iposition(), r.iposition()
        file = r.i32()
        offset = r.u32() if cv == 1 else r.i64()
        cubes.append(Hypercube(shape, tile, file, offset))
    r.pos = tsm_end
    empty = np.zeros(0, np.int64)
    row_map = cube_map = pos_map = empty
    if kind == "TiledShapeStMan":
        r.iposition()
        r.u32()
        row_map, cube_map, pos_map = r.block(), r.block(), r.block()
    if r.pos > top_end:
        raise LayoutError("tiled manager header runs past its length")
    return TSMHeader(kind, big, nrows, dtypes, cubes, row_map, cube_map, pos_map)


def tsm_runs(hdr: TSMHeader, r0: int, r1: int) -> list[tuple[int, int, int, int]]:
    """``(first row, end row, cube, position of the first row)`` for rows ``[r0, r1)``; cube -1: no cells."""
    if hdr.kind == "TiledColumnStMan":
        return [(r0, r1, 0, r0)] if r1 > r0 else []
    out = []
    rm, cm, pm = hdr.row_map, hdr.cube_map, hdr.pos_map
    r = r0
    while r < r1:
        i = int(np.searchsorted(rm, r, side="left"))
        if i >= len(rm):
            out.append((r, r1, -1, 0))
            break
        end = min(r1, int(rm[i]) + 1)
        out.append((r, end, int(cm[i]), int(pm[i]) - (int(rm[i]) - r)))
        r = end
    return out


def tile_bytes(tile: list[int], nbits: int) -> int:
    """Bytes of one tile of one column (``nbits`` per value: 1 for bools)."""
    return (int(np.prod(tile)) * nbits + 7) // 8


def tile_span(cube: Hypercube, p0: int, p1: int, tbytes: int) -> tuple[int, int, int]:
    """Bytes ``[a, b)`` of the data file holding positions ``[p0, p1)`` of a cube, and the first tile row."""
    per_row = int(np.prod([-(-s // t) for s, t in zip(cube.shape[:-1], cube.tile[:-1], strict=True)]))
    t2 = cube.tile[-1]
    first, last = p0 // t2, (p1 - 1) // t2
    return cube.offset + first * per_row * tbytes, cube.offset + (last + 1) * per_row * tbytes, first


def decode_tiles(raw: bytes | memoryview, cube: Hypercube, first_tile_row: int, p0: int, p1: int,
                 dtype: np.dtype, nbits: int) -> np.ndarray:
    """Cells of positions ``[p0, p1)`` from the tile rows starting at ``first_tile_row``: ``(n, *cell)`` in numpy
    (C) order, i.e. casacore's cell axes reversed, as python-casacore's ``getcol`` returns them."""
    cell = cube.shape[:-1]
    tile = cube.tile
    grid = [-(-s // t) for s, t in zip(cell, tile[:-1], strict=True)]
    ntiles_row = int(np.prod(grid))
    tb = tile_bytes(tile, nbits)
    nval = int(np.prod(tile))
    nrows_t = len(raw) // (tb * ntiles_row)
    if nrows_t * tb * ntiles_row != len(raw):
        raise LayoutError("tile bytes are not a whole number of tile rows")
    if nbits == 1:
        bits = np.unpackbits(np.frombuffer(raw, np.uint8).reshape(-1, tb), axis=1, bitorder="little")[:, :nval]
        vals = bits.astype(bool)
    else:
        vals = np.frombuffer(raw, dtype=dtype, count=nrows_t * ntiles_row * nval)
    # tiles: (tile row, grid reversed..., tile axes reversed...) in C order
    k = len(cell)
    arr = vals.reshape(nrows_t, *grid[::-1], *tile[::-1])
    # interleave each grid axis with its tile axis: (tile row, t_rows, g_{k-1}, t_{k-1}, ..., g_0, t_0)
    order = [0, 1 + k] + [a for j in range(k) for a in (1 + j, 2 + k + j)]
    arr = arr.transpose(order).reshape(nrows_t * tile[-1], *[g * t for g, t in zip(grid[::-1], tile[-2::-1],
                                                                                       strict=True)])
    lo = p0 - first_tile_row * tile[-1]
    arr = arr[lo: lo + (p1 - p0)]
    return arr[(slice(None), *[slice(0, c) for c in cell[::-1]])]


# ------------------------------------------------------------------------------------------ SSM cells


def unpack_bits(raw: bytes | memoryview, first_bit: int, nbits: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
    return bits[first_bit: first_bit + nbits].astype(bool)


def indirect_header_bytes(version: int, ndim: int) -> int:
    """Bytes before an indirect array's values in ``table.fNi``."""
    return (4 if version > 0 else 0) + 4 + 4 * ndim


def gather_cells(buf: np.ndarray, rel: np.ndarray, version: int, shape: list[int], dtype: np.dtype, nbits: int,
                 big: bool) -> np.ndarray:
    """Indirect cells at byte offsets ``rel`` of ``buf`` (uint8): ``(n, *shape reversed)``; every cell's stored
    shape must be ``shape`` (casacore order), else LayoutError (a variable-shaped column)."""
    ndim = len(shape)
    hdr = indirect_header_bytes(version, ndim)
    skip = 4 if version > 0 else 0
    want = np.asarray([ndim, *shape], dtype=np.int64)
    stored = buf[rel[:, None] + skip + np.arange(4 * (ndim + 1))].copy().view(">i4" if big else "<i4")
    if len(rel) and not (stored == want).all():
        bad = int(np.flatnonzero((stored != want).any(axis=1))[0])
        raise LayoutError(f"a cell of shape {stored[bad, 1:].tolist()} where {shape} was expected (variable-shaped)")
    nval = int(np.prod(shape))
    nbytes = (nval * nbits + 7) // 8
    raw = buf[rel[:, None] + hdr + np.arange(nbytes)]
    if nbits == 1:
        vals = np.unpackbits(raw, axis=1, bitorder="little")[:, :nval].astype(bool)
    else:
        vals = raw.copy().view(dtype)
    return vals.reshape(len(rel), *shape[::-1])


def cell_dtype(value_type: str, big: bool) -> tuple[np.dtype, int]:
    """The on-disk numpy dtype of one value and its bits (1 for bools)."""
    if value_type not in VALUE_TYPES:
        raise LayoutError(f"value type {value_type!r} is not supported")
    code, size = VALUE_TYPES[value_type]
    if code == "?":
        return np.dtype(bool), 1
    return np.dtype(code).newbyteorder(">" if big else "<"), size * 8


def as_mapping(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}
