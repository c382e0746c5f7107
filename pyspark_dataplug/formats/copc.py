"""COPC (Cloud-Optimized Point Cloud): one row per point, sliced by octree nodes.

A COPC file is a LAZ 1.4 file (point formats 6-8) whose points are grouped in the nodes of an octree; each
node is one independently decodable LAZ chunk, and the hierarchy (key ``level-x-y-z`` -> byte offset, byte
size, point count) lives in pages that the COPC info VLR points to.

**The index** is the whole hierarchy, read once page by page with ranged reads: one row per node with points
(level, key, offset, bytes, points) plus the node's cube, from the info VLR's center and half size. A page
named twice (a cycle, or a repeated page -- laspy's reader loops forever on those) or a key listed twice is
an error, as is a node outside the object. No point is decoded to build it.

**Slices** are groups of whole nodes in file order, balanced by points (strategy ``points``) or by node count
(``nodes``); adjacent nodes of a slice are fetched as one byte range, and each node is decoded on its own
(lazrs, with that node's point count and byte size). ``maxLevel`` reads only the nodes of levels
``0..maxLevel`` (level-of-detail reads: ``laspy.CopcReader.query(level=range(0, maxLevel + 1))``). ``bbox``
drops nodes whose cube misses the box before any point byte is read, then filters points exactly (on the
doubles the rows hold); ``x``/``y``/``z`` filters Spark pushes prune nodes the same way. Cubes are widened
by one coordinate step when pruning, so a point rounded onto its cube's face is never lost.

Rows are the ``las`` format's (see :mod:`._laspoints`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cloudobject import by_strategy
from ..errors import FormatError
from ..options import Opt
from ..storage import get_storage
from . import _laspoints as lp
from .las import BBOX, Pieces, PointCloud

if TYPE_CHECKING:
    from ..index.store import Index
    from ..storage import ObjectInfo, StorageOptions

_BOUNDS = ("xmin", "ymin", "zmin", "xmax", "ymax", "zmax")


class COPC(PointCloud):
    name: ClassVar[str] = "copc"
    options: ClassVar[tuple[Opt, ...]] = (
        BBOX,
        Opt("maxLevel", "int", None, bounds=(0, 64),
            doc="read only octree levels 0..maxLevel (level of detail: each level about doubles the density)"),
    )
    strategies: ClassVar[dict[str, str]] = {
        "points": "equal numbers of points per slice, cut between whole nodes",
        "nodes": "equal numbers of octree nodes per slice",
    }
    piece_table: ClassVar[str] = "nodes"
    piece_strategy: ClassVar[str] = "nodes"
    bounds_slack: ClassVar[float] = 1.0

    def kept(self, pieces: Pieces, desc: Mapping[str, Any]) -> np.ndarray:
        keep = super().kept(pieces, desc)
        max_level = self.params.get("maxLevel")
        if max_level is not None and pieces.level is not None:
            keep &= pieces.level <= int(max_level)
        return keep

    def splittable(self, desc: Mapping[str, Any]) -> bool:
        return False

    def pieces(self, index: Index) -> Pieces:
        t = index.tables["nodes"]
        count = t.column("points").to_numpy()
        return Pieces(np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64), count,
                      t.column("offset").to_numpy(), t.column("size").to_numpy(),
                      np.stack([t.column(n).to_numpy() for n in _BOUNDS], axis=1), t.column("level").to_numpy())

    def object_pieces(self, uri: str, size: int, desc: Mapping[str, Any], read: Callable[[int, int], bytes],
                      scan: bool = False) -> Pieces:
        nodes = self._nodes(uri, size, desc, read)
        a = np.asarray([n[:7] for n in nodes], dtype=np.int64).reshape(-1, 7)
        b = np.asarray([n[7:] for n in nodes], dtype=np.float64).reshape(-1, 6)
        first = np.concatenate(([0], np.cumsum(a[:, 6])[:-1])).astype(np.int64)
        return Pieces(first, a[:, 6], a[:, 4], a[:, 5], b, a[:, 0])

    @staticmethod
    def _nodes(uri: str, size: int, desc: Mapping[str, Any], read: Callable[[int, int], bytes]) -> list[list[Any]]:
        if desc.get("copc") is None:
            raise FormatError(uri, 0, "not a COPC file: it has no COPC info VLR (user 'copc', record 1); read it "
                                      "with format 'laz'")
        if not desc["compressed"] or desc["point_format"] not in (6, 7, 8):
            raise FormatError(uri, 104, f"not a COPC file: COPC points are LAZ point formats 6-8, this file has "
                                        f"{'compressed' if desc['compressed'] else 'uncompressed'} format "
                                        f"{desc['point_format']}")
        return lp.copc_nodes(uri, size, desc, read)

    # -- index build: the hierarchy only, one task per object ---------------------------------------------
    def build_tasks(self, info: ObjectInfo, head: bytes, index_dir: str,
                    storage: StorageOptions | None = None) -> list[dict[str, Any]]:
        lp.check_signature(info.uri, head)
        return [{"kind": "header", "uri": info.uri, "size": info.size, "etag": info.etag, "index_dir": index_dir}]

    def build_map(self, task: Mapping[str, Any], storage: StorageOptions) -> list[dict[str, Any]]:
        from ..index.store import store_blob

        uri, size, etag = task["uri"], int(task["size"]), task["etag"]
        st = get_storage(uri, storage)

        def read(a: int, b: int) -> bytes:
            return st.read(uri, a, b, etag=etag)

        desc, raw = lp.read_header(uri, size, read)
        nodes = self._nodes(uri, size, desc, read)
        return [{"header": desc, "nodes": nodes, "blob": store_blob(task["index_dir"], "header", raw, storage),
                 "blob_size": len(raw)}]

    def build_followup(self, info: ObjectInfo, rows: list[dict[str, Any]], index_dir: str) -> list[dict[str, Any]]:
        return []

    def build_reduce(self, info: ObjectInfo, rows: list[dict[str, Any]], storage: StorageOptions) -> Index:
        import pyarrow as pa

        from ..index.store import Index

        head = rows[0]
        desc, nodes = head["header"], head["nodes"]
        ints = np.asarray([n[:7] for n in nodes], dtype=np.int64).reshape(-1, 7)
        cube = np.asarray([n[7:] for n in nodes], dtype=np.float64).reshape(-1, 6)
        names = ("level", "x", "y", "z", "offset", "size", "points")
        table = pa.table({**{n: pa.array(ints[:, j], pa.int32() if j < 4 else pa.int64()) for j, n in enumerate(names)},
                          **{n: pa.array(cube[:, j], pa.float64()) for j, n in enumerate(_BOUNDS)}})
        manifest = {"index_params": self.index_params(), "records": int(desc["points"]),
                    "uncompressed_size": int(desc["points"]) * int(desc["record_length"]), "compression": "copc",
                    "pieces": len(nodes), "levels": int(ints[:, 0].max()) + 1 if len(nodes) else 0,
                    "blobs": {"header": head["blob"]}, "blob_sizes": {"header": int(head["blob_size"])},
                    "attrs": {"las": desc}}
        return Index(manifest, {"nodes": table})


partition_points_batches = by_strategy("points")
partition_nodes_batches = by_strategy("nodes")


# The seed Dataplug's names (formats.geospatial.copc). Its square split cut the extent into a grid; here
# slices hold equal numbers of points in whole octree nodes: read an area with the ``bbox`` option.
CloudOptimizedPointCloud = COPC
square_split_strategy = by_strategy("points", "num_chunks")
