"""LAS point records: header parsing from ranged reads, the row layout, and records -> Arrow.

Shared by the ``las``/``laz`` and ``copc`` formats. Everything here works on bytes handed in by the caller
(a ``read(start, end)`` callable for headers, chunk bytes for decoding), never on storage directly, so it is
testable with plain buffers.

**Row layout.** A point format's dimensions become columns in laspy's names and order, with ``x``, ``y``, ``z``
(scaled to doubles, as laspy's ``las.x``) first and the raw ``X``, ``Y``, ``Z`` left out. Spark has no unsigned
integers, so every unsigned value widens to the next signed type: ``uint8`` (and bit fields wider than one
bit) -> ``smallint`` (int16), ``uint16`` -> ``int`` (int32), ``uint32`` -> ``bigint``; ``uint64`` -> ``bigint``
with a check (a value above 2^63-1 is an error naming the object and column, never a wrapped number).
One-bit flags (``synthetic``, ``key_point``, ``withheld``, ``overlap``, ``scan_direction_flag``,
``edge_of_flight_line``) are booleans. Signed integers and floats keep their width. Extra-bytes dimensions
follow the same rules; scaled ones are doubles (``raw * scale + offset``, as laspy), array ones
(``3f8``) are ``array<...>``, and bytes past the point format that no Extra Bytes VLR describes are one
``ExtraBytes binary`` column (laspy's unnamed ``ExtraBytes``).

The layout is computed once, when the index is built (with laspy's point-format tables), and travels as
JSON: a numpy record dtype plus one small spec per column. Decoding then needs numpy only (and lazrs for
LAZ chunks), not laspy.
"""

from __future__ import annotations

import base64
import functools
import io
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FormatError
from ._base import need as _need
from ._spatial import Box

if TYPE_CHECKING:
    import pyarrow as pa

#: the LAS 1.0-1.2 header; 1.3 adds 8 bytes, 1.4 another 140 (375 in all)
HEADER_MIN = 227
HEADER_MAX = 375
#: one read of this many bytes holds the header and, in most files, every VLR too
FIRST_READ = 64 << 10
#: a VLR's header (its data follows)
VLR_HEADER = 54
INT64_MAX = (1 << 63) - 1

#: numpy kind+size -> Arrow type name of the column (unsigned widen: Spark has no unsigned types)
_WIDEN = {"u1": "int16", "u2": "int32", "u4": "int64", "u8": "int64", "i1": "int8", "i2": "int16", "i4": "int32",
          "i8": "int64", "f4": "float32", "f8": "float64"}
#: lazrs DecompressionSelection bits per column (layered point formats 6-10); the x/y/returns layer is always read
_SELECT_BITS = {
    "z": "Z", "classification": "CLASSIFICATION", "intensity": "INTENSITY", "scan_angle": "SCAN_ANGLE",
    "user_data": "USER_DATA", "point_source_id": "POINT_SOURCE_ID", "gps_time": "GPS_TIME", "red": "RGB",
    "green": "RGB", "blue": "RGB", "nir": "NIR", "wavepacket_index": "WAVEPACKET", "wavepacket_offset": "WAVEPACKET",
    "wavepacket_size": "WAVEPACKET", "return_point_wave_location": "WAVEPACKET", "x_t": "WAVEPACKET",
    "y_t": "WAVEPACKET", "z_t": "WAVEPACKET",
    # these share their byte with the classification flags, which LASzip keeps in the flags layer
    "synthetic": "FLAGS", "key_point": "FLAGS", "withheld": "FLAGS", "overlap": "FLAGS", "scanner_channel": "FLAGS",
    "scan_direction_flag": "FLAGS", "edge_of_flight_line": "FLAGS",
}


def need(module: str) -> Any:
    """Import an optional library of the ``las`` extra, or fail with the command that installs it."""
    return _need(module, "las", "reading LAS/LAZ/COPC")


def native_failure(e: BaseException) -> bool:
    """True for an error of laz-rs on damaged input: its own exceptions, and its panics, which pyo3 raises as
    ``PanicException``, a BaseException (so ``except Exception`` lets them escape; the fuzz run found one)."""
    return isinstance(e, Exception) or type(e).__name__ == "PanicException"


# -- header -------------------------------------------------------------------------------------------------
def check_signature(uri: str, head: bytes) -> None:
    """Fail early, before any task runs, when the object is not a LAS file at all."""
    if head[:4] == b"LASF":
        return
    hint = ""
    if head[:2] == b"\x1f\x8b":
        hint = " (it is gzip-compressed: LAS/LAZ objects must be stored as they are)"
    raise FormatError(uri, 0, f"not a LAS/LAZ file: it does not start with the signature 'LASF'{hint}")


def read_header(uri: str, size: int, read: Callable[[int, int], bytes]) -> tuple[dict[str, Any], bytes]:
    """The header and VLRs of a LAS/LAZ object, from ranged reads: ``(description, bytes [0, point data))``.

    ``read(start, end)`` returns bytes ``[start, end)`` of the object. The description is JSON-able: version,
    point format, counts, scales and offsets, where points start, the LASzip VLR, the COPC info VLR when
    there is one, and the row layout (:func:`layout`). Every inconsistency is a :class:`FormatError` naming
    the object and what is wrong.
    """
    if size < HEADER_MIN:
        raise FormatError(uri, 0, f"{size} bytes: too short for a LAS header ({HEADER_MIN} bytes at least)")
    raw = read(0, min(size, FIRST_READ))
    check_signature(uri, raw)
    major, minor = raw[24], raw[25]
    header_size, opd, n_vlrs = struct.unpack_from("<HII", raw, 94)
    if major != 1 or minor > 4:
        raise FormatError(uri, 24, f"LAS version {major}.{minor}: versions 1.0 to 1.4 are supported")
    if header_size < HEADER_MIN or header_size > opd:
        raise FormatError(uri, 94, f"inconsistent header: header size {header_size}, point data at byte {opd}")
    if opd > size:
        raise FormatError(uri, 96, f"the header puts point data at byte {opd}, past the end of the {size}-byte "
                                   "object (truncated, or not a LAS file)")
    if n_vlrs * VLR_HEADER > opd - header_size:
        # laspy reads VLR headers past the end of a short buffer without an error: a flipped count would
        # have it loop over billions of empty VLRs (found by the fuzz run)
        raise FormatError(uri, 100, f"the header lists {n_vlrs} VLRs ({VLR_HEADER} bytes each at least) but only "
                                    f"{opd - header_size} bytes lie between the header and the point data")
    if opd > len(raw):
        raw += read(len(raw), opd)
    raw = raw[:opd]
    laspy = need("laspy")
    try:
        hdr = laspy.LasHeader.read_from(io.BytesIO(raw))
    except Exception as e:  # laspy raises several types for a damaged header or VLR
        raise FormatError(uri, 0, f"bad LAS header or VLRs ({type(e).__name__}: {e})") from e
    pf = hdr.point_format
    rec_len = struct.unpack_from("<H", raw, 105)[0]
    dtype = pf.dtype()
    if dtype.itemsize != rec_len:
        raise FormatError(uri, 105, f"point records of {rec_len} bytes do not fit point format {pf.id} "
                                    f"({dtype.itemsize} bytes with its extra bytes)")
    laszip = None
    if hdr.are_points_compressed:
        vlrs = hdr.vlrs.get("LasZipVlr")
        if not vlrs:
            raise FormatError(uri, 104, "the point format says LAZ (compressed) but there is no LASzip VLR")
        record = bytes(vlrs[0].record_data)
        try:
            items = need("lazrs").LazVlr(record).item_size()
        except BaseException as e:  # LazrsError for an unknown compressor or item
            if not native_failure(e):
                raise
            raise FormatError(uri, header_size, f"bad LASzip VLR ({type(e).__name__}: {e})") from e
        if items != rec_len:
            raise FormatError(uri, 105, f"point records of {rec_len} bytes, but the LASzip VLR compresses records of "
                                        f"{items} bytes: the header or the VLR is damaged")
        laszip = base64.b64encode(record).decode()
    desc: dict[str, Any] = {
        "version": f"{major}.{minor}", "point_format": int(pf.id), "record_length": int(rec_len),
        "points": int(hdr.point_count), "scales": [float(v) for v in hdr.scales],
        "offsets": [float(v) for v in hdr.offsets], "mins": [float(v) for v in hdr.mins],
        "maxs": [float(v) for v in hdr.maxs], "opd": int(opd), "vlrs": int(n_vlrs),
        "compressed": bool(hdr.are_points_compressed), "laszip": laszip,
        "evlr_start": int(getattr(hdr, "start_of_first_evlr", 0) or 0),
        "evlr_count": int(getattr(hdr, "number_of_evlrs", 0) or 0),
        "copc": copc_info(uri, raw, header_size, n_vlrs), **layout(pf),
    }
    if not hdr.are_points_compressed and desc["points"] and opd + desc["points"] * rec_len > size:
        end = opd + desc["points"] * rec_len
        raise FormatError(uri, opd, f"the header promises {desc['points']} points of {rec_len} bytes (to byte {end}) "
                                    f"but the object has {size} bytes: truncated")
    return desc, raw


def copc_info(uri: str, raw: bytes, header_size: int, n_vlrs: int) -> dict[str, Any] | None:
    """The COPC info VLR (user ``copc``, record 1) as a dict, or None when the file has none."""
    at = header_size
    for _ in range(n_vlrs):
        if at + VLR_HEADER > len(raw):
            break
        user = raw[at + 2: at + 18].split(b"\0", 1)[0]
        record, length = struct.unpack_from("<HH", raw, at + 18)
        body = at + VLR_HEADER
        if user == b"copc" and record == 1:
            if length < 80 or body + 80 > len(raw):
                raise FormatError(uri, at, f"the COPC info VLR has {length} bytes, 160 expected")
            cx, cy, cz, half, spacing = struct.unpack_from("<5d", raw, body)
            root_offset, root_size = struct.unpack_from("<QQ", raw, body + 40)
            return {"center": [cx, cy, cz], "halfsize": half, "spacing": spacing, "root_offset": int(root_offset),
                    "root_size": int(root_size), "at": at}
        at = body + length
    return None


def layout(pf: Any) -> dict[str, Any]:
    """The columns of a laspy ``PointFormat``: a JSON-able record dtype plus one spec per column.

    A spec is ``{"name", "type", "field"}`` plus ``axis`` (x/y/z), ``mask``/``shift`` (bit fields),
    ``shape`` (array extra bytes), ``scale``/``offset`` (scaled extra bytes), ``check64`` (uint64).
    """
    from laspy.point import dims

    dtype = pf.dtype()
    sub = dims.get_sub_fields_dict(pf.id)
    columns: list[dict[str, Any]] = [{"name": n, "type": "float64", "field": f, "axis": i}
                                     for i, (n, f) in enumerate((("x", "X"), ("y", "Y"), ("z", "Z")))]
    for d in pf.dimensions:
        if d.name in ("X", "Y", "Z"):
            continue
        if d.name in sub:
            field, bits = sub[d.name]
            mask = int(bits.mask)
            shift = (mask & -mask).bit_length() - 1
            columns.append({"name": d.name, "type": "bool" if mask >> shift == 1 else "int16", "field": field,
                            "mask": mask, "shift": shift})
            continue
        ft = dtype.fields[d.name][0]
        base, shape = ft.base, int(np.prod(ft.shape)) if ft.shape else 1
        spec: dict[str, Any] = {"name": d.name, "field": d.name, "shape": shape}
        if not d.is_standard and d.name == "ExtraBytes" and d.description == "Un-registered ExtraBytes":
            spec.update(type="binary")  # bytes no Extra Bytes VLR describes: kept whole, as laspy does
        elif getattr(d, "scales", None) is not None and d.is_scaled:
            spec.update(type="float64", scale=[float(v) for v in np.ravel(d.scales)],
                        offset=[float(v) for v in np.ravel(d.offsets if d.offsets is not None else [0.0])])
        else:
            code = f"{base.kind}{base.itemsize}"
            if code not in _WIDEN:
                raise ValueError(f"dimension {d.name!r} has type {base}, which no column type holds")
            spec.update(type=_WIDEN[code], check64=code == "u8")
        columns.append(spec)
    return {"dtype": [[n, dtype.fields[n][0].base.str, list(dtype.fields[n][0].shape)] for n in dtype.names],
            "columns": columns}


def record_dtype(doc: Iterable[list[Any]]) -> np.dtype:
    """The numpy record dtype of a :func:`layout`'s ``dtype`` entry (packed, little-endian)."""
    return np.dtype([(n, t, tuple(s)) if s else (n, t) for n, t, s in doc])


# -- schema -------------------------------------------------------------------------------------------------
def schema_key(desc: Mapping[str, Any]) -> list[list[Any]]:
    """What the row schema depends on: column names, types and array widths (not scales or offsets)."""
    return [[c["name"], c["type"], int(c.get("shape", 1))] for c in desc["columns"]]


def arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    return {"bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
            "float32": pa.float32(), "float64": pa.float64(), "binary": pa.binary()}[name]


def arrow_schema(key: Iterable[list[Any]]) -> pa.Schema:
    import pyarrow as pa

    fields = []
    for name, type_, shape in key:
        t = arrow_type(type_)
        fields.append(pa.field(name, pa.list_(t) if shape > 1 and type_ != "binary" else t))
    return pa.schema(fields)


def selection_bits(point_format: int, names: Iterable[str] | None, need_z: bool) -> int | None:
    """lazrs ``DecompressionSelection`` bits that decode just these columns (None: everything).

    Only the layered point formats (6-10) can skip layers; for the others LASzip decodes whole points.
    """
    if names is None or point_format < 6:
        return None
    lazrs = need("lazrs")
    bits = lazrs.SELECTIVE_DECOMPRESS_XY_RETURNS_CHANNEL
    wanted = set(names) | ({"z"} if need_z else set())
    for name in wanted:
        layer = _SELECT_BITS.get(name)
        if layer is not None:
            bits |= getattr(lazrs, f"SELECTIVE_DECOMPRESS_{layer}")
        elif name not in ("x", "y", "return_number", "number_of_returns"):
            bits |= lazrs.SELECTIVE_DECOMPRESS_ALL_EXTRA_BYTES
    return int(bits)


# -- decoding -----------------------------------------------------------------------------------------------
#: LASzip item type -> the layers it has in a layered (LAS 1.4) chunk: POINT14 9, RGB14 1, RGBNIR14 2,
#: WAVEPACKET14 1; BYTE14 has one per extra byte (its size)
_LAYERS = {10: 9, 11: 1, 12: 2, 13: 1}
_LAYERED_COMPRESSOR = 3


@functools.lru_cache(maxsize=64)
def layer_count(laszip: bytes) -> int | None:
    """How many layer sizes a chunk lists after its first point, or None when the VLR's compressor is not the
    layered one (LASzip VLR: compressor u16 at 0, item count u16 at 32, items of (type, size, version) u16)."""
    if len(laszip) < 34 or struct.unpack_from("<H", laszip, 0)[0] != _LAYERED_COMPRESSOR:
        return None
    (n,) = struct.unpack_from("<H", laszip, 32)
    items = [struct.unpack_from("<HHH", laszip, 34 + 6 * i) for i in range(min(n, (len(laszip) - 34) // 6))]
    return sum(size if typ == 14 else _LAYERS.get(typ, 0) for typ, size, _ in items)


def check_layers(uri: str, offset: int, data: bytes | memoryview, laszip: bytes, rec_len: int) -> None:
    """Refuse a layered chunk whose layer sizes overrun its bytes, before laz-rs sees it.

    laz-rs allocates (and zero-fills) each layer at the size the chunk states: one damaged size made it touch
    4 GiB for a 1 KiB chunk (found by the fuzz run), enough to get an executor killed.
    """
    layers = layer_count(laszip)
    if layers is None:
        return
    head = rec_len + 4 + 4 * layers  # the first point as it is, the point count, then the layer sizes
    if len(data) < head:
        raise FormatError(uri, offset, f"a LAZ chunk of {len(data)} bytes cannot hold its first point and its "
                                       f"{layers} layer sizes ({head} bytes): the chunk is damaged")
    claimed = int(np.frombuffer(data, "<u4", layers, rec_len + 4).sum(dtype=np.uint64))
    if claimed > len(data) - head:
        raise FormatError(uri, offset, f"the LAZ chunk in bytes [{offset}, {offset + len(data)}) lists layers of "
                                       f"{claimed} bytes but holds {len(data) - head}: the chunk is damaged")


def decompress(uri: str, offset: int, data: bytes | memoryview, laszip: bytes, count: int, rec_len: int,
               selection: int | None = None) -> np.ndarray:
    """One LAZ chunk (or COPC node) of ``count`` points from its bytes and the LASzip VLR only.

    Never through laz-rs's seeking decompressor: it returns wrong points for files with variable-size chunks.
    """
    lazrs = need("lazrs")
    check_layers(uri, offset, data, laszip, rec_len)
    out = np.zeros(count * rec_len, dtype=np.uint8)
    sel = None if selection is None else lazrs.DecompressionSelection(selection)
    try:
        lazrs.decompress_points_with_chunk_table(bytes(data), laszip, out, [(count, len(data))], sel)
    except BaseException as e:  # lazrs raises its own error type, IOError for short input, or panics
        if not native_failure(e):
            raise
        raise FormatError(uri, offset, f"cannot decompress the LAZ chunk of {count} points in bytes "
                                       f"[{offset}, {offset + len(data)}) ({e})") from e
    return out


def xyz(rec: np.ndarray, scales: list[float], offsets: list[float]) -> list[np.ndarray]:
    """Scaled coordinates exactly as laspy computes them (``X * scale + offset`` in float64)."""
    return [rec[f] * scales[i] + offsets[i] for i, f in enumerate("XYZ")]


def raw_bounds(rec: np.ndarray, scales: list[float], offsets: list[float]) -> list[float]:
    """``[xmin, ymin, zmin, xmax, ymax, zmax]`` of the scaled coordinates, from the raw integer extremes.

    Scaling is monotonic (and so is float rounding), so the extremes of the raw integers scale to the extremes
    of the doubles laspy returns: exact, at the cost of two integer reductions per axis.
    """
    lo, hi = [], []
    for i, f in enumerate("XYZ"):
        a, b = rec[f].min() * scales[i] + offsets[i], rec[f].max() * scales[i] + offsets[i]
        lo.append(float(min(a, b)))
        hi.append(float(max(a, b)))
    return lo + hi


def in_box(coords: list[np.ndarray], box: Box) -> np.ndarray | None:
    """Mask of the points inside the closed box (None: the box keeps every point)."""
    mask = None
    for c, lo, hi in zip(coords, (box.xmin, box.ymin, box.zmin), (box.xmax, box.ymax, box.zmax), strict=True):
        for keep in ((c >= lo) if lo != -np.inf else None, (c <= hi) if hi != np.inf else None):
            if keep is not None:
                mask = keep if mask is None else mask & keep
    return mask


def to_batch(uri: str, offset: int, rec: np.ndarray, columns: list[dict[str, Any]], scales: list[float],
             offsets: list[float], schema: pa.Schema, box: Box | None) -> pa.RecordBatch:
    """Point records -> one record batch of ``schema``'s columns (a subset of ``columns``, in its order).

    ``box`` keeps only the points inside it (closed on every side), compared on the scaled doubles the rows
    hold, so ``bbox`` and a ``WHERE x BETWEEN ...`` agree.
    """
    import pyarrow as pa

    if box is not None:
        mask = in_box(xyz(rec, scales, offsets), box)
        if mask is not None:
            rec = rec[mask]
    specs = {c["name"]: c for c in columns}
    n = len(rec)
    arrays = []
    for field in schema:
        c = specs[field.name]
        raw = rec[c["field"]]
        if "axis" in c:
            arrays.append(pa.array(raw * scales[c["axis"]] + offsets[c["axis"]], pa.float64()))
            continue
        if "mask" in c:
            bits = raw & c["mask"]
            arrays.append(pa.array(bits != 0) if c["type"] == "bool" else
                          pa.array((bits >> c["shift"]).astype(np.int16)))
            continue
        shape = int(c.get("shape", 1))
        if c["type"] == "binary":
            flat = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
            offs = np.arange(0, n * shape + 1, shape, dtype=np.int32)
            arrays.append(pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offs), pa.py_buffer(flat)]))
            continue
        flat = raw.reshape(-1)
        if "scale" in c:
            k = len(c["scale"])
            sc = np.asarray(c["scale"]) if k > 1 else c["scale"][0]
            of = np.asarray(c["offset"]) if len(c["offset"]) > 1 else c["offset"][0]
            vals = (raw * sc + of).reshape(-1)
        else:
            if c.get("check64") and len(flat) and flat.max() > INT64_MAX:
                raise FormatError(uri, offset, f"column {c['name']!r} holds {int(flat.max())}, more than a Spark "
                                               "bigint holds (2^63-1)")
            vals = flat.astype(np.dtype(c["type"]), copy=False)
        values = pa.array(vals, arrow_type(c["type"]))
        if shape > 1:
            offs = pa.array(np.arange(0, n * shape + 1, shape, dtype=np.int32))
            values = pa.ListArray.from_arrays(offs, values)
        arrays.append(values)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# -- LAZ chunk table and COPC hierarchy -----------------------------------------------------------------------
def chunk_table(uri: str, size: int, desc: Mapping[str, Any], read: Callable[[int, int], bytes]) -> list[list[int]]:
    """The chunks of a LAZ object: ``[first point, points, byte offset, bytes]`` each, in file order.

    The 8 bytes at the start of point data give the table's offset (``-1``: LASzip wrote it in the object's
    last 8 bytes). Fixed-size tables hold only byte counts: every chunk has ``chunk_size`` points but the last,
    which holds the rest. Empty chunks (a writer's trailing ``finish``) are left out.
    """
    lazrs = need("lazrs")
    opd, total = int(desc["opd"]), int(desc["points"])
    laszip = base64.b64decode(desc["laszip"])
    if opd + 8 > size:
        raise FormatError(uri, opd, "the LAZ object ends before its chunk table offset (truncated)")
    (table_at,) = struct.unpack("<q", read(opd, opd + 8))
    where = f"the chunk table offset at byte {opd} is {table_at}"
    if table_at == -1 and size >= opd + 16:
        (table_at,) = struct.unpack("<q", read(size - 8, size))
        where = f"the chunk table offset is -1 and the object's last 8 bytes say {table_at}"
    if not opd + 8 <= table_at <= size - 8:
        raise FormatError(uri, opd, f"{where}, not a position inside the object's {size} bytes: the LAZ file has no "
                                    "chunk table (an unfinished or truncated write)")
    version, count = struct.unpack("<II", read(table_at, table_at + 8))
    if version != 0 or count > (table_at - opd - 8) + 1:
        raise FormatError(uri, table_at, f"no valid LAZ chunk table at byte {table_at} (version {version}, "
                                         f"{count} chunks): the file is damaged or truncated")
    end = int(desc.get("evlr_start") or 0)
    end = end if end > table_at else size
    raw = read(table_at, min(end, table_at + 8 + 16 * count + 256))
    try:
        vlr = lazrs.LazVlr(laszip)
        entries = lazrs.read_chunk_table_only(io.BytesIO(raw), vlr) if count else []
    except BaseException as e:
        if not native_failure(e):
            raise
        raise FormatError(uri, table_at, f"cannot read the LAZ chunk table ({e}): the file is damaged or truncated") \
            from e
    if len(entries) != count:
        raise FormatError(uri, table_at, f"the LAZ chunk table lists {len(entries)} chunks, its header {count}")
    sizes = [int(b) for _, b in entries]
    if vlr.uses_variable_size_chunks():
        counts = [int(p) for p, _ in entries]
    else:
        per = int(vlr.chunk_size())
        counts = [per] * count
        if count:
            counts[-1] = total - per * (count - 1)
            if not 0 < counts[-1] <= per:
                raise FormatError(uri, table_at, f"the LAZ chunk table lists {count} chunks of {per} points, which "
                                                 f"cannot hold the {total} points the header declares")
    if sum(counts) != total:
        raise FormatError(uri, table_at, f"the LAZ chunk table holds {sum(counts)} points, the header declares {total}")
    out, first, at = [], 0, opd + 8
    for n, b in zip(counts, sizes, strict=True):
        if n > 0:
            out.append([first, n, at, b])
        first, at = first + n, at + b
    if at > table_at:
        raise FormatError(uri, table_at, f"the LAZ chunks end at byte {at}, past their chunk table at {table_at}: "
                                         "the file is damaged")
    return out


def copc_nodes(uri: str, size: int, desc: Mapping[str, Any], read: Callable[[int, int], bytes]) -> list[list[Any]]:
    """Every node of a COPC octree with points: ``[level, x, y, z, offset, bytes, points, cube bounds (6)]``.

    Walks the hierarchy pages from the root page named by the COPC info VLR, one ranged read per page. A page
    met twice (a cycle, or a repeated key -- laspy loops forever on those) or a key listed twice fails with
    what is wrong; so does a node whose bytes lie outside the object.
    """
    info = desc["copc"]
    opd = int(desc["opd"])
    half = float(info["halfsize"])
    if not half > 0:
        raise FormatError(uri, info["at"], f"the COPC info VLR gives a cube half size of {half}")
    wave = [(int(info["root_offset"]), int(info["root_size"]), (0, 0, 0, 0))]
    seen_pages: set[int] = set()
    node_keys: set[tuple[int, int, int, int]] = set()
    page_keys: set[tuple[int, int, int, int]] = {(0, 0, 0, 0)}
    nodes: list[list[Any]] = []
    entry = np.dtype([("key", "<i4", (4,)), ("offset", "<u8"), ("size", "<i4"), ("count", "<i4")])
    while wave:  # one level of pages at a time: parents before children, siblings read concurrently
        for at, nbytes, _ in wave:
            if at in seen_pages:
                raise FormatError(uri, at, f"the COPC hierarchy names the page at byte {at} twice (a repeated or "
                                           "cyclic page): the hierarchy is damaged")
            seen_pages.add(at)
            if nbytes % 32 or at < opd or at + nbytes > size:
                raise FormatError(uri, at, f"a COPC hierarchy page of {nbytes} bytes at byte {at} does not fit the "
                                           f"{size}-byte object in 32-byte entries (truncated or damaged)")
        datas = _read_many(read, [(at, at + nbytes) for at, nbytes, _ in wave])
        children: list[tuple[int, int, tuple[int, int, int, int]]] = []
        for (at, _, page_key), raw in zip(wave, datas, strict=True):
            _page_nodes(uri, at, page_key, np.frombuffer(raw, dtype=entry), info, opd, size, node_keys, page_keys,
                        nodes, children)
        wave = children
    total = sum(n[6] for n in nodes)
    if total != int(desc["points"]):
        raise FormatError(uri, int(info["root_offset"]), f"the COPC hierarchy holds {total} points, the header "
                                                         f"declares {desc['points']}")
    nodes.sort(key=lambda n: n[4])
    return nodes


def _read_many(read: Callable[[int, int], bytes], spans: list[tuple[int, int]]) -> list[bytes]:
    """Several ranged reads, a few at a time (on S3 each is a round trip; a hierarchy has many pages)."""
    if len(spans) == 1:
        return [read(*spans[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(spans)), thread_name_prefix="dataplug-copc") as pool:
        return list(pool.map(lambda s: read(*s), spans))


def _page_nodes(uri: str, at: int, page_key: tuple[int, int, int, int], entries: np.ndarray,
                info: Mapping[str, Any], opd: int, size: int, node_keys: set[tuple[int, int, int, int]],
                page_keys: set[tuple[int, int, int, int]], nodes: list[list[Any]],
                children: list[tuple[int, int, tuple[int, int, int, int]]]) -> None:
    """The entries of one hierarchy page: nodes into ``nodes``, child pages into ``children``, keys checked."""
    center, half = info["center"], float(info["halfsize"])
    for e in entries:
        key = tuple(int(v) for v in e["key"])
        off, nb, cnt = int(e["offset"]), int(e["size"]), int(e["count"])
        name = "-".join(map(str, key))
        # keys are int32: a depth past 31 cannot be (and 1 << a flipped depth of 2**31 is a 256 MiB integer)
        if cnt < -1 or not 0 <= key[0] <= 31 or any(k < 0 or k >= 1 << key[0] for k in key[1:]):
            raise FormatError(uri, at, f"COPC hierarchy entry {name} is invalid (point count {cnt})")
        # a key is one node and at most one page; a page's own key may be a node only inside that page
        # (laspy's reader loops forever on hierarchies that break this)
        if cnt == -1 and (key in page_keys or key in node_keys) or cnt >= 0 and (
                key in node_keys or (key in page_keys and key != page_key)):
            raise FormatError(uri, at, f"the COPC hierarchy lists key {name} twice: the hierarchy is damaged")
        if cnt == -1:
            page_keys.add(key)
            children.append((off, nb, key))
            continue
        node_keys.add(key)
        if cnt == 0:
            continue
        if nb <= 0 or off < opd or off + nb > size:
            raise FormatError(uri, at, f"COPC node {name} puts {nb} bytes at byte {off}, "
                                       f"outside the {size}-byte object's point data (truncated?)")
        side = 2 * half / (1 << key[0])
        lo = [center[i] - half + key[i + 1] * side for i in range(3)]
        nodes.append([*key, off, nb, cnt, *lo, *(v + side for v in lo)])
