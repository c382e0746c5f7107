"""LAS and LAZ through the index and slices, in process (no Spark): exact rows against laspy, pruning, bad input.

The oracle is ``laspy.read(...).points``: every column, every point, in file order, for point formats 0-10
written by laspy (LAS 1.2 to 1.4, fixed 50k-point LAZ chunks) and by lazrs (variable-size chunks).
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import laspy  # the test extra installs it: a missing one must fail, not skip
import lazrs  # noqa: F401
import numpy as np
import pyarrow as pa
import pytest
from pointcloud_data import chunk_table_offset_at, las_bytes, laz_variable_chunks, make_las

from pyspark_dataplug.errors import FormatError, OptionError
from pyspark_dataplug.formats import name_format
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset


def build(path: str, fmt: str | None = None, **options: Any) -> None:
    plan_build(path, fmt, **options).run(run_tasks_locally, force=True)


def slices(path: str, partitions: int, strategy: str | None = None, **options: Any) -> list[Any]:
    ds = open_dataset({"path": path, **options})
    return [s for part in ds.plan(partitions=partitions, strategy=strategy) for s in part]


def read(path: str, partitions: int, strategy: str | None = None, **options: Any) -> pa.Table:
    tables = [s.get() for s in slices(path, partitions, strategy, **options)]
    return pa.concat_tables(tables) if tables else None


def expected(points: Any, name: str) -> np.ndarray:
    return np.asarray(points[name])


def assert_rows(table: pa.Table, points: Any, columns: list[str] | None = None) -> None:
    """Every column equals laspy's values (after our documented widening), point for point."""
    assert table.num_rows == len(points)
    for name in columns or table.column_names:
        ref = expected(points, name)
        col = table.column(name).combine_chunks()
        if pa.types.is_list(col.type):
            got = col.flatten().to_numpy().reshape(ref.shape)
        elif pa.types.is_binary(col.type):
            got = np.frombuffer(b"".join(col.to_pylist()), np.uint8).reshape(ref.shape)
        else:
            got = col.to_numpy(zero_copy_only=False)
        if got.dtype == bool:
            ref = ref != 0
        assert np.array_equal(got, ref), name


CASES = [  # point format, LAS version, compressed, extra bytes
    (0, "1.2", False, False), (1, "1.2", True, True), (3, "1.2", True, False), (3, "1.3", False, True),
    (6, "1.4", True, True), (7, "1.4", False, False), (8, "1.4", True, False), (10, "1.4", False, False),
]


@pytest.mark.parametrize(("pf", "version", "compress", "extra"), CASES)
def test_rows_equal_laspy(tmp_path: Path, pf: int, version: str, compress: bool, extra: bool) -> None:
    n = 120_001 if compress else 30_011  # LAZ: three 50k chunks, the last one short
    path = tmp_path / f"p{pf}.{'laz' if compress else 'las'}"
    path.write_bytes(las_bytes(make_las(pf, version, n, seed=pf, extra=extra), compress))
    build(str(path), chunkPoints=4_000)
    ref = laspy.read(str(path)).points
    seen: dict[Any, pa.Table] = {}  # plans repeat (3 chunks make 3 slices at 7 or 60 partitions): decode once
    for strategy in ("points", "chunks"):
        for parts in (1, 2, 7, 60):
            got = slices(str(path), parts, strategy)
            assert len(got) == min(parts, 3 if compress else (8 if strategy == "chunks" else parts))
            for s in got:
                if (s.ranges, s.rows) not in seen:
                    seen[(s.ranges, s.rows)] = s.get()
            assert_rows(pa.concat_tables([seen[(s.ranges, s.rows)] for s in got]), ref)


def test_schema_types_are_spark_friendly(tmp_path: Path) -> None:
    path = tmp_path / "a.las"
    path.write_bytes(las_bytes(make_las(8, "1.4", 100, extra=True), False))
    build(str(path))
    schema = open_dataset({"path": str(path)}).schema
    types = {f.name: str(f.type) for f in schema}
    assert list(types)[:3] == ["x", "y", "z"] and "X" not in types
    assert types["x"] == "double" and types["intensity"] == "int32" and types["classification"] == "int16"
    assert types["synthetic"] == "bool" and types["return_number"] == "int16" and types["scan_angle"] == "int16"
    assert types["point_source_id"] == "int32" and types["nir"] == "int32" and types["gps_time"] == "double"
    assert types["height"] == "float" and types["refl"] == "double" and types["normals"] == "list<item: double>"
    assert types["tag"] == "int64" and types["rank"] == "int8"
    assert not any(pa.types.is_unsigned_integer(f.type) for f in schema)


@pytest.mark.parametrize("pf", [3, 7])
def test_variable_size_chunks(tmp_path: Path, pf: int) -> None:
    """lazrs-written variable chunks (a 1-point chunk, big and small ones): cut only between chunks."""
    las = make_las(pf, "1.2" if pf < 6 else "1.4", 20_000, seed=5, extra=pf == 7)
    path = tmp_path / "var.laz"
    path.write_bytes(laz_variable_chunks(las, [700, 701, 5_000, 5_100, 12_000, 19_999]))
    build(str(path))
    ref = laspy.read(str(path)).points
    chunk_sizes = [700, 1, 4_299, 100, 6_900, 7_999, 1]
    for strategy, parts in (("points", 1), ("points", 3), ("points", 5), ("chunks", 2), ("chunks", 7),
                            ("chunks", 50)):
        got = slices(str(path), parts, strategy)
        for s in got:
            assert all(c in chunk_sizes for c, _ in (x for run in s.context["runs"] for x in run["chunks"]))
            assert len(s.ranges) == 1  # adjacent chunks: one coalesced range
        assert_rows(pa.concat_tables([s.get() for s in got]), ref)


def test_columns_option_decodes_only_those(tmp_path: Path) -> None:
    """Each column alone (lazrs skips the other layers of format 8) equals laspy's."""
    las = make_las(8, "1.4", 9_000, seed=8, extra=True)
    path = tmp_path / "c.laz"
    path.write_bytes(laz_variable_chunks(las, [3_000, 6_000]))
    build(str(path))
    ref = laspy.read(str(path)).points
    names = open_dataset({"path": str(path)}).schema.names
    for name in names:
        table = read(str(path), 2, columns=name)
        assert table.column_names == [name]
        assert_rows(table, ref, [name])
    table = read(str(path), 1, columns="gps_time,x", bbox="1000,2000,1500,2500")
    assert table.column_names == ["gps_time", "x"]


def test_unregistered_extra_bytes_are_binary(tmp_path: Path) -> None:
    las = make_las(1, "1.2", 500, extra=True)
    data = bytearray(las_bytes(las, False))
    at = data.find(b"LASF_Spec")
    data[at: at + 9] = b"XXXX_Spec"  # the Extra Bytes VLR is now unknown: its bytes are anonymous
    path = tmp_path / "anon.las"
    path.write_bytes(bytes(data))
    build(str(path))
    table = read(str(path), 3)
    assert table.schema.field("ExtraBytes").type == pa.binary()
    assert_rows(table, laspy.read(str(path)).points)


def test_uint64_beyond_bigint_fails(tmp_path: Path) -> None:
    las = make_las(0, "1.2", 10, extra=True)
    tag = np.asarray(las["tag"]).copy()
    tag[3] = 1 << 63
    las["tag"] = tag
    path = tmp_path / "big.las"
    path.write_bytes(las_bytes(las, False))
    build(str(path))
    with pytest.raises(FormatError, match=r"big\.las.*column 'tag' holds 9223372036854775808"):
        read(str(path), 1)


# -- pruning ---------------------------------------------------------------------------------------------------
def box_oracle(points: Any, box: tuple[float, ...]) -> np.ndarray:
    x, y = np.asarray(points.x), np.asarray(points.y)
    return (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])


@pytest.mark.parametrize("compress", [False, True])
def test_bbox_reads_a_small_part_and_filters_exactly(tmp_path: Path, compress: bool) -> None:
    las = make_las(6, "1.4", 200_000, seed=11)
    path = tmp_path / f"lines.{'laz' if compress else 'las'}"
    path.write_bytes(laz_variable_chunks(las, range(1_000, 200_000, 1_000)) if compress else las_bytes(las, False))
    build(str(path), chunkPoints=1_000)
    ref = laspy.read(str(path)).points
    full = sum(s.nbytes for s in slices(str(path), 4))
    box = (1400.0, 2300.0, 1623.456, 2523.45)  # ~5% of the 1000 x 1000 m extent
    spec = ",".join(map(str, box))
    for parts in (1, 3, 8):
        got = slices(str(path), parts, bbox=spec)
        assert all(s.rows is None for s in got)  # filtered: the index cannot promise a count
        assert sum(s.nbytes for s in got) / full < 0.12
        table = pa.concat_tables([s.get() for s in got])
        mask = box_oracle(ref, box)
        assert 0 < mask.sum() == table.num_rows
        assert np.array_equal(table.column("gps_time").to_numpy(), np.asarray(ref.gps_time)[mask])
    # closed box: a point on the edge is in; a 3-D box filters z too
    x, y, z = (float(np.asarray(ref[c])[777]) for c in "xyz")
    table = read(str(path), 2, bbox=f"{x},{y},{z},{x + 5},{y + 5},{z}")
    assert 777 * 0.5 in table.column("gps_time").to_pylist() and (table.column("z").to_numpy() == z).all()
    assert read(str(path), 2, bbox="0,0,1,1") is None  # nothing meets the box: no slice at all


def test_pushed_filters_prune_chunks(tmp_path: Path) -> None:
    """What Spark's pushdown worker does: pushFilters, then partitions(); rows are left to Spark."""
    from pyspark.sql.datasource import EqualTo, GreaterThanOrEqual, LessThan

    from pyspark_dataplug.datasource import DataplugPushdownReader, DataplugReader

    las = make_las(3, "1.2", 150_000, seed=12)
    path = tmp_path / "lines.laz"
    path.write_bytes(laz_variable_chunks(las, range(1_500, 150_000, 1_500)))
    build(str(path))
    opts = {"path": str(path), "partitions": "4"}
    full = sum(s.nbytes for p in DataplugReader(opts, {}).partitions() for s in p.slices)
    reader = DataplugPushdownReader(opts, {})
    filters = [GreaterThanOrEqual(("x",), 1200), LessThan(("x",), 1400), LessThan(("y",), 2200),
               EqualTo(("intensity",), 3)]
    assert reader.pushFilters(filters) == filters  # all handed back: Spark applies them to the rows
    parts = reader.partitions()
    pruned = [s for p in parts for s in p.slices]
    assert sum(s.nbytes for s in pruned) / full < 0.1
    rows = pa.concat_tables([s.get() for s in pruned])
    assert all(s.rows is not None for s in pruned)  # pruned, not filtered: whole chunks
    ref = laspy.read(str(path)).points
    x, y = np.asarray(ref.x), np.asarray(ref.y)
    want = set(np.asarray(ref.gps_time)[(x >= 1200) & (x < 1400) & (y < 2200)])
    assert want <= set(rows.column("gps_time").to_pylist())


def test_bad_bbox_fails_at_planning(tmp_path: Path) -> None:
    path = tmp_path / "a.las"
    path.write_bytes(las_bytes(make_las(0, "1.2", 10), False))
    build(str(path))
    with pytest.raises(OptionError, match="bad bbox"):
        slices(str(path), 1, bbox="1,2,3")


# -- index build ---------------------------------------------------------------------------------------------
def test_big_objects_get_parallel_bounds_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark_dataplug.formats import las as las_mod

    las = make_las(7, "1.4", 60_000, seed=13)
    path = tmp_path / "big.laz"
    path.write_bytes(laz_variable_chunks(las, range(2_000, 60_000, 2_000)))
    build(str(path))
    inline = open_dataset({"path": str(path)}).indexes[0].tables["chunks"]
    calls: list[int] = []

    def runner(fmt: Any, storage: Any, kind: str, tasks: list[Any]) -> list[Any]:
        calls.append(len(tasks))
        return run_tasks_locally(fmt, storage, kind, tasks)

    monkeypatch.setitem(las_mod.BOUNDS_TASK_BYTES, True, 100_000)
    plan_build(str(path)).run(runner, force=True)
    assert calls[0] == 1 and calls[1] > 3  # the header task, then bounds tasks over groups of chunks
    assert open_dataset({"path": str(path)}).indexes[0].tables["chunks"].equals(inline)


def test_index_keeps_the_header_and_reads_only_headers(tmp_path: Path) -> None:
    from pyspark_dataplug.storage import IO_STATS

    las = make_las(1, "1.2", 40_000, seed=2)
    path = tmp_path / "h.las"
    data = las_bytes(las, False)
    path.write_bytes(data)
    build(str(path), chunkPoints=10_000)
    index = open_dataset({"path": str(path)}).indexes[0]
    blob = Path(index.blob_uri("header")).read_bytes()
    assert blob == data[: struct.unpack_from("<I", data, 96)[0]]
    assert index.tables["chunks"].num_rows == 4 and index.records == 40_000
    IO_STATS.reset()
    got = slices(str(path), 3)
    assert IO_STATS.bytes_read.get(str(path), 0) == 0  # planning reads no data
    got[1].get()
    # a slice reads its own records and nothing else (not the header)
    assert IO_STATS.bytes_read[str(path)] == got[1].nbytes == got[1].rows * las.point_format.size


def test_missing_index_scan_reads_the_same_rows(tmp_path: Path) -> None:
    las = make_las(7, "1.4", 5_000, seed=4, extra=True)
    path = tmp_path / "scan.laz"
    path.write_bytes(laz_variable_chunks(las, [1_000, 2_500]))
    table = read(str(path), 3, missingIndex="scan", bbox="1000,2000,1500,2500")
    ref = laspy.read(str(path)).points
    mask = box_oracle(ref, (1000, 2000, 1500, 2500))
    assert np.array_equal(table.column("gps_time").to_numpy(), np.asarray(ref.gps_time)[mask])
    small = tmp_path / "small.las"  # smaller than the first read: the schema comes from the whole object
    small.write_bytes(las_bytes(make_las(1, "1.2", 50), False))
    assert_rows(read(str(small), 1, missingIndex="scan"), laspy.read(str(small)).points)


def test_objects_of_other_point_formats_cannot_be_read_together(tmp_path: Path) -> None:
    (tmp_path / "a.las").write_bytes(las_bytes(make_las(1, "1.2", 10), False))
    (tmp_path / "b.las").write_bytes(las_bytes(make_las(3, "1.2", 10), False))
    (tmp_path / "c.las").write_bytes(las_bytes(make_las(1, "1.2", 20, seed=9), False))
    build(str(tmp_path / "*.las"))
    with pytest.raises(OptionError, match=r"b\.las: its points \(format 3.*differ from the first object's"):
        slices(str(tmp_path / "*.las"), 2)
    assert read(str(tmp_path / "[ac].las"), 2).num_rows == 30


def test_slices_pickle_and_hold_no_credentials(tmp_path: Path) -> None:
    path = tmp_path / "p.laz"
    path.write_bytes(laz_variable_chunks(make_las(6, "1.4", 3_000), [1_000]))
    build(str(path))
    for s in slices(str(path), 2, bbox="1000,2000,1800,2800"):
        raw = pickle.dumps(s)
        assert b"testing" not in raw and b"SECRET" not in raw.upper()
        assert pickle.loads(raw).get().equals(s.get())


def test_names_choose_the_format() -> None:
    assert name_format("s3://b/tile.las") == "las" and name_format("tile.LAZ") == "laz"
    assert name_format("s3://b/tile.copc.laz") == "copc"  # the longest ending wins


def test_import_does_not_need_laspy() -> None:
    """Without laspy and lazrs, the package imports and only a LAS read fails, with the pip command."""
    code = ("import sys; sys.modules['laspy'] = None; sys.modules['lazrs'] = None\n"
            "import pyspark_dataplug\n"
            "from pyspark_dataplug.formats import format_class\n"
            "from pyspark_dataplug.formats import _laspoints\n"
            "format_class('laz'); format_class('copc')\n"
            "try:\n    _laspoints.need('lazrs')\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'pyspark-dataplug[las]'" in out.stdout


# -- bad input -----------------------------------------------------------------------------------------------
def test_not_a_las_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.las"
    path.write_bytes(b"these are my survey notes, not points\n" * 20)
    with pytest.raises(FormatError, match=r"notes\.las at byte 0: not a LAS/LAZ file"):
        build(str(path))


def test_truncated_las(tmp_path: Path) -> None:
    data = las_bytes(make_las(1, "1.2", 1_000), False)
    path = tmp_path / "cut.las"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(FormatError, match=r"cut\.las at byte \d+: the header promises 1000 points .* truncated"):
        build(str(path))
    path.write_bytes(data[:150])
    with pytest.raises(FormatError, match=r"cut\.las at byte 0: 150 bytes: too short for a LAS header"):
        build(str(path))


def test_header_offsets_past_the_end(tmp_path: Path) -> None:
    data = bytearray(las_bytes(make_las(1, "1.2", 100), False))
    struct.pack_into("<I", data, 96, len(data) + 10)
    path = tmp_path / "off.las"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"off\.las at byte 96: the header puts point data at byte \d+, past the end"):
        build(str(path))


def test_truncated_laz(tmp_path: Path) -> None:
    data = las_bytes(make_las(3, "1.2", 60_000), True)
    path = tmp_path / "cut.laz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"cut\.laz at byte \d+: the chunk table offset .* no chunk table"):
        build(str(path))


def test_laz_without_its_chunk_table(tmp_path: Path) -> None:
    data = bytearray(las_bytes(make_las(3, "1.2", 60_000), True))
    at, table = chunk_table_offset_at(bytes(data))
    struct.pack_into("<q", data, at, -1)  # a writer that could not seek back; and no offset at the end either
    struct.pack_into("<q", data, len(data) - 8, -7)
    path = tmp_path / "notable.laz"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"notable\.laz at byte \d+: the chunk table offset is -1 .* no chunk table"):
        build(str(path))
    # LASzip's own convention: -1, and the offset in the last 8 bytes
    data = bytearray(las_bytes(make_las(3, "1.2", 60_000), True))
    struct.pack_into("<q", data, at, -1)
    path.write_bytes(bytes(data) + struct.pack("<q", table))
    build(str(path))
    assert read(str(path), 2).num_rows == 60_000


def test_short_chunk_fails_with_its_offset(tmp_path: Path) -> None:
    import base64

    from pyspark_dataplug.formats import _laspoints as lp

    data = laz_variable_chunks(make_las(3, "1.2", 4_000), [2_000])
    path = tmp_path / "short.laz"
    path.write_bytes(data)
    build(str(path))
    s = slices(str(path), 2, "chunks")[1]
    (n, nbytes), start, desc = s.context["runs"][0]["chunks"][0], s.ranges[0].start, s.context["desc"]
    chunk = data[start: start + nbytes]
    with pytest.raises(FormatError, match=rf"short\.laz at byte {start}: cannot decompress the LAZ chunk of {n}"):
        lp.decompress(str(path), start, chunk[: nbytes // 3], base64.b64decode(desc["laszip"]), n,
                      desc["record_length"])
