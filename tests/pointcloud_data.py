"""Point clouds for the LAS/LAZ/COPC tests, written by laspy, lazrs and copclib (never by our code).

Points come in flight-line order: strips across the extent, each swept along x, so consecutive points (and so
LAZ chunks, LAS record runs) are spatially compact, as in real surveys -- what makes bbox pruning pay.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

EXTENT = (1000.0, 2000.0, 0.0, 2000.0, 3000.0, 50.0)  # xmin, ymin, zmin, xmax, ymax, zmax
SCALE = 0.01
OFFSET = (1000.0, 2000.0, 0.0)


def flight_lines(n: int, seed: int, strips: int = 20) -> np.ndarray:
    """``(n, 3)`` coordinates on the scale grid: ``strips`` strips along y, each swept in x, alternately."""
    rng = np.random.default_rng(seed)
    x0, y0, z0, x1, y1, z1 = EXTENT
    per = max(1, -(-n // strips))
    strip = np.repeat(np.arange(strips), per)[:n]
    t = np.tile(np.linspace(0, 1, per, endpoint=False), strips)[:n] + rng.uniform(0, 1 / per, n)
    t = np.where(strip % 2 == 1, 1 - t, t)
    width = (y1 - y0) / strips
    xyz = np.stack([x0 + t * (x1 - x0), y0 + (strip + rng.uniform(0, 1, n)) * width, rng.uniform(z0, z1, n)], axis=1)
    return np.round((xyz - OFFSET) / SCALE) * SCALE + OFFSET


def make_las(pf: int, version: str, n: int, seed: int = 1, extra: bool = False) -> Any:
    """A ``laspy.LasData`` with every dimension of point format ``pf`` filled with varied values."""
    import laspy

    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=pf, version=version)
    header.scales = [SCALE] * 3
    header.offsets = list(OFFSET)
    if extra:
        header.add_extra_dims([
            laspy.ExtraBytesParams("height", "f4"),
            laspy.ExtraBytesParams("refl", "u2", scales=np.array([0.01]), offsets=np.array([1.0])),
            laspy.ExtraBytesParams("normals", "3f8"),
            laspy.ExtraBytesParams("tag", "u8"),
            laspy.ExtraBytesParams("rank", "i1"),
        ])
    las = laspy.LasData(header)
    xyz = flight_lines(n, seed)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    for d in las.point_format.dimensions:
        if d.name in ("X", "Y", "Z"):
            continue
        arr = np.asarray(las[d.name])
        if arr.dtype.kind == "f":
            values = rng.uniform(-1e6, 1e6, arr.shape)
        else:
            info = np.iinfo(arr.dtype) if d.num_bits >= 8 else None
            hi = (info.max if info is not None else (1 << d.num_bits) - 1)
            lo = info.min if info is not None else 0
            values = rng.integers(lo, min(hi, 1 << 62), arr.shape, endpoint=True, dtype=np.int64)
            if arr.dtype == np.uint64:
                values = values.astype(np.uint64)
        if d.name == "gps_time":
            values = np.arange(n, dtype=np.float64) * 0.5  # unique: sorts points for order-free comparisons
        if d.name == "refl":
            values = rng.integers(0, 600, arr.shape) * 0.01 + 1.0
        las[d.name] = values.astype(arr.dtype) if d.name != "refl" else values
    return las


def las_bytes(las: Any, compress: bool) -> bytes:
    buf = io.BytesIO()
    las.write(buf, do_compress=compress)
    return buf.getvalue()


def laz_variable_chunks(las: Any, cuts: Sequence[int]) -> bytes:
    """LAZ with variable-size chunks ending at the points in ``cuts`` (laspy writes only fixed 50k chunks).

    The header comes from laspy's own LAZ (its LASzip VLR swapped for a variable-chunk one of the same size);
    the points are compressed by lazrs, cut where asked.
    """
    import laspy
    import lazrs

    fixed = las_bytes(las, True)
    header = laspy.LasHeader.read_from(io.BytesIO(fixed))
    opd = header.offset_to_point_data
    old = bytes(header.vlrs.get("LasZipVlr")[0].record_data)
    vlr = lazrs.LazVlr.new_for_compression(las.point_format.id, las.point_format.num_extra_bytes, True)
    new = bytes(vlr.record_data())
    head = fixed[:opd]
    assert len(new) == len(old) and head.count(old) == 1
    out = io.BytesIO()
    out.write(head.replace(old, new))
    comp = lazrs.LasZipCompressor(out, vlr)
    raw = np.frombuffer(las.points.array.tobytes(), np.uint8)
    rl = las.point_format.size
    bounds = [0, *cuts, len(las.points)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        if b > a:
            comp.compress_many(raw[a * rl: b * rl])
            comp.finish_current_chunk()
    comp.done()
    return out.getvalue()


def chunk_table_offset_at(data: bytes) -> tuple[int, int]:
    """(position of the chunk-table offset field, its value) in a LAZ file."""
    opd = struct.unpack_from("<I", data, 96)[0]
    return opd, struct.unpack_from("<q", data, opd)[0]


# -- COPC ------------------------------------------------------------------------------------------------
def write_copc(path: str, pf: int, n: int, seed: int = 3, depth: int = 5, paged: bool = True,
               misplaced: bool = False) -> np.ndarray:
    """A COPC file written by copclib: points spread over ``depth`` octree levels (about 4x more points per
    level, as for 2.5-D survey data), one hierarchy page per level-1 node when ``paged``. Returns the point
    records. ``misplaced`` puts the level-1 nodes in the root page although their keys name pages too: copclib
    writes that without complaint, and laspy's CopcReader loops forever on it."""
    import copclib
    import laspy

    rng = np.random.default_rng(seed)
    x0, y0, z0, x1, y1, z1 = EXTENT
    size = max(x1 - x0, y1 - y0, z1 - z0)
    lo = np.array([x0, y0, z0])
    cfg = copclib.CopcConfigWriter(pf, copclib.Vector3(SCALE, SCALE, SCALE), copclib.Vector3(*OFFSET))
    header = cfg.las_header
    header.min = copclib.Vector3(x0, y0, z0)
    header.max = copclib.Vector3(x1, y1, z1)
    info = cfg.copc_info
    info.center_x, info.center_y, info.center_z = lo + size / 2
    info.halfsize = size / 2
    info.spacing = size / 64
    writer = copclib.FileWriter(path, cfg)
    xyz = flight_lines(n, seed)
    weights = 4.0 ** np.arange(depth)
    level = rng.choice(depth, size=n, p=weights / weights.sum())
    rec = make_las(pf, "1.4", n, seed=seed).points.array.copy()
    rec["X"], rec["Y"], rec["Z"] = np.round((xyz - OFFSET) / SCALE).astype(np.int32).T
    rec["gps_time"] = rng.permutation(n).astype(np.float64)
    scaled = rec[["X", "Y", "Z"]]
    coords = np.stack([scaled["X"] * SCALE + OFFSET[0], scaled["Y"] * SCALE + OFFSET[1],
                       scaled["Z"] * SCALE + OFFSET[2]], axis=1)
    side = size / (2.0 ** level)
    key = np.minimum(np.floor((coords - lo) / side[:, None]).astype(np.int64), (1 << level)[:, None] - 1)
    order = np.lexsort((key[:, 2], key[:, 1], key[:, 0], level))
    rec, level, key = rec[order], level[order], key[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(level) != 0) | (np.diff(key, axis=0) != 0).any(axis=1)])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends, strict=True):
        d, k = int(level[a]), [int(v) for v in key[a]]
        if d == 0 or not paged or (misplaced and d == 1):
            page = copclib.VoxelKey(0, 0, 0, 0)
        else:
            page = copclib.VoxelKey(1, *(v >> (d - 1) for v in k))
        writer.AddNode(copclib.VoxelKey(d, *k), copclib.VectorChar(np.frombuffer(rec[a:b].tobytes(), np.int8)), page)
    writer.Close()
    assert laspy.PointFormat(pf).size == rec.dtype.itemsize
    return rec
