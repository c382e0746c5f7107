"""MeasurementSet MAIN rows equal python-casacore's getcol, slices keep time slots whole and read their share.

Test MSs are written by python-casacore's ``default_ms`` (no Spark): one with every column in StandardStMan
(direct and indirect arrays), one laid out as CASA writes them (DATA in TiledColumnStMan, FLAG in
TiledShapeStMan), and one with a column in IncrementalStMan (not supported).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from casacore import tables as ct

from pyspark_dataplug.errors import DataplugError, FormatError, OptionError, StaleIndexError
from pyspark_dataplug.formats import _casatable as lay
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset
from pyspark_dataplug.storage import IO_STATS

NCHAN, NCORR = 16, 4


def write_ms(path: Path, layout: str, seed: int = 0, nslots: int = 40) -> None:
    """A MAIN table of ``nslots`` time slots with 100-400 baselines each, every column filled at random."""
    rng = np.random.default_rng(seed)
    cols = []
    dminfo: dict[str, Any] = {}
    if layout == "tiled":
        cols += [ct.makearrcoldesc("DATA", 0j, shape=[NCHAN, NCORR], valuetype="complex",
                                   datamanagertype="TiledColumnStMan", datamanagergroup="TiledData"),
                 ct.makearrcoldesc("FLAG", False, shape=[NCHAN, NCORR], valuetype="boolean",
                                   datamanagertype="TiledShapeStMan", datamanagergroup="TiledFlag"),
                 ct.makearrcoldesc("WEIGHT", 0.0, shape=[NCORR], valuetype="float", options=5),
                 ct.makearrcoldesc("SIGMA", 0.0, shape=[NCORR], valuetype="float", options=5)]
        dminfo = ct.makedminfo(ct.maketabdesc(cols[:2]), {"TiledData": {"DEFAULTTILESHAPE": np.array([NCORR, NCHAN, 32],
                                                                                                 np.int32)}})
    else:  # every column in StandardStMan: direct (options=5) and indirect arrays
        cols += [ct.makearrcoldesc("DATA", 0j, shape=[NCHAN, NCORR], valuetype="complex", options=5),
                 ct.makearrcoldesc("FLAG", False, shape=[NCHAN, NCORR], valuetype="boolean", options=5),
                 ct.makearrcoldesc("CORRECTED_DATA", 0j, shape=[NCHAN, NCORR], valuetype="complex", options=4),
                 ct.makearrcoldesc("WEIGHT", 0.0, shape=[NCORR], valuetype="float", options=4),
                 ct.makearrcoldesc("SIGMA", 0.0, ndim=1, valuetype="float")]
        if layout == "ism":
            dminfo = {"*1": {"TYPE": "IncrementalStMan", "NAME": "ISM", "SPEC": {}, "COLUMNS": ["SCAN_NUMBER"]}}
    t = ct.default_ms(str(path), ct.maketabdesc(cols), dminfo)
    per_slot = rng.integers(100, 400, nslots)
    n = int(per_slot.sum())
    t.addrows(n)
    t.putcol("TIME", np.repeat(4.9e9 + 10.0 * np.arange(nslots), per_slot))
    t.putcol("TIME_CENTROID", np.repeat(4.9e9 + 10.0 * np.arange(nslots), per_slot) + 0.5)
    for c in ("ANTENNA1", "ANTENNA2", "SCAN_NUMBER", "FIELD_ID"):
        t.putcol(c, rng.integers(0, 60, n).astype(np.int32))
    t.putcol("INTERVAL", rng.random(n))
    t.putcol("UVW", rng.standard_normal((n, 3)) * 1000)
    t.putcol("FLAG_ROW", rng.random(n) < 0.2)
    for c in ("DATA", "CORRECTED_DATA"):
        if c in t.colnames():
            t.putcol(c, (rng.standard_normal((n, NCHAN, NCORR))
                         + 1j * rng.standard_normal((n, NCHAN, NCORR))).astype(np.complex64))
    flags = rng.random((n, NCHAN, NCORR)) < 0.3
    for a in range(0, n, 1000):  # in pieces, as a writer would
        t.putcol("FLAG", flags[a: a + 1000], startrow=a, nrow=len(flags[a: a + 1000]))
    t.putcol("WEIGHT", rng.random((n, NCORR)).astype(np.float32))
    t.putcol("SIGMA", rng.random((n, NCORR)).astype(np.float32))
    t.close()


@pytest.fixture(scope="module")
def mss(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ms")
    out = {}
    for i, layout in enumerate(("ssm", "tiled")):
        path = root / f"{layout}.ms"
        write_ms(path, layout, seed=i)
        build(str(path))
        out[layout] = str(path)
    return out


def build(path: str, **options: Any) -> None:
    plan_build(path, "ms", **options).run(run_tasks_locally, force=True)


def plan(path: str, partitions: int | None = None, strategy: str | None = None, **options: Any) -> list[Any]:
    return [s for part in open_dataset({"path": path, "format": "ms", **options}).plan(
        partitions=partitions, strategy=strategy) for s in part]


def read(slices: list[Any]) -> pa.Table:
    return pa.concat_tables([s.get() for s in slices])


def reference(path: str, field: pa.Field) -> np.ndarray:
    col = field.metadata[b"ms.column"].decode()
    with ct.table(path, ack=False) as t:
        ref = t.getcol(col)
    if field.name.endswith("_real") and np.iscomplexobj(ref):
        ref = ref.real
    elif field.name.endswith("_imag") and np.iscomplexobj(ref):
        ref = ref.imag
    return ref


def assert_equal_to_casacore(path: str, table: pa.Table) -> None:
    for field in table.schema:
        ref = reference(path, field)
        col = table.column(field.name).combine_chunks()
        if pa.types.is_list(field.type):
            got = col.values.to_numpy(zero_copy_only=False).reshape(ref.shape)
            assert json_shape(field) == list(ref.shape[1:])
        else:
            got = col.to_numpy(zero_copy_only=False)
        assert got.dtype == ref.dtype or field.name.endswith(("_real", "_imag")), field.name
        assert np.array_equal(got, ref), field.name


def json_shape(field: pa.Field) -> list[int]:
    import json

    return json.loads(field.metadata[b"ms.shape"])


# -- layouts ---------------------------------------------------------------------------------------------
def test_layouts_seen_by_the_tests(mss: dict[str, str]) -> None:
    """The fixtures exercise what the reader must handle: chained SSM index buckets, a TiledShapeStMan map."""
    raw = Path(mss["ssm"], "table.f0").read_bytes()
    hdr = lay.parse_ssm_header(raw[:512], lay.ssm_endianness(raw[:512]))
    idx, seen = lay.read_ssm_indices(hdr, lambda b: raw[lay.bucket_offset(hdr, b): lay.bucket_offset(hdr, b)
                                                        + hdr.bucket_size])
    assert len(idx) == 1 and len(idx[0].bucket) > 100
    with ct.table(mss["tiled"], ack=False) as t:
        dm = {d["NAME"]: d for d in t.getdminfo().values()}
        nrows = t.nrows()
    tsm = lay.parse_tsm_header(Path(mss["tiled"], f"table.f{dm['TiledFlag']['SEQNR']}").read_bytes())
    assert tsm.kind == "TiledShapeStMan" and tsm.nrows == nrows
    runs = lay.tsm_runs(tsm, 0, nrows)
    assert sum(b - a for a, b, _, _ in runs) == nrows and all(c >= 1 for _, _, c, _ in runs)
    spec = dm["TiledFlag"]["SPEC"]["HYPERCUBES"]["*1"]
    assert tsm.cubes[1].tile == list(spec["TileShape"]) and tsm.cubes[1].shape == list(spec["CubeShape"])


def test_ssm_column_offsets_follow_the_description_order(mss: dict[str, str]) -> None:
    maps = lay.ssm_column_maps(Path(mss["ssm"], "table.dat").read_bytes())
    offsets, imap = maps["StandardStMan"]
    assert offsets == sorted(offsets) and set(imap) == {0}


# -- exact rows ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["ssm", "tiled"])
@pytest.mark.parametrize("partitions", [1, 2, 7, 1000])
def test_rows_equal_casacore(mss: dict[str, str], layout: str, partitions: int) -> None:
    path = mss[layout]
    slices = plan(path, partitions)
    with ct.table(path, ack=False) as t:
        nslots = len(np.unique(t.getcol("TIME")))
        nrows = t.nrows()
    assert len(slices) == min(partitions, nslots)
    assert sum(s.rows for s in slices) == nrows
    assert_equal_to_casacore(path, read(slices))


def test_schema_and_undefined_columns(mss: dict[str, str]) -> None:
    schema = open_dataset({"path": mss["ssm"], "format": "ms"}).fmt.output_schema()
    names = schema.names
    assert "FLAG_CATEGORY" not in names  # never written: all cells undefined
    assert {"DATA_real", "DATA_imag", "CORRECTED_DATA_real", "FLAG", "WEIGHT", "SIGMA", "TIME", "UVW"} <= set(names)
    assert schema.field("DATA_real").type == pa.list_(pa.float32())
    assert json_shape(schema.field("DATA_imag")) == [NCHAN, NCORR]
    assert schema.field("FLAG").type == pa.list_(pa.bool_())
    assert schema.field("ANTENNA1").type == pa.int32() and schema.field("TIME").type == pa.float64()


def test_timeslots_strategy_and_alignment(mss: dict[str, str]) -> None:
    path = mss["tiled"]
    with ct.table(path, ack=False) as t:
        time = t.getcol("TIME")
    for strategy, n in (("rows", 6), ("timeslots", 6), ("timeslots", 13)):
        slices = plan(path, n, strategy)
        starts = np.cumsum([0] + [s.rows for s in slices])
        for a in starts[1:-1]:
            assert time[a] != time[a - 1], "a time slot was split between slices"
        if strategy == "timeslots":
            nslot = [len(np.unique(time[a:b])) for a, b in zip(starts, starts[1:], strict=False)]
            assert max(nslot) - min(nslot) <= 1
        got = read(slices)
        assert np.array_equal(got.column("TIME").to_numpy(), time)


def test_columns_option_fetches_only_their_bytes(mss: dict[str, str]) -> None:
    path = mss["tiled"]
    slices = plan(path, 3, columns="TIME,DATA_imag,ANTENNA2")
    table = read(slices)
    assert table.column_names == ["TIME", "DATA_imag", "ANTENNA2"]
    assert_equal_to_casacore(path, table)
    files = {r.uri.rsplit("/", 1)[-1] for s in slices for r in s.ranges}
    assert files == {"table.f0_TSM0", "table.f2"}  # DATA's tiles and the SSM buckets, no FLAG tiles
    only_flag = plan(path, 2, columns="FLAG")
    assert {r.uri.rsplit("/", 1)[-1] for s in only_flag for r in s.ranges} == {"table.f1_TSM1"}
    assert_equal_to_casacore(path, read(only_flag))


def test_a_slice_reads_its_share_of_the_data(mss: dict[str, str]) -> None:
    path = mss["tiled"]
    data = os.path.join(path, "table.f0_TSM0")
    size = os.path.getsize(data)
    slices = plan(path, 4, columns="DATA_real")
    for s in slices:
        IO_STATS.reset()
        assert s.get().num_rows == s.rows
        share = s.rows * NCHAN * NCORR * 8  # its rows' cells
        tile_row = NCHAN * NCORR * 8 * 32
        # its rows' tiles, plus at most one tile row at each end of each batch
        assert share <= IO_STATS.bytes_read[data] <= share + 2 * tile_row * len(s.context["batches"])
        assert IO_STATS.bytes_read[data] < size / 2


def test_indirect_cells_read_only_their_extent(mss: dict[str, str]) -> None:
    path = mss["ssm"]
    ind = os.path.join(path, "table.f0i")
    slices = plan(path, 5, columns="CORRECTED_DATA_real,WEIGHT")
    total = 0
    for s in slices:
        IO_STATS.reset()
        s.get()
        total += IO_STATS.bytes_read[ind]
        assert IO_STATS.bytes_read[ind] < os.path.getsize(ind) / 2
    assert total <= os.path.getsize(ind)
    assert_equal_to_casacore(path, read(slices))


def test_slices_pickle_and_carry_file_versions(mss: dict[str, str]) -> None:
    import pickle

    s = plan(mss["tiled"], 2)[1]
    assert all(r.etag for r in s.ranges)
    assert pickle.loads(pickle.dumps(s)).get().equals(s.get())


# -- errors ----------------------------------------------------------------------------------------------
def copy_ms(src: str, dst: Path) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def test_missing_table_file(mss: dict[str, str], tmp_path: Path) -> None:
    path = copy_ms(mss["tiled"], tmp_path / "missing.ms")
    os.remove(os.path.join(path, "table.f1_TSM1"))
    with pytest.raises(FormatError, match=r"table\.f1_TSM1.*missing"):
        build(path)


def test_truncated_tile_file(mss: dict[str, str], tmp_path: Path) -> None:
    path = copy_ms(mss["tiled"], tmp_path / "short.ms")
    with open(os.path.join(path, "table.f0_TSM0"), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(path, "table.f0_TSM0")) - 5000)
    with pytest.raises(FormatError, match=r"table\.f0_TSM0.*truncated.*DATA"):
        build(path)


def test_unsupported_manager_names_column_and_manager(tmp_path: Path) -> None:
    path = tmp_path / "ism.ms"
    write_ms(path, "ism", nslots=5)
    build(str(path))
    with pytest.raises(OptionError, match=r"SCAN_NUMBER \(IncrementalStMan 'ISM'\).*columns=") as e:
        plan(str(path), 2)
    assert "SCAN_NUMBER" not in str(e.value).split("columns=")[1]
    ok = str(e.value).split("columns=")[1].strip()
    table = read(plan(str(path), 2, columns=ok))
    assert_equal_to_casacore(str(path), table)
    with pytest.raises(OptionError, match="SCAN_NUMBER"):
        plan(str(path), 2, columns="TIME,SCAN_NUMBER")


def test_file_rewritten_after_indexing_is_stale(mss: dict[str, str], tmp_path: Path) -> None:
    path = copy_ms(mss["tiled"], tmp_path / "stale.ms")
    build(path)
    slices = plan(path, 2)
    data = os.path.join(path, "table.f0_TSM0")
    raw = bytearray(Path(data).read_bytes())
    raw[100] ^= 0xFF
    Path(data).write_bytes(bytes(raw))
    os.utime(data, ns=(os.stat(data).st_atime_ns, os.stat(data).st_mtime_ns + 10**9))
    with pytest.raises(StaleIndexError):
        slices[0].get()
    with pytest.raises(DataplugError):
        plan(path, 2)


def test_no_index_is_an_error(mss: dict[str, str], tmp_path: Path) -> None:
    path = copy_ms(mss["ssm"], tmp_path / "noindex.ms")
    with pytest.raises(DataplugError, match="index"):
        plan(path, 2)


def test_big_endian_table(tmp_path: Path) -> None:
    """A big-endian table (casacore's endian='big'): StandardStMan, indirect arrays and tiles swap bytes."""
    path = tmp_path / "big.ms"
    cols = [ct.makescacoldesc("TIME", 0.0), ct.makescacoldesc("ANTENNA1", 0), ct.makescacoldesc("FLAG_ROW", False),
            ct.makearrcoldesc("UVW", 0.0, shape=[3], options=5),
            ct.makearrcoldesc("DATA", 0j, shape=[8, 2], valuetype="complex", datamanagertype="TiledColumnStMan",
                              datamanagergroup="TD"),
            ct.makearrcoldesc("FLAG", False, shape=[8, 2], valuetype="boolean", datamanagertype="TiledShapeStMan",
                              datamanagergroup="TF"),
            ct.makearrcoldesc("WEIGHT", 0.0, shape=[2], valuetype="float", options=4)]
    rng = np.random.default_rng(3)
    n = 3000
    with ct.table(str(path), ct.maketabdesc(cols), nrow=n, endian="big", ack=False) as t:
        t.putcol("TIME", np.repeat(np.arange(30.0), 100))
        t.putcol("ANTENNA1", rng.integers(0, 9, n).astype(np.int32))
        t.putcol("FLAG_ROW", rng.random(n) < 0.5)
        t.putcol("UVW", rng.random((n, 3)))
        t.putcol("DATA", (rng.random((n, 8, 2)) + 1j * rng.random((n, 8, 2))).astype(np.complex64))
        t.putcol("FLAG", rng.random((n, 8, 2)) < 0.5)
        t.putcol("WEIGHT", rng.random((n, 2)).astype(np.float32))
    assert Path(path, "table.f0").read_bytes()[4:8] == b"\x00\x00\x00\x45"  # big-endian header
    build(str(path))
    for parts in (1, 4):
        assert_equal_to_casacore(str(path), read(plan(str(path), parts)))
