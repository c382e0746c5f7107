"""Tiled TIFF: the IFD walk (with ranged reads and a bounds check on every value) and the tile decoder.

Why our own IFD parser rather than ``tifffile.TiffFile``: tifffile is built to read what it can of damaged
files, so a header cut short (a truncated upload) only *logs* and returns fewer pages or tags -- a COG whose
overviews or GeoTIFF tags silently vanish. Here every IFD, every tag value and every tile lies inside the
object or the build fails, naming the object, the byte and what is missing. We need about twenty tags; the
values of the others are never fetched (only their extents are checked). tifffile stays the test oracle.

Tiles are decoded with imagecodecs, always into a preallocated buffer (``out=``), which the probes measured
2.5x faster than letting the codec allocate, and which bounds what a corrupt tile can write. Lengths are
checked before and after every codec call, so a bad tile is a :class:`FormatError`, never a short row.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FormatError
from ._base import need

#: the header is fetched in aligned blocks of this size; the first block holds all IFDs of a small COG
BLOCK = 64 << 10
#: IFDs followed before the chain is taken for a loop or garbage
MAX_IFDS = 10_000

# tag ids
NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION = 254, 256, 257, 258, 259
PHOTOMETRIC, FILL_ORDER, STRIP_OFFSETS, SAMPLES_PER_PIXEL, PLANAR_CONFIG = 262, 266, 273, 277, 284
PREDICTOR, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 317, 322, 323, 324, 325
EXTRA_SAMPLES, SAMPLE_FORMAT, JPEG_TABLES, YCBCR_SUBSAMPLING, IMAGE_DEPTH = 338, 339, 347, 530, 32997
MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION, GEO_KEY_DIRECTORY = 33550, 33922, 34264, 34735
GDAL_NODATA = 42113
#: the tags whose values are fetched and decoded; every other tag is only bounds-checked
NEEDED = {NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION, PHOTOMETRIC, FILL_ORDER,
          SAMPLES_PER_PIXEL, PLANAR_CONFIG, PREDICTOR, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS,
          EXTRA_SAMPLES, SAMPLE_FORMAT, JPEG_TABLES, YCBCR_SUBSAMPLING, IMAGE_DEPTH, MODEL_PIXEL_SCALE,
          MODEL_TIEPOINT, MODEL_TRANSFORMATION, GEO_KEY_DIRECTORY, GDAL_NODATA}

#: TIFF field type -> (struct code, bytes per value); RATIONALs are read as two integers
TYPES: dict[int, tuple[str, int]] = {
    1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("I", 8), 6: ("b", 1), 7: ("B", 1), 8: ("h", 2),
    9: ("i", 4), 10: ("i", 8), 11: ("f", 4), 12: ("d", 8), 13: ("I", 4), 16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8),
}

COMPRESSIONS = {1: "none", 5: "LZW", 7: "JPEG", 8: "Deflate", 32946: "Deflate", 32773: "PackBits",
                34925: "LZMA", 50000: "ZSTD", 50001: "WebP"}
#: names of compressions we cannot decode, for the error message
OTHER_COMPRESSIONS = {2: "CCITT RLE", 3: "CCITT Group 3", 4: "CCITT Group 4", 6: "old-style JPEG",
                      33003: "JPEG 2000", 33005: "JPEG 2000", 34712: "JPEG 2000", 34887: "LERC",
                      34892: "lossy JPEG", 34933: "PNG", 50002: "JPEG XL", 52546: "JPEG XL"}
#: codecs that decode to pixels themselves: the TIFF predictor does not apply to them
IMAGE_CODECS = {7, 50001}


def compression_name(code: int) -> str:
    return COMPRESSIONS.get(code) or OTHER_COMPRESSIONS.get(code) or f"code {code}"


class _Blocks:
    """The header's bytes, fetched in aligned blocks on demand: a few ranged reads, never the whole object."""

    def __init__(self, uri: str, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self.uri, self.size, self.fetch = uri, size, fetch
        self.blocks: dict[int, bytes] = {}
        self.reads = 0
        self.fetched = 0

    def ensure(self, spans: list[tuple[int, int]]) -> None:
        """Fetch the blocks the spans need that are not here yet, one read per run of missing blocks."""
        want = sorted({b for a, e in spans if e > a for b in range(a // BLOCK, (e - 1) // BLOCK + 1)}
                      - self.blocks.keys())
        runs: list[list[int]] = []
        for b in want:
            if runs and runs[-1][1] == b:
                runs[-1][1] = b + 1
            else:
                runs.append([b, b + 1])
        for lo, hi in runs:
            start, end = lo * BLOCK, min(self.size, hi * BLOCK)
            data = self.fetch(start, end)
            self.reads += 1
            self.fetched += len(data)
            for b in range(lo, hi):
                self.blocks[b] = data[(b - lo) * BLOCK: (b - lo + 1) * BLOCK]

    def get(self, start: int, end: int) -> bytes:
        self.ensure([(start, end)])
        first, last = start // BLOCK, (end - 1) // BLOCK
        if first == last:
            return self.blocks[first][start - first * BLOCK: end - first * BLOCK]
        joined = b"".join(self.blocks[b] for b in range(first, last + 1))
        return joined[start - first * BLOCK: end - first * BLOCK]


def _truncated(uri: str, at: int, what: str, size: int) -> FormatError:
    return FormatError(uri, at, f"the TIFF header ends early: {what} lies past the end of the object ({size} bytes); "
                                "the file is truncated or damaged (an interrupted upload?)")


def parse_tiff(uri: str, size: int, fetch: Callable[[int, int], bytes]) -> dict[str, Any]:
    """Walk every IFD of a tiled TIFF and describe its image and overviews (JSON-able, arrays as numpy).

    ``fetch(start, end)`` reads bytes of the object; it is called a few times, for aligned blocks.
    Returns ``{"levels": [...], "masks": n, "ifds": n, "crs": ..., "geotransform": [...], ...}``; level 0 is
    the full-resolution image, then the overviews from the largest down. Masks (GDAL's internal
    per-dataset masks) are counted and skipped.
    """
    blocks = _Blocks(uri, size, fetch)
    if size < 8:
        raise FormatError(uri, 0, f"not a TIFF: the object holds only {size} bytes")
    head = blocks.get(0, min(size, 16))
    if head[:2] not in (b"II", b"MM"):
        raise FormatError(uri, 0, f"not a TIFF: it starts with {head[:4]!r}, a TIFF with b'II*\\x00' or b'MM\\x00*' "
                                  "(BigTIFF: '+' for '*')")
    bo = "<" if head[:2] == b"II" else ">"
    (magic,) = struct.unpack(bo + "H", head[2:4])
    if magic == 42:
        big, count_fmt, entry, off_fmt = False, "H", 12, "I"
        (first,) = struct.unpack(bo + "I", head[4:8])
    elif magic == 43 and size >= 16 and struct.unpack(bo + "HH", head[4:8]) == (8, 0):
        big, count_fmt, entry, off_fmt = True, "Q", 20, "Q"
        (first,) = struct.unpack(bo + "Q", head[8:16])
    else:
        raise FormatError(uri, 2, f"not a TIFF: version {magic} where a TIFF has 42 (BigTIFF 43)")
    count_size, off_size = struct.calcsize(count_fmt), struct.calcsize(off_fmt)
    inline = 8 if big else 4
    ifds: list[dict[int, Any]] = []
    seen: set[int] = set()
    at = first
    while at:
        n_ifd = len(ifds)
        if at in seen or n_ifd >= MAX_IFDS:
            raise FormatError(uri, at, f"IFD {n_ifd} at byte {at}: the IFD chain loops or never ends")
        seen.add(at)
        if at + count_size > size:
            raise _truncated(uri, at, f"IFD {n_ifd} (at byte {at})", size)
        (n,) = struct.unpack(bo + count_fmt, blocks.get(at, at + count_size))
        end = at + count_size + n * entry + off_size
        if n == 0 or end > size:
            if end > size:
                raise _truncated(uri, at, f"IFD {n_ifd} (at byte {at}, {n} entries, to byte {end})", size)
            raise FormatError(uri, at, f"IFD {n_ifd} at byte {at} has no entries")
        raw = blocks.get(at, end)
        tags: dict[int, tuple[int, int, bytes | int]] = {}
        spans: list[tuple[int, int]] = []
        for i in range(n):
            e = raw[count_size + i * entry: count_size + (i + 1) * entry]
            tag, typ = struct.unpack(bo + "HH", e[:4])
            (cnt,) = struct.unpack(bo + off_fmt, e[4: 4 + off_size])
            if typ not in TYPES:
                if tag in NEEDED:
                    raise FormatError(uri, at, f"IFD {n_ifd}: tag {tag} has an unknown field type {typ}")
                continue  # as libtiff: an unknown type is skipped; its extent cannot be known
            nbytes = cnt * TYPES[typ][1]
            if nbytes <= inline:
                tags[tag] = (typ, cnt, e[4 + off_size: 4 + off_size + nbytes])
                continue
            (voff,) = struct.unpack(bo + off_fmt, e[4 + off_size: 4 + 2 * off_size])
            if voff + nbytes > size:
                raise _truncated(uri, voff, f"the value of tag {tag} of IFD {n_ifd} (bytes [{voff}, "
                                            f"{voff + nbytes}))", size)
            tags[tag] = (typ, cnt, voff)
            if tag in NEEDED:
                spans.append((voff, voff + nbytes))
        blocks.ensure(spans)  # every out-of-line value of this IFD in one or two reads
        values = {}
        for tag, (typ, cnt, where) in tags.items():
            if tag not in NEEDED:
                continue
            data = where if isinstance(where, bytes) else blocks.get(where, where + cnt * TYPES[typ][1])
            values[tag] = _values(bo, typ, cnt, data)
        values["_at"] = at
        values["_tags"] = set(tags)
        ifds.append(values)
        (at,) = struct.unpack(bo + off_fmt, raw[-off_size:])
    try:
        info = _describe(uri, size, bo, ifds)
    except (ValueError, TypeError, OverflowError, IndexError) as e:  # a tag of a type or size it cannot have
        raise FormatError(uri, first, f"the TIFF header is malformed ({type(e).__name__}: {e})") from e
    info.update(bigtiff=big, byteorder=bo, ifds=len(ifds), header_reads=blocks.reads, header_bytes=blocks.fetched)
    return info


def _values(bo: str, typ: int, cnt: int, data: bytes) -> Any:
    code, _ = TYPES[typ]
    if typ == 2:
        return data.split(b"\x00", 1)[0].decode("latin-1")
    if typ == 7 or (typ == 1 and cnt > 64):
        return bytes(data)
    if typ in (5, 10):
        return np.frombuffer(data, dtype=np.dtype(bo + code).newbyteorder(bo), count=2 * cnt).reshape(-1, 2)
    return np.frombuffer(data, dtype=np.dtype(code).newbyteorder(bo), count=cnt)


def _scalar(ifd: Mapping[Any, Any], tag: int, default: int | None = None) -> int | None:
    v = ifd.get(tag)
    if not isinstance(v, np.ndarray) or not v.size:
        return default
    return int(v.ravel()[0])  # a float NaN raises ValueError: parse_tiff reports a malformed header


def _all_equal(uri: str, at: int, ifd: Mapping[Any, Any], tag: int, default: int, what: str) -> int:
    v = ifd.get(tag)
    if v is None:
        return default
    vals = set(np.asarray(v).ravel().tolist())
    if len(vals) != 1:
        raise FormatError(uri, at, f"the samples have different {what} ({sorted(vals)}): not supported")
    return int(vals.pop())


def _dtype(uri: str, at: int, bits: int, fmt: int) -> np.dtype:
    kinds = {1: "u", 2: "i", 3: "f"}
    if fmt in kinds and bits in (8, 16, 32, 64) and not (fmt == 3 and bits == 8):
        return np.dtype(f"{kinds[fmt]}{bits // 8}")
    names = {1: "unsigned integer", 2: "signed integer", 3: "floating point", 5: "complex integer",
             6: "complex floating point"}
    raise FormatError(uri, at, f"unsupported sample type: {bits}-bit {names.get(fmt, f'SampleFormat {fmt}')} "
                               "(supported: 8/16/32/64-bit integers, 16/32/64-bit floats)")


def _level(uri: str, size: int, bo: str, n_ifd: int, ifd: Mapping[Any, Any]) -> dict[str, Any]:
    """One image IFD -> its level description, every tile checked to lie inside the object."""
    at = int(ifd["_at"])
    where = f"IFD {n_ifd}"
    if TILE_WIDTH not in ifd or TILE_LENGTH not in ifd:
        what = "stored in strips" if STRIP_OFFSETS in ifd["_tags"] else "has no tile layout"
        raise FormatError(uri, at, f"{where} is not tiled ({what}): not a Cloud-Optimized GeoTIFF; rewrite it "
                                   "with: gdal_translate -of COG in.tif out.tif")
    width, height = _scalar(ifd, IMAGE_WIDTH, 0), _scalar(ifd, IMAGE_LENGTH, 0)
    tw, th = _scalar(ifd, TILE_WIDTH, 0), _scalar(ifd, TILE_LENGTH, 0)
    if not (0 < width < 1 << 31 and 0 < height < 1 << 31 and 0 < tw <= 1 << 16 and 0 < th <= 1 << 16):
        raise FormatError(uri, at, f"{where}: impossible image {width}x{height} or tile {tw}x{th} size")
    if (_scalar(ifd, IMAGE_DEPTH, 1) or 1) > 1:
        raise FormatError(uri, at, f"{where} is a volume (ImageDepth > 1): not supported")
    bands = _scalar(ifd, SAMPLES_PER_PIXEL, 1) or 1
    bits = _all_equal(uri, at, ifd, BITS_PER_SAMPLE, 1, "bits per sample")
    sfmt = _all_equal(uri, at, ifd, SAMPLE_FORMAT, 1, "sample formats")
    dtype = _dtype(uri, at, bits, sfmt)
    compression = _scalar(ifd, COMPRESSION, 1) or 1
    if compression not in COMPRESSIONS:
        supported = ", ".join(sorted(set(COMPRESSIONS.values())))
        raise FormatError(uri, at, f"{where}: unsupported compression {compression_name(compression)} "
                                   f"({compression}); supported: {supported}. Rewrite it, e.g. gdal_translate -of COG "
                                   "-co COMPRESS=DEFLATE in.tif out.tif")
    predictor = _scalar(ifd, PREDICTOR, 1) or 1
    if compression in IMAGE_CODECS:
        predictor = 1
    elif predictor not in (1, 2, 3) or (predictor == 2 and dtype.kind == "f") or (predictor == 3 and dtype.kind != "f"):
        raise FormatError(uri, at, f"{where}: unsupported predictor {predictor} for {dtype.name} samples "
                                   "(supported: 1, 2 for integers, 3 for floats)")
    planar = _scalar(ifd, PLANAR_CONFIG, 1) or 1
    if planar not in (1, 2):
        raise FormatError(uri, at, f"{where}: bad PlanarConfiguration {planar}")
    if bands == 1:
        planar = 1
    photometric = _scalar(ifd, PHOTOMETRIC, 1)
    if compression == 7 and dtype != np.uint8:
        raise FormatError(uri, at, f"{where}: JPEG with {dtype.name} samples: only 8-bit JPEG is supported")
    if compression == 50001 and (dtype != np.uint8 or bands not in (3, 4) or planar != 1):
        raise FormatError(uri, at, f"{where}: WebP needs 3 or 4 interleaved 8-bit bands")
    sub = ifd.get(YCBCR_SUBSAMPLING)
    subsampled = photometric == 6 and (sub is None or tuple(int(v) for v in sub[:2]) != (1, 1))
    if subsampled and compression != 7:
        raise FormatError(uri, at, f"{where}: YCbCr chroma subsampling without JPEG compression is not supported")
    if (_scalar(ifd, FILL_ORDER, 1) or 1) != 1 and compression != 7:
        raise FormatError(uri, at, f"{where}: FillOrder 2 (bits stored LSB first) is not supported")
    across, down = -(-width // tw), -(-height // th)
    planes = bands if planar == 2 else 1
    expected = across * down * planes
    offsets = ifd.get(TILE_OFFSETS)
    counts = ifd.get(TILE_BYTE_COUNTS)
    n_off = 0 if offsets is None else len(offsets)
    n_cnt = 0 if counts is None else len(counts)
    if n_off != expected or n_cnt != expected:
        raise FormatError(uri, at, f"{where} lists {n_off} tile offsets and {n_cnt} tile byte counts where its "
                                   f"{width}x{height} image in {tw}x{th} tiles{f' x {planes} planes' * (planes > 1)} "
                                   f"has {expected} tiles: the header is damaged or truncated")
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    bad = np.flatnonzero((counts > 0) & ((offsets + counts > size) | (offsets <= 0)))
    if len(bad):
        k = int(bad[0])
        raise FormatError(uri, int(offsets[k]), f"{where}: tile {k} (bytes [{offsets[k]}, {offsets[k] + counts[k]})) "
                                                f"lies outside the object ({size} bytes): the file is truncated "
                                                f"({len(bad)} tile(s) affected)")
    nodata = ifd.get(GDAL_NODATA)
    tables = ifd.get(JPEG_TABLES)
    extra = ifd.get(EXTRA_SAMPLES)
    return {
        "ifd": n_ifd, "width": width, "height": height, "tile_width": tw, "tile_height": th, "bands": bands,
        "planar": planar, "dtype": np.dtype(dtype).newbyteorder(bo).str, "compression": compression,
        "predictor": predictor, "photometric": photometric,
        "extrasamples": [] if extra is None else [int(v) for v in np.asarray(extra).ravel()],
        "jpegtables": base64.b64encode(bytes(tables)).decode() if tables is not None else None,
        "nodata": nodata.strip() if isinstance(nodata, str) and nodata.strip() else None,
        "across": across, "down": down, "offsets": offsets, "counts": counts,
    }


def _describe(uri: str, size: int, bo: str, ifds: list[dict[Any, Any]]) -> dict[str, Any]:
    """Levels (full resolution, then overviews by decreasing size), masks skipped; georeferencing of level 0."""
    images, masks = [], 0
    for n, ifd in enumerate(ifds):
        kind = _scalar(ifd, NEW_SUBFILE_TYPE, 0) or 0
        if kind & 4 or _scalar(ifd, PHOTOMETRIC, 1) == 4:
            masks += 1  # a transparency mask (GDAL's internal mask, or its overview)
            continue
        images.append((n, ifd, bool(kind & 1)))
    if not images or images[0][2]:
        raise FormatError(uri, int(ifds[0]["_at"]), "no full-resolution image: the first image IFD is an overview")
    full = [n for n, _, reduced in images if not reduced]
    if len(full) > 1:
        raise FormatError(uri, int(ifds[full[1]]["_at"]), f"the TIFF holds {len(full)} full-resolution images (pages); "
                                                          "this reader reads one image and its overviews")
    levels = [_level(uri, size, bo, n, ifd) for n, ifd, _ in images]
    levels[1:] = sorted(levels[1:], key=lambda lv: (-lv["width"], -lv["height"]))
    for k, lv in enumerate(levels):
        lv["level"] = k
    gt, georef, crs, point = _georef(ifds[images[0][0]])
    return {"levels": levels, "masks": masks, "geotransform": gt, "georeferenced": georef, "crs": crs,
            "pixel_is_point": point}


def _georef(ifd: Mapping[Any, Any]) -> tuple[list[float], bool, str | None, bool]:
    """GDAL's geotransform ``(x0, a, b, y0, d, e)`` and ``EPSG:n`` from the GeoTIFF tags, as GDAL reads them.

    ``X = x0 + col * a + row * b``, ``Y = y0 + col * d + row * e`` at pixel corners. PixelIsPoint rasters get
    GDAL's half-pixel shift (its default, GTIFF_POINT_GEO_IGNORE=NO). No georeferencing: the identity, as
    GDAL (pixel coordinates, y growing down).
    """
    keys: dict[int, int] = {}
    directory = ifd.get(GEO_KEY_DIRECTORY)
    if directory is not None and len(directory) >= 4:
        d = [int(v) for v in directory]
        for i in range(min(d[3], (len(d) - 4) // 4)):
            key, loc, _, val = d[4 + 4 * i: 8 + 4 * i]
            if loc == 0:
                keys[key] = val
    gt: list[float] | None = None
    matrix = ifd.get(MODEL_TRANSFORMATION)
    scale = ifd.get(MODEL_PIXEL_SCALE)
    tie = ifd.get(MODEL_TIEPOINT)
    if matrix is not None and len(matrix) >= 8:
        m = [float(v) for v in matrix]
        gt = [m[3], m[0], m[1], m[7], m[4], m[5]]
    elif scale is not None and len(scale) >= 2 and tie is not None and len(tie) == 6:
        i, j, _, x, y, _ = (float(v) for v in tie)
        sx, sy = float(scale[0]), float(scale[1])
        gt = [x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy]
    point = keys.get(1025) == 2
    if gt is None:
        return [0.0, 1.0, 0.0, 0.0, 0.0, 1.0], False, None, point
    if point:
        gt[0] -= 0.5 * gt[1] + 0.5 * gt[2]
        gt[3] -= 0.5 * gt[4] + 0.5 * gt[5]
    model = keys.get(1024)
    code = keys.get(2048) if model == 2 else keys.get(3072, keys.get(2048) if model is None else None)
    crs = f"EPSG:{code}" if code and 1 <= code < 32767 else None
    return gt, True, crs, point


def level_transform(gt: list[float], full: tuple[int, int], size: tuple[int, int]) -> list[float]:
    """The geotransform of an overview of ``size`` (width, height) of a ``full`` image, as GDAL computes it."""
    fx, fy = full[0] / size[0], full[1] / size[1]
    return [gt[0], gt[1] * fx, gt[2] * fy, gt[3], gt[4] * fx, gt[5] * fy]


def tile_bounds(gt: list[float], x0: np.ndarray, y0: np.ndarray, w: np.ndarray,
                h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(xmin, ymin, xmax, ymax)`` of pixel rectangles under a geotransform (min/max over the four corners)."""
    xs, ys = [], []
    for cx, cy in ((x0, y0), (x0 + w, y0), (x0, y0 + h), (x0 + w, y0 + h)):
        cx, cy = cx.astype(np.float64), cy.astype(np.float64)
        xs.append(gt[0] + cx * gt[1] + cy * gt[2])
        ys.append(gt[3] + cx * gt[4] + cy * gt[5])
    return np.minimum.reduce(xs), np.minimum.reduce(ys), np.maximum.reduce(xs), np.maximum.reduce(ys)


# -- decoding ------------------------------------------------------------------------------------------------
class TileDecoder:
    """Decodes the tiles of one level into band-major, C-order, little-endian arrays.

    One scratch buffer of a whole (padded) tile is reused for every tile: codecs write into it (``out=``),
    predictors undo in place, and the cropped tile is copied into the caller's output slot.
    """

    def __init__(self, uri: str, lv: Mapping[str, Any]) -> None:
        imagecodecs = need("imagecodecs", "cog", "decoding COG tiles")  # the index and tile columns need none

        self.uri = uri
        self.lv = lv
        self.file_dtype = np.dtype(lv["dtype"])
        self.native = self.file_dtype.newbyteorder("=")
        self.th, self.tw, self.bands = int(lv["tile_height"]), int(lv["tile_width"]), int(lv["bands"])
        self.planar = int(lv["planar"])
        self.seg_bands = self.bands if self.planar == 1 else 1
        self.seg_bytes = self.th * self.tw * self.seg_bands * self.file_dtype.itemsize
        self.scratch = np.empty(self.seg_bytes, dtype=np.uint8)
        self.unpredicted: np.ndarray | None = None
        self.compression = int(lv["compression"])
        self.predictor = int(lv["predictor"])
        self.tables = base64.b64decode(lv["jpegtables"]) if lv.get("jpegtables") else None
        self.fill = _nodata(lv.get("nodata"), self.native)
        codecs = {5: imagecodecs.lzw_decode, 8: imagecodecs.deflate_decode, 32946: imagecodecs.deflate_decode,
                  32773: imagecodecs.packbits_decode, 34925: imagecodecs.lzma_decode, 50000: imagecodecs.zstd_decode}
        self.codec = codecs.get(self.compression)
        self.ic = imagecodecs

    def decode(self, segments: list[bytes], where: list[int], out: np.ndarray, what: str) -> None:
        """Decode one tile (one segment per plane) into ``out`` of shape ``(bands, height, width)``.

        ``where`` gives each segment's offset in the object, for error messages.
        """
        h, w = out.shape[1], out.shape[2]
        for p, (raw, at) in enumerate(zip(segments, where, strict=True)):
            dst = out if self.planar == 1 else out[p: p + 1]
            if not len(raw):  # a sparse tile (GDAL SPARSE_OK): nodata, or 0 when there is none
                dst[...] = self.fill
                continue
            try:
                arr = self._segment(raw, at, what)
            except FormatError:
                raise
            except Exception as e:  # a codec's own error type (imagecodecs.DeflateError, ...), or a bad shape
                raise FormatError(self.uri, at, f"{what}: cannot decode its {len(raw)} bytes of "
                                                f"{compression_name(self.compression)} data ({e})") from e
            if arr.shape[0] < h or arr.shape[1] < w:
                raise FormatError(self.uri, at, f"{what}: decodes to {arr.shape[1]}x{arr.shape[0]} pixels where "
                                                f"the tile holds {w}x{h}")
            np.copyto(dst, arr[:h, :w, :].transpose(2, 0, 1), casting="equiv")

    def _segment(self, raw: bytes, at: int, what: str) -> np.ndarray:
        """One segment -> an ``(tile height, tile width, samples)`` array (or the cropped size, for JPEG)."""
        th, tw, s = self.th, self.tw, self.seg_bands
        if self.compression == 7:
            return self._jpeg(raw)
        if self.compression == 50001:
            arr = self.ic.webp_decode(raw, hasalpha=s == 4)
            return arr.reshape(arr.shape[0], arr.shape[1], -1)
        n = self.seg_bytes
        if self.codec is None:  # uncompressed
            if len(raw) < n:
                raise FormatError(self.uri, at, f"{what}: {len(raw)} bytes of uncompressed data where the tile "
                                                f"needs {n}")
            self.scratch[:] = np.frombuffer(raw, dtype=np.uint8, count=n)
            got = self.scratch
        else:
            got = self.codec(raw, out=self.scratch)
            if len(got) != n:
                raise FormatError(self.uri, at, f"{what}: its {compression_name(self.compression)} data decodes to "
                                                f"{len(got)} bytes where the {tw}x{th} tile needs {n}")
        if self.predictor == 3:  # floating-point predictor: reorders byte planes, so never in place
            if self.unpredicted is None:
                self.unpredicted = np.empty((th, tw, s), dtype=self.native)
            arr = self.scratch.view(self.native).reshape(th, tw, s)
            return self.ic.floatpred_decode(arr, axis=-2, out=self.unpredicted)
        arr = self.scratch.view(self.file_dtype).reshape(th, tw, s)
        if self.predictor == 2:
            if not self.file_dtype.isnative:
                arr = arr.byteswap(inplace=True).view(self.native)
            arr = self.ic.delta_decode(arr, axis=-2, out=arr)  # in place
        return arr

    def _jpeg(self, raw: bytes) -> np.ndarray:
        photometric = self.lv.get("photometric")
        colorspace, outcolorspace = None, None
        if not self.lv.get("extrasamples"):
            if photometric == 6:
                outcolorspace = 2  # YCbCr -> RGB, as tifffile and GDAL return it
            elif photometric == 2:
                if raw[6:10] != b"JFIF":
                    colorspace = 2
                outcolorspace = 2
        if self.planar != 1:
            outcolorspace = 1
        arr = self.ic.jpeg8_decode(raw, tables=self.tables, colorspace=colorspace, outcolorspace=outcolorspace,
                                   shape=(self.th, self.tw))
        arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
        if arr.shape[2] != self.seg_bands:
            raise ValueError(f"{arr.shape[2]} samples per pixel where the image has {self.seg_bands}")
        return arr


def _nodata(text: str | None, dtype: np.dtype) -> Any:
    """GDAL_NODATA as a value of the sample type (what GDAL fills sparse tiles with); 0 when absent or unfit."""
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        return 0
    if dtype.kind == "f":
        return value
    if math.isnan(value) or not value.is_integer():
        return 0
    info = np.iinfo(dtype)
    return int(value) if info.min <= value <= info.max else 0
