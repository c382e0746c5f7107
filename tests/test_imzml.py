"""imzML through the index and slices, in process (no Spark): exact rows, pruning, bad and changed files.

Files are written by pyimzML's ``ImzMLWriter``. The oracle is pyimzML's ``ImzMLParser`` (``getspectrum`` and
``coordinates``) for uncompressed files, and the arrays the test wrote for zlib-compressed ones, since
``getspectrum`` neither decompresses nor honours encoded lengths.
"""

from __future__ import annotations

import pickle
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pyimzml.compression import NoCompression, ZlibCompression
from pyimzml.ImzMLParser import ImzMLParser
from pyimzml.ImzMLWriter import ImzMLWriter

from pyspark_dataplug.errors import FormatError, OptionError, StaleIndexError
from pyspark_dataplug.formats import name_format
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset
from pyspark_dataplug.storage import IO_STATS

STRATEGIES = ("spectra", "bytes", "tiles")


# -- writing files and reading them back --------------------------------------------------------------------------
def write(path: Path, spectra: list[tuple[np.ndarray, np.ndarray, tuple[int, ...]]], mode: str = "continuous",
          mz_dtype: Any = np.float64, int_dtype: Any = np.float32, mz_zlib: bool = False,
          int_zlib: bool = False) -> list[dict[str, Any]]:
    """Write an imzML + .ibd; returns each spectrum as the file stores it (the test's oracle for zlib files)."""
    comp = {True: ZlibCompression(), False: NoCompression()}
    with ImzMLWriter(str(path), mz_dtype=mz_dtype, intensity_dtype=int_dtype, mode=mode,
                     mz_compression=comp[mz_zlib], intensity_compression=comp[int_zlib]) as w:
        for mz, inten, coords in spectra:
            w.addSpectrum(mz, inten, coords)
    first_mz = spectra[0][0]
    out = []
    for i, (mz, inten, coords) in enumerate(spectra):
        stored_mz = first_mz if mode == "continuous" else mz
        out.append({"index": i, "x": coords[0], "y": coords[1], "z": coords[2] if len(coords) > 2 else 1,
                    "mz": np.asarray(stored_mz, dtype=mz_dtype).astype(np.float64),
                    "intensity": np.asarray(inten, dtype=int_dtype)})
    return out


def grid_spectra(width: int, height: int, points: int = 40, seed: int = 0, processed: bool = False,
                 int_dtype: Any = np.float32) -> list[tuple[np.ndarray, np.ndarray, tuple[int, ...]]]:
    """A raster-scanned image (row by row, 1-based pixels), as imaging instruments write them."""
    rng = np.random.default_rng(seed)
    axis = np.sort(rng.uniform(100, 1000, points))
    out = []
    for y in range(1, height + 1):
        for x in range(1, width + 1):
            n = int(rng.integers(1, points + 1)) if processed else points
            mz = np.sort(rng.uniform(100, 1000, n)) if processed else axis
            inten = (rng.random(n) * 1000).astype(int_dtype) if np.dtype(int_dtype).kind == "f" else \
                rng.integers(0, 10_000, n).astype(int_dtype)
            out.append((mz, inten, (x, y)))
    return out


def build(path: Path | str, **options: Any) -> None:
    plan_build(str(path), None, **options).run(run_tasks_locally, force=True)


def slices(path: Path | str, partitions: int, strategy: str | None = None, **options: Any) -> list[Any]:
    ds = open_dataset({"path": str(path), **options})
    return [s for part in ds.plan(partitions=partitions, strategy=strategy) for s in part]


def rows(sl: list[Any]) -> list[dict[str, Any]]:
    out = []
    for s in sl:
        got = s.get()
        assert got.num_rows == s.rows or s.rows is None
        out.extend(got.to_pylist())
    return out


def assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], intensity_type: Any = None,
                equal_nan: bool = False) -> None:
    """Exactly the wanted spectra, each once, every column equal (the order is checked by the callers).

    ``equal_nan``: a NaN equals a NaN in float arrays. Damaged .ibd bytes (the bad-input fuzz) are often NaN
    bit patterns, which both readers return as stored, and NaN != NaN would call equal arrays different.
    """
    by_index = {r["index"]: r for r in got}
    assert len(by_index) == len(got), "a spectrum came twice"
    assert sorted(by_index) == [w["index"] for w in want]
    for w in want:
        r = by_index[w["index"]]
        assert (r["x"], r["y"], r["z"]) == (w["x"], w["y"], w["z"])
        if "mz" in r:
            assert np.array_equal(np.asarray(r["mz"], dtype=np.float64), w["mz"], equal_nan=equal_nan), w["index"]
        got_int = np.asarray(r["intensity"], dtype=intensity_type or w["intensity"].dtype)
        assert np.array_equal(got_int, w["intensity"], equal_nan=equal_nan), w["index"]


def pyimzml_rows(path: Path) -> list[dict[str, Any]]:
    p = ImzMLParser(str(path))
    out = []
    for i, (x, y, z) in enumerate(p.coordinates):
        mz, inten = p.getspectrum(i)
        out.append({"index": i, "x": x, "y": y, "z": z, "mz": mz.astype(np.float64), "intensity": inten.copy()})
    p.m.close()
    return out


def in_box(want: list[dict[str, Any]], box: tuple[int, int, int, int]) -> list[dict[str, Any]]:
    return [w for w in want if box[0] <= w["x"] <= box[2] and box[1] <= w["y"] <= box[3]]


# -- rows ------------------------------------------------------------------------------------------------------
CASES = [  # mode, mz dtype, intensity dtype
    ("continuous", np.float64, np.float32), ("continuous", np.float32, np.float64),
    ("processed", np.float64, np.float32), ("processed", np.float32, np.int32), ("continuous", np.float64, np.int64),
]


@pytest.mark.parametrize(("mode", "mz_dtype", "int_dtype"), CASES)
def test_rows_equal_pyimzml(tmp_path: Path, mode: str, mz_dtype: Any, int_dtype: Any) -> None:
    path = tmp_path / "img.imzML"
    spectra = grid_spectra(13, 9, points=30, seed=3, processed=mode == "processed", int_dtype=int_dtype)
    write(path, spectra, mode, mz_dtype, int_dtype)
    build(path)
    want = pyimzml_rows(path)
    n = len(want)
    schema = open_dataset({"path": str(path)}).schema
    assert schema.field("intensity").type == pa.list_(pa.from_numpy_dtype(np.dtype(int_dtype)))
    assert schema.field("mz").type == pa.list_(pa.float64()) and schema.names == ["index", "x", "y", "z", "mz",
                                                                                   "intensity"]
    box = (3, 2, 8, 6)
    for strategy in STRATEGIES:
        for parts in (1, 2, 7, n + 5):
            got = slices(path, parts, strategy, tileSize="4")
            assert len(got) <= parts
            got_rows = rows(got)
            assert_rows(got_rows, want)
            if strategy != "tiles":  # runs of consecutive spectra, in file order
                assert [r["index"] for r in got_rows] == list(range(n))
            if strategy == "spectra":
                assert len(got) == min(parts, n)
            boxed = slices(path, parts, strategy, tileSize="4", bbox=",".join(map(str, box)))
            assert_rows(rows(boxed), in_box(want, box))


def test_tiles_keep_whole_tiles_and_every_spectrum_once(tmp_path: Path) -> None:
    path = tmp_path / "t.imzML"
    write(path, grid_spectra(37, 23, points=5, seed=1))
    build(path)
    want = pyimzml_rows(path)
    for side, parts in ((4, 3), (8, 5), (16, 2), (5, 200), (64, 4)):
        got = slices(path, parts, "tiles", tileSize=str(side))
        owner: dict[tuple[int, int], int] = {}
        seen: list[dict[str, Any]] = []
        for k, s in enumerate(got):
            part = s.get().to_pylist()
            assert [r["index"] for r in part] == sorted(r["index"] for r in part)  # file order within a slice
            for r in part:
                tile = ((r["x"] - 1) // side, (r["y"] - 1) // side)
                assert owner.setdefault(tile, k) == k, "a tile is split between slices"
            seen.extend(part)
        assert_rows(seen, want)
        tiles = len({((w["x"] - 1) // side, (w["y"] - 1) // side) for w in want})
        assert len(got) == min(parts, tiles)


def test_zlib_files_equal_what_was_written(tmp_path: Path) -> None:
    for mode in ("continuous", "processed"):
        for mz_zlib, int_zlib in ((True, True), (False, True), (True, False)):
            path = tmp_path / f"z-{mode}-{mz_zlib}-{int_zlib}.imzML"
            spectra = grid_spectra(11, 7, points=25, seed=4, processed=mode == "processed")
            want = write(path, spectra, mode, mz_zlib=mz_zlib, int_zlib=int_zlib)
            build(path)
            index = open_dataset({"path": str(path)}).indexes[0]
            assert index.attrs["imzml"]["arrays"]["intensity"]["compression"] == ("zlib" if int_zlib else "none")
            for strategy in STRATEGIES:
                for parts in (1, 3, 100):
                    assert_rows(rows(slices(path, parts, strategy, tileSize="3")), want)
            assert_rows(rows(slices(path, 4, bbox="2,2,5,9")), in_box(want, (2, 2, 5, 9)))


def test_float16_intensities_widen_to_float(tmp_path: Path) -> None:
    path = tmp_path / "h.imzML"
    want = write(path, grid_spectra(5, 4, points=12, seed=6, int_dtype=np.float16), int_dtype=np.float16)
    build(path)
    assert open_dataset({"path": str(path)}).schema.field("intensity").type == pa.list_(pa.float32())
    got = rows(slices(path, 3))
    assert_rows(got, want, intensity_type=np.float16)


def test_one_spectrum(tmp_path: Path) -> None:
    path = tmp_path / "one.imzML"
    want = write(path, [(np.array([100.0, 200.5]), np.array([1.0, 2.0], np.float32), (7, 9, 2))])
    build(path)
    for strategy in STRATEGIES:
        for parts in (1, 3):
            got = slices(path, parts, strategy)
            assert len(got) == 1 and got[0].rows == 1
            assert_rows(rows(got), want)
    assert slices(path, 2, bbox="1,1,6,6") == []  # the pixel lies outside: nothing to read
    # an empty spectrum (pyimzML cannot write one: its lengths are set to 0 in the XML)
    path = tmp_path / "empty.imzML"
    want = write(path, [(np.array([1.0]), np.array([2.0], np.float32), (1, 1)),
                        (np.array([3.0]), np.array([4.0], np.float32), (2, 1))], "processed")
    edit_xml(path, lambda t: re.sub(r'(name="external (encoded|array) length" value=")\d+"', r'\g<1>0"', t, count=4))
    build(path)
    want[0].update(mz=np.zeros(0), intensity=np.zeros(0, np.float32))
    assert_rows(rows(slices(path, 1)), want)
    for column in ("intensity", "mz"):  # one array per spectrum: copied in runs
        got = pa.concat_tables([s.get() for s in slices(path, 1, columns=f"index,{column}")])
        assert [len(v) for v in got.column(column).to_pylist()] == [0, 1]
        assert got.column(column).to_pylist()[1] == [float(want[1][column][0])]


def test_nan_values_are_read_as_stored(tmp_path: Path) -> None:
    """NaN m/z and intensities (any float bit pattern is a valid value in the .ibd) come back as NaN, like pyimzML's.

    The bad-input fuzz met these in damaged .ibd files and, comparing with NaN != NaN, called equal rows different.
    """
    path = tmp_path / "nan.imzML"
    spectra = grid_spectra(3, 2, points=6, seed=8, processed=True)
    spectra[1][0][0] = np.nan
    spectra[4][1][-1] = np.nan
    want = write(path, spectra, "processed")
    build(path)
    want_ref = pyimzml_rows(path)
    for strategy in STRATEGIES:
        got = rows(slices(path, 2, strategy))
        assert_rows(got, want, equal_nan=True)
        assert_rows(got, want_ref, equal_nan=True)
        by_index = {r["index"]: r for r in got}
        assert np.isnan(by_index[1]["mz"][0]) and np.isnan(by_index[4]["intensity"][-1])
        assert np.count_nonzero(np.isnan(np.concatenate([r["intensity"] for r in got]))) == 1
    with pytest.raises(AssertionError):  # and NaN != NaN without it: the flag is what makes them equal
        assert_rows(got, want)


def test_z_is_kept_and_boxes_may_be_3d(tmp_path: Path) -> None:
    path = tmp_path / "z.imzML"
    rng = np.random.default_rng(2)
    axis = np.linspace(100, 200, 6)
    spectra = [(axis, rng.random(6).astype(np.float32), (x, y, z)) for z in (1, 2, 3) for y in (1, 2) for x in (1, 2)]
    want = write(path, spectra)
    build(path)
    assert_rows(rows(slices(path, 2)), want)
    got = rows(slices(path, 2, bbox="1,1,2,2,2,3"))
    assert_rows(got, [w for w in want if w["z"] >= 2 and w["x"] <= 2 and w["y"] <= 2])
    assert open_dataset({"path": str(path)}).indexes[0].attrs["extent"] == [1, 1, 1, 2, 2, 3]


def test_auto_mode_with_shared_mz_arrays_reads_whole_ranges(tmp_path: Path) -> None:
    """pyimzML's 'auto' mode writes a repeated m/z array once: spectra point back at earlier bytes."""
    path = tmp_path / "auto.imzML"
    rng = np.random.default_rng(8)
    axes = [np.linspace(100, 900, 10), np.linspace(150, 950, 12)]
    spectra = [(axes[i % 2], rng.random(len(axes[i % 2])).astype(np.float32), (i % 6 + 1, i // 6 + 1))
               for i in range(30)]
    write(path, spectra, mode="auto")
    build(path)
    got = slices(path, 3)
    assert not all(s.context["stream"] for s in got)
    assert_rows(rows(got), pyimzml_rows(path))


# -- the m/z axis of continuous files ------------------------------------------------------------------------
def test_mz_column_off_and_the_shared_axis(tmp_path: Path) -> None:
    import pyspark_dataplug

    path = tmp_path / "c.imzML"
    want = write(path, grid_spectra(6, 5, points=50, seed=9), mz_dtype=np.float32)
    build(path)
    ds = open_dataset({"path": str(path), "mzColumn": "false"})
    assert "mz" not in ds.schema.names
    got = slices(path, 2, mzColumn="false")
    assert all(len(s.ranges) == 1 for s in got)  # the intensities only
    assert_rows(rows(got), want)
    axis = pyspark_dataplug.imzml_mz_axis(str(path))
    assert axis.dtype == np.float64 and np.array_equal(axis, want[0]["mz"])
    with_mz = slices(path, 2)
    assert all(len(s.ranges) == 2 and s.ranges[0].size == 50 * 4 for s in with_mz)  # + the shared axis, once
    with pytest.raises(OptionError, match="columns"):
        slices(path, 1, mzColumn="false", columns="mz")
    processed = tmp_path / "p.imzML"
    write(processed, grid_spectra(3, 3, seed=1, processed=True), "processed")
    build(processed)
    with pytest.raises(OptionError, match="no shared axis"):
        pyspark_dataplug.imzml_mz_axis(str(processed))


def test_columns_read_only_what_they_need(tmp_path: Path) -> None:
    path = tmp_path / "p.imzML"
    want = write(path, grid_spectra(8, 8, seed=5, processed=True), "processed")
    build(path)
    coords = slices(path, 3, columns="y,index,x")
    assert all(s.nbytes == 0 for s in coords)
    table = pa.concat_tables([s.get() for s in coords])
    assert table.column_names == ["y", "index", "x"]
    assert table.column("x").to_pylist() == [w["x"] for w in want]
    only_mz = slices(path, 2, columns="mz")
    full = slices(path, 2)
    assert 0 < sum(s.nbytes for s in only_mz) < sum(s.nbytes for s in full)
    got = pa.concat_tables([s.get() for s in only_mz]).column("mz").to_pylist()
    assert all(np.array_equal(g, w["mz"]) for g, w in zip(got, want, strict=True))


# -- differential fuzz -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_fuzz_against_written_arrays(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    mode = str(rng.choice(["continuous", "processed"]))
    mz_dtype = [np.float32, np.float64][int(rng.integers(2))]
    int_dtype = [np.float32, np.float64, np.int32, np.int64][int(rng.integers(4))]
    width, height = int(rng.integers(1, 30)), int(rng.integers(1, 20))
    pixels = [(x, y) for y in range(1, height + 1) for x in range(1, width + 1)]
    keep = rng.random(len(pixels)) < rng.uniform(0.3, 1.0)  # irregular tissue outlines: holes in the grid
    pixels = [p for p, k in zip(pixels, keep, strict=True) if k] or [(1, 1)]
    if rng.random() < 0.3:
        pixels = [pixels[i] for i in rng.permutation(len(pixels))]  # random-access acquisition order
    points = int(rng.integers(1, 200))
    axis = np.sort(rng.uniform(50, 2000, points))
    spectra = []
    for x, y in pixels:
        n = int(rng.integers(1, points + 1)) if mode == "processed" else points
        mz = np.sort(rng.uniform(50, 2000, n)) if mode == "processed" else axis
        inten = rng.uniform(0, 1e4, n) if np.dtype(int_dtype).kind == "f" else rng.integers(-5, 1e6, n)
        spectra.append((mz, inten.astype(int_dtype), (x, y)))
    path = tmp_path / f"fuzz{seed}.imzML"
    want = write(path, spectra, mode, mz_dtype, int_dtype, mz_zlib=bool(rng.random() < 0.5),
                 int_zlib=bool(rng.random() < 0.5))
    build(path)
    for _ in range(6):
        strategy = str(rng.choice(STRATEGIES))
        parts = int(rng.integers(1, len(spectra) + 8))
        opts: dict[str, Any] = {"tileSize": str(int(rng.integers(1, 12))),
                                "maxGap": str(int(rng.choice([0, 64, 1 << 20]))),
                                "partSize": str(int(rng.choice([7, 100, 8 << 20])))}
        subset = want
        if rng.random() < 0.5:
            x0, y0 = int(rng.integers(0, width + 1)), int(rng.integers(0, height + 1))
            box = (x0, y0, x0 + int(rng.integers(0, width)), y0 + int(rng.integers(0, height)))
            opts["bbox"] = ",".join(map(str, box))
            subset = in_box(want, box)
        got = slices(path, parts, strategy, **opts)
        assert sum(s.rows for s in got) == len(subset)
        assert_rows(rows(got), subset)


# -- pruning ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("imzml") / "big.imzML"
    want = write(path, grid_spectra(100, 100, points=200, seed=12))
    build(path)
    return path, want


def test_bbox_reads_a_small_fraction_of_the_ibd(big: tuple[Path, list[dict[str, Any]]]) -> None:
    path, want = big
    ibd = str(path.with_suffix(".ibd"))
    size = Path(ibd).stat().st_size
    box = (41, 31, 62, 52)  # 22 x 22 of 100 x 100 pixels: 4.8%
    spec = ",".join(map(str, box))
    for strategy, gap in (("spectra", "0"), ("tiles", "0"), ("bytes", "32k")):  # rows between the box segments: 62 KB
        IO_STATS.reset()
        got = slices(path, 4, strategy, bbox=spec, maxGap=gap)
        assert IO_STATS.bytes_read.get(ibd, 0) == 0  # planning reads the index only
        assert_rows(rows(got), in_box(want, box))
        assert IO_STATS.bytes_read[ibd] / size < 0.06, strategy
        assert sum(s.rows for s in got) == 22 * 22
    # with the default maxGap (1 MiB) the 22 row segments are a few GETs spanning the rows between them
    got = slices(path, 1, bbox=spec)
    assert len(got[0].ranges) <= 3 and got[0].nbytes / size < 0.3


def test_bbox_is_closed_and_may_miss(big: tuple[Path, list[dict[str, Any]]]) -> None:
    path, want = big
    assert_rows(rows(slices(path, 2, bbox="5,7,5,7")), [w for w in want if (w["x"], w["y"]) == (5, 7)])
    assert slices(path, 3, bbox="200,200,300,300") == []
    with pytest.raises(OptionError, match="bad bbox"):
        slices(path, 1, bbox="1,2,3")


def test_pushed_filters_prune_spectra(big: tuple[Path, list[dict[str, Any]]]) -> None:
    """What Spark's pushdown worker does: pushFilters, then partitions(); Spark filters the rows again."""
    from pyspark.sql.datasource import EqualTo, GreaterThanOrEqual, LessThan

    from pyspark_dataplug.datasource import DataplugPushdownReader, DataplugReader

    path, want = big
    opts = {"path": str(path), "partitions": "4", "maxGap": "0"}
    full = [s for p in DataplugReader(opts, {}).partitions() for s in p.slices]
    reader = DataplugPushdownReader(opts, {})
    filters = [GreaterThanOrEqual(("x",), 20), LessThan(("x",), 30), EqualTo(("y",), 50), EqualTo(("index",), 3)]
    assert reader.pushFilters(filters) == filters
    pruned = [s for p in reader.partitions() for s in p.slices]
    assert sum(s.nbytes for s in pruned) / sum(s.nbytes for s in full) < 0.01
    assert_rows(rows(pruned), [w for w in want if 20 <= w["x"] <= 30 and w["y"] == 50])


# -- several objects, listing, scanning, other APIs -------------------------------------------------------------
def test_folder_lists_only_imzml_and_reads_several_objects(tmp_path: Path) -> None:
    a = write(tmp_path / "a.imzML", grid_spectra(4, 3, seed=1))
    b = write(tmp_path / "b.imzML", grid_spectra(3, 3, seed=2, processed=True), "processed")
    assert name_format(str(tmp_path / "a.imzML")) == "imzml"
    build(tmp_path)
    ds = open_dataset({"path": str(tmp_path)})
    assert ds.format_name == "imzml" and [o.uri.rsplit("/", 1)[1] for o in ds.objects] == ["a.imzML", "b.imzML"]
    got = [s.get() for p in ds.plan(partitions=3) for s in p]
    table = pa.concat_tables(got).to_pylist()
    assert_rows(table[:12], a)
    assert_rows(table[12:], b)
    write(tmp_path / "c.imzML", grid_spectra(2, 2, seed=3, int_dtype=np.float64), int_dtype=np.float64)
    build(tmp_path)
    with pytest.raises(OptionError, match="c.imzML: its intensities are float64"):
        open_dataset({"path": str(tmp_path)}).plan(partitions=2)


def test_uppercase_ibd(tmp_path: Path) -> None:
    path = tmp_path / "u.imzML"
    want = write(path, grid_spectra(3, 2, seed=1))
    (tmp_path / "u.ibd").rename(tmp_path / "u.IBD")
    build(path)
    s = slices(path, 1)
    assert s[0].ranges[0].uri.endswith("u.IBD")
    assert_rows(rows(s), want)


def test_read_without_an_index_scans_both_files(tmp_path: Path) -> None:
    for mode, int_zlib in (("continuous", False), ("processed", True)):
        path = tmp_path / f"s-{mode}.imzML"
        want = write(path, grid_spectra(7, 5, seed=3, processed=mode == "processed"), mode, int_zlib=int_zlib)
        got = slices(path, 4, missingIndex="scan")
        assert len(got) == 1 and got[0].rows is None and len(got[0].ranges) == 2
        assert_rows(rows(got), want)
        assert_rows(rows(slices(path, 4, missingIndex="scan", bbox="2,2,3,9")), in_box(want, (2, 2, 3, 9)))


def test_slices_pickle_and_the_engine_agnostic_api(tmp_path: Path) -> None:
    from pyspark_dataplug import CloudObject
    from pyspark_dataplug.formats.imzml import ImzML, partition_bytes_batches, partition_tiles_batches

    path = tmp_path / "e.imzML"
    want = write(path, grid_spectra(9, 9, seed=7, processed=True), "processed", int_zlib=True)
    co = CloudObject.from_path(ImzML, str(path), tileSize=4)
    co.preprocess()
    for fn in (partition_tiles_batches, partition_bytes_batches):
        got = co.partition(fn, num_batches=4)
        assert len(got) == 4
        assert_rows(rows([pickle.loads(pickle.dumps(s)) for s in got]), want)


def test_streams_in_small_pieces_and_small_batches(big: tuple[Path, list[dict[str, Any]]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import pyspark_dataplug.formats.imzml as imzml

    path, want = big
    monkeypatch.setattr(imzml, "BATCH_BYTES", 50_000)
    monkeypatch.setattr(imzml, "RUN_BYTES", 3_000)  # runs of back-to-back arrays cut every few spectra
    for options in ({}, {"mzColumn": "false"}):
        s = slices(path, 1, partSize="5000", bbox="1,1,100,10", **options)[0]
        batches = list(s.batches())
        assert len(batches) > 10 and s.context["stream"]
        assert_rows(pa.Table.from_batches(batches).to_pylist(), in_box(want, (1, 1, 100, 10)))


# -- index build and bad files ---------------------------------------------------------------------------------
def test_index_holds_the_layout(big: tuple[Path, list[dict[str, Any]]]) -> None:
    path, _ = big
    index = open_dataset({"path": str(path)}).indexes[0]
    t = index.tables["spectra"]
    p = ImzMLParser(str(path))
    assert t.column("intensity_offset").to_pylist() == p.intensityOffsets
    assert t.column("mz_length").to_pylist() == p.mzLengths
    p.m.close()
    a = index.attrs["imzml"]
    ibd = path.with_suffix(".ibd")
    assert a["mode"] == "continuous" and a["shared_mz"] and a["ibd"]["size"] == ibd.stat().st_size
    assert a["uuid"].strip("{}").replace("-", "").lower() == ibd.read_bytes()[:16].hex()
    assert a["arrays"] == {"mz": {"dtype": "f8", "compression": "none"},
                           "intensity": {"dtype": "f4", "compression": "none"}}
    assert index.records == 10_000 and a["settings"]["max count of pixels x"] == "100"


def test_build_reads_the_xml_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyspark_dataplug.formats.imzml as imzml

    path = tmp_path / "r.imzML"
    write(path, grid_spectra(20, 20, points=3, seed=1))
    monkeypatch.setattr(imzml, "READ_BYTES", 4096)
    IO_STATS.reset()
    build(path)
    xml = str(path)
    assert IO_STATS.read_calls[xml] >= path.stat().st_size // 4096
    assert IO_STATS.bytes_read[str(path.with_suffix(".ibd"))] == 16  # the UUID, nothing else


def small(tmp_path: Path, name: str = "bad", **kw: Any) -> Path:
    path = tmp_path / f"{name}.imzML"
    write(path, grid_spectra(4, 4, points=10, seed=2, processed=True), "processed", **kw)
    return path


def test_missing_ibd_names_both_paths(tmp_path: Path) -> None:
    path = small(tmp_path)
    path.with_suffix(".ibd").unlink()
    with pytest.raises(FormatError, match=r"bad\.ibd nor .*bad\.IBD exists"):
        build(path)
    with pytest.raises(FormatError, match="missing"):
        slices(path, 1, missingIndex="scan")


def test_truncated_ibd_fails_the_build(tmp_path: Path) -> None:
    path = small(tmp_path)
    ibd = path.with_suffix(".ibd")
    ibd.write_bytes(ibd.read_bytes()[:-30])
    with pytest.raises(FormatError, match=r"spectrum 15's (m/z|intensity) array at offset \d+ .* ends past the end of "
                                          r".*bad\.ibd .*truncated"):
        build(path)
    ibd.write_bytes(ibd.read_bytes()[:10])
    with pytest.raises(FormatError, match="less than the 16-byte UUID"):
        build(path)


def test_uuid_mismatch_fails_the_build(tmp_path: Path) -> None:
    path = small(tmp_path)
    ibd = path.with_suffix(".ibd")
    data = bytearray(ibd.read_bytes())
    data[3] ^= 0xFF
    ibd.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"bad\.ibd at byte 0: starts with UUID .* declares .*IMS:1000080"):
        build(path)


def edit_xml(path: Path, fn: Any) -> None:
    path.write_text(fn(path.read_text(encoding="latin-1")), encoding="latin-1")


def test_offsets_past_the_ibd_fail_the_build(tmp_path: Path) -> None:
    path = small(tmp_path)

    def push_last(text: str) -> str:
        hits = list(re.finditer(r'(accession="IMS:1000102"[^>]*value=")(\d+)"', text))
        at = hits[5]  # spectrum 2's intensity array
        return text[: at.start(2)] + "999999999" + text[at.end(2):]

    edit_xml(path, push_last)
    with pytest.raises(FormatError, match=r"spectrum 2's intensity array at offset 999999999 .*bad\.ibd"):
        build(path)


def test_inconsistent_lengths_and_unsupported_terms_fail_the_build(tmp_path: Path) -> None:
    path = small(tmp_path)
    edit_xml(path, lambda t: t.replace('name="external encoded length" value="', 'name="external encoded length" '
                                       'value="1', 1))
    with pytest.raises(FormatError, match="spectrum 0's m/z array holds .* encoded length is 1"):
        build(path)
    path = small(tmp_path, "np", int_zlib=True)
    edit_xml(path, lambda t: t.replace('accession="MS:1000574"', 'accession="MS:1002312"'))
    with pytest.raises(FormatError, match="MS-Numpress linear prediction compression"):
        build(path)
    path = small(tmp_path, "dtd")
    edit_xml(path, lambda t: t.replace("<mzML", '<!DOCTYPE mzML [<!ENTITY a "aaaa">]>\n<mzML', 1))
    with pytest.raises(FormatError, match="entity"):
        build(path)
    path = small(tmp_path, "cut")
    edit_xml(path, lambda t: t[: len(t) // 2])
    with pytest.raises(FormatError, match=r"cut\.imzML at byte \d+: not valid XML"):
        build(path)
    path = tmp_path / "notxml.imzML"
    path.write_bytes(b"\x00\x01binary")
    with pytest.raises(FormatError, match="does not start like XML"):
        build(path)


@pytest.mark.filterwarnings("ignore:Accession MS.1000523")  # pyimzML's own note on the same exporter bug
def test_name_of_the_data_type_wins_over_a_wrong_accession(tmp_path: Path) -> None:
    """Exporters known to write MS:1000523 (64-bit) with the name "32-bit float": pyimzML reads the name."""
    path = tmp_path / "acc.imzML"
    write(path, grid_spectra(3, 3, seed=1))
    edit_xml(path, lambda t: t.replace('accession="MS:1000521" name="32-bit float"',
                                       'accession="MS:1000523" name="32-bit float"'))
    build(path)
    assert_rows(rows(slices(path, 2)), pyimzml_rows(path))


def test_corrupt_compressed_array_is_an_error_naming_the_spectrum(tmp_path: Path) -> None:
    path = small(tmp_path, int_zlib=True)
    hits = list(re.finditer(r'(name="external array length" value=")(\d+)"', path.read_text(encoding="latin-1")))

    def lie(text: str) -> str:
        at = hits[7]  # spectrum 3's intensity array claims one value more than it holds
        return text[: at.start(2)] + str(int(at.group(2)) + 1) + text[at.end(2):]

    edit_xml(path, lie)
    build(path)
    with pytest.raises(FormatError, match=r"spectrum 3 of .*bad\.imzML: its intensity array decodes to \d+ bytes"):
        rows(slices(path, 1))


def test_ibd_rewritten_after_indexing_is_stale(tmp_path: Path) -> None:
    import os

    path = small(tmp_path)
    build(path)
    got = slices(path, 2)
    ibd = path.with_suffix(".ibd")
    data = bytearray(ibd.read_bytes())
    data[-1] ^= 1
    ibd.write_bytes(bytes(data))
    st = ibd.stat()
    os.utime(ibd, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    with pytest.raises(StaleIndexError, match=r"bad\.ibd"):
        rows(got)
    with pytest.raises(StaleIndexError):
        rows(slices(path, 2))  # a new plan from the old index fails the same way


def test_decode_checks_zlib_data(tmp_path: Path) -> None:
    from pyspark_dataplug.formats.imzml import _values

    good = zlib.compress(np.arange(4, dtype="<f4").tobytes())
    info = {"dtype": "f4", "compression": "zlib"}
    assert _values(good, info, 4, "x.ibd", 0, "it").tolist() == [0, 1, 2, 3]
    with pytest.raises(FormatError, match="not valid zlib"):
        _values(good[:-3] + b"xyz", info, 4, "x.ibd", 0, "spectrum 1")


def test_on_s3_the_ibd_is_found_versioned_and_checked(tmp_path: Path, s3_store: Any) -> None:
    """The same reads through S3 (moto's server): the .IBD beside the .imzML, every .ibd range If-Match'ed."""
    local = tmp_path / "s3.imzML"
    want = write(local, grid_spectra(9, 6, seed=4, processed=True), "processed", int_zlib=True)
    uri = s3_store.put("run/s3.imzML", local.read_bytes())
    ibd = s3_store.put("run/s3.IBD", local.with_suffix(".ibd").read_bytes())
    opts = dict(s3_store.options)
    assert [o.uri for o in open_dataset({"path": s3_store.root + "/run/", "missingIndex": "scan", **opts}).objects] \
        == [uri]  # the .IBD is never an object of its own
    build(uri, **opts)
    got = slices(uri, 3, "tiles", tileSize="4", **opts)
    assert all(r.uri == ibd and r.etag for s in got for r in s.ranges)
    assert_rows(rows(got), want)
    assert_rows(rows(slices(uri, 2, missingIndex="scan", indexLocation=str(tmp_path / "none"), **opts)), want)
    data = bytearray(local.with_suffix(".ibd").read_bytes())
    data[-1] ^= 1
    s3_store.put("run/s3.IBD", bytes(data))
    with pytest.raises(StaleIndexError):
        rows(got)
