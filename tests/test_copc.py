"""COPC through the index and slices, in process (no Spark): laspy's CopcReader is the oracle.

Files are written by copclib (several hierarchy pages, five octree levels). laspy returns nodes in its own
traversal order, so rows are compared after sorting by ``gps_time``, which the writer makes unique.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import laspy  # the test extra installs it: a missing one must fail, not skip
import numpy as np
import pyarrow as pa
import pytest
from pointcloud_data import las_bytes, make_las, write_copc

from pyspark_dataplug.errors import FormatError
from pyspark_dataplug.formats import name_format
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset

N = 40_000


@pytest.fixture(scope="module")
def copc(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, str]:
    """Point formats 6-8 on four octree levels, and a deeper (five-level) one for level-of-detail and pruning.

    lazrs spends ~2 ms setting up each node's decoder whatever its size, so the shallow files (fewer, bigger
    nodes) keep the many-plans test fast.
    """
    out: dict[Any, str] = {}
    for pf, depth in ((6, 4), (7, 4), (8, 4), ("deep", 5)):
        path = tmp_path_factory.mktemp("copc") / f"cloud{pf}.copc.laz"
        write_copc(str(path), 6 if pf == "deep" else pf, N, seed=1 if pf == "deep" else pf, depth=depth)
        build(str(path))
        out[pf] = str(path)
    return out


def build(path: str, **options: Any) -> None:
    plan_build(path, None, **options).run(run_tasks_locally, force=True)


def slices(path: str, partitions: int, strategy: str | None = None, **options: Any) -> list[Any]:
    ds = open_dataset({"path": path, **options})
    return [s for part in ds.plan(partitions=partitions, strategy=strategy) for s in part]


def oracle(path: str, **query: Any) -> Any:
    with open(path, "rb") as f:
        points = laspy.CopcReader(f).query(**query)
    order = np.argsort(np.asarray(points.gps_time))
    return points, order


def assert_same(table: pa.Table, points: Any, order: np.ndarray) -> None:
    assert table.num_rows == len(order)
    mine = np.argsort(table.column("gps_time").to_numpy())
    for name in table.column_names:
        got = table.column(name).to_numpy(zero_copy_only=False)[mine]
        ref = np.asarray(points[name])[order]
        assert np.array_equal(got, ref != 0 if got.dtype == bool else ref), name


@pytest.mark.parametrize("pf", [6, 7, 8])
def test_rows_equal_copc_reader(copc: dict[Any, str], pf: int) -> None:
    points, order = oracle(copc[pf])
    assert len(order) == N
    index = open_dataset({"path": copc[pf]}).indexes[0]
    assert index.manifest["levels"] == 4 and index.tables["nodes"].num_rows > 40
    seen: dict[Any, pa.Table] = {}
    for strategy in ("points", "nodes"):
        for parts in (1, 2, 7, 40):
            got = slices(copc[pf], parts, strategy)
            assert 0 < len(got) <= parts
            for s in got:
                assert len(s.ranges) == 1  # nodes are written back to back: one range per slice
                if (s.ranges, s.rows) not in seen:
                    seen[(s.ranges, s.rows)] = s.get()
            assert_same(pa.concat_tables([seen[(s.ranges, s.rows)] for s in got]), points, order)
    counts = [s.rows for s in slices(copc[pf], 4, "points")]
    assert max(counts) < 1.5 * N / 4  # balanced by points, at node boundaries


def test_max_level_reads_levels_of_detail(copc: dict[Any, str]) -> None:
    path = copc["deep"]
    full = sum(s.nbytes for s in slices(path, 3))
    for level in (0, 2, 3):
        points, order = oracle(path, level=range(0, level + 1))
        got = slices(path, 3, maxLevel=level)
        assert_same(pa.concat_tables([s.get() for s in got]), points, order)
        assert sum(s.nbytes for s in got) < full * (0.35 if level < 3 else 0.5)


def test_bbox_prunes_nodes_and_filters_exactly(copc: dict[Any, str]) -> None:
    from laspy.copc import Bounds

    path = copc["deep"]
    full = sum(s.nbytes for s in slices(path, 4))
    # ~5% of the 1000 x 1000 m extent; edges off the 0.01 grid, on the side where laspy's rounding of the box
    # to integer coordinates and our comparison of the doubles agree
    box = (1400.006, 2300.006, 1623.454, 2523.454)
    points, order = oracle(path, bounds=Bounds(np.array(box[:2]), np.array(box[2:])))
    assert 0 < len(order) < N * 0.08
    for parts in (1, 3):
        got = slices(path, parts, bbox=",".join(map(str, box)))
        assert all(s.rows is None for s in got)
        assert sum(s.nbytes for s in got) / full < 0.2
        assert_same(pa.concat_tables([s.get() for s in got]), points, order)
    # with a level limit and a z range too
    points, order = oracle(path, bounds=Bounds(np.array([*box[:2], 10.0]), np.array([*box[2:], 30.0])),
                           level=range(0, 4))
    got = slices(path, 2, bbox=f"{box[0]},{box[1]},10,{box[2]},{box[3]},30", maxLevel=3)
    assert_same(pa.concat_tables([s.get() for s in got]), points, order)


def test_pushed_filters_prune_nodes(copc: dict[Any, str]) -> None:
    from pyspark.sql.datasource import GreaterThan, LessThanOrEqual

    from pyspark_dataplug.datasource import DataplugPushdownReader, DataplugReader

    opts = {"path": copc["deep"], "partitions": "3"}
    full = sum(s.nbytes for p in DataplugReader(opts, {}).partitions() for s in p.slices)
    reader = DataplugPushdownReader(opts, {})
    reader.pushFilters([GreaterThan(("x",), 1800), LessThanOrEqual(("y",), 2150)])
    pruned = [s for p in reader.partitions() for s in p.slices]
    assert sum(s.nbytes for s in pruned) / full < 0.2
    table = pa.concat_tables([s.get() for s in pruned])
    points, _ = oracle(copc["deep"])
    x, y = np.asarray(points.x), np.asarray(points.y)
    assert set(np.asarray(points.gps_time)[(x > 1800) & (y <= 2150)]) <= set(table.column("gps_time").to_pylist())


def test_single_page_hierarchy_and_name(tmp_path: Path) -> None:
    path = tmp_path / "flat.copc.laz"
    write_copc(str(path), 6, 3_000, paged=False, depth=3)
    assert name_format(str(path)) == "copc"
    build(str(path))
    points, order = oracle(str(path))
    assert_same(pa.concat_tables([s.get() for s in slices(str(path), 2)]), points, order)
    table = pa.concat_tables([s.get() for s in slices(str(path), 2, missingIndex="scan")])
    assert_same(table, points, order)


# -- bad input -------------------------------------------------------------------------------------------------
def _root_page(data: bytes) -> tuple[int, int]:
    header_size = struct.unpack_from("<H", data, 94)[0]
    body = header_size + 54  # the COPC info VLR comes first
    return struct.unpack_from("<QQ", data, body + 40)


def test_cyclic_hierarchy_fails_instead_of_looping(copc: dict[Any, str], tmp_path: Path) -> None:
    data = bytearray(Path(copc[7]).read_bytes())
    root, size = _root_page(bytes(data))
    entries = [root + i for i in range(0, size, 32)]
    child = next(at for at in entries if struct.unpack_from("<i", data, at + 28)[0] == -1)
    struct.pack_into("<Qi", data, child + 16, root, size)  # a child page that is the root page again
    path = tmp_path / "cycle.copc.laz"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=rf"cycle\.copc\.laz at byte {root}: the COPC hierarchy names the page at "
                                          rf"byte {root} twice"):
        build(str(path))


def test_repeated_key_fails(copc: dict[Any, str], tmp_path: Path) -> None:
    data = bytearray(Path(copc[6]).read_bytes())
    root, size = _root_page(bytes(data))
    first_key = bytes(data[root: root + 16])
    data[root + 32: root + 48] = first_key  # the second entry now names the first one's node
    path = tmp_path / "twice.copc.laz"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"twice\.copc\.laz at byte \d+: the COPC hierarchy lists key 0-0-0-0 twice"):
        build(str(path))


def test_node_and_page_with_one_key_fail(tmp_path: Path) -> None:
    """The hierarchy laspy's reader never finishes with: a key that is both a node and a page in one page."""
    path = tmp_path / "loop.copc.laz"
    write_copc(str(path), 6, 3_000, depth=3, misplaced=True)
    with pytest.raises(FormatError, match=r"loop\.copc\.laz at byte \d+: the COPC hierarchy lists key 1-\d-\d-0 twice"):
        build(str(path))


def test_truncated_copc(copc: dict[Any, str], tmp_path: Path) -> None:
    data = Path(copc[6]).read_bytes()
    path = tmp_path / "cut.copc.laz"
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(FormatError, match=r"cut\.copc\.laz at byte \d+: a COPC hierarchy page .* does not fit"):
        build(str(path))


def test_plain_laz_is_not_copc(tmp_path: Path) -> None:
    path = tmp_path / "plain.copc.laz"
    path.write_bytes(las_bytes(make_las(6, "1.4", 100), True))
    with pytest.raises(FormatError, match=r"plain\.copc\.laz at byte 0: not a COPC file: it has no COPC info VLR"):
        build(str(path))
