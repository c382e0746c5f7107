"""What the CLI shows, without Spark: build progress (snapshots and their rendering), the summary table, the
plan picture (``inspect --plot``: slice sizes along the object, slice boxes on a map) and one-line errors.

Builds run in this process (``run_tasks_locally``), so progress is exact and the numbers can be checked.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data import make_fastq, make_text
from pointcloud_data import las_bytes, make_las
from test_cog import write_cog
from test_imzml import grid_spectra
from test_imzml import write as write_imzml

from pyspark_dataplug.cli import main
from pyspark_dataplug.index.build import BuildProgress, _Tracker, plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset
from pyspark_dataplug.plot import draw_plan, plan_layout
from pyspark_dataplug.progress import ProgressPrinter, describe, human_bytes, human_seconds, summary_table
from pyspark_dataplug.storage import ObjectInfo


def snapshot(**kw: Any) -> BuildProgress:
    base = {"stage": "map", "objects": 4, "up_to_date": 0, "objects_done": 0, "bytes_total": 100, "bytes_done": 0,
            "tasks": 8, "tasks_done": 0, "stage_seconds": 0.0, "seconds": 0.0}
    return BuildProgress(**{**base, **kw})


# -- progress snapshots from real builds ------------------------------------------------------------------------
def test_a_build_reports_every_stage_with_bytes_and_objects(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    sizes = {}
    for i in range(3):
        data = make_fastq(400 + 300 * i, seed=60 + i)
        (folder / f"r{i}.fastq").write_bytes(data)
        sizes[f"r{i}.fastq"] = len(data)
    from Bio import bgzf  # BGZF blocks are walked in parallel, then counted: a second stage (a .gz takes one)

    with bgzf.BgzfWriter(str(folder / "z.fastq.gz"), "wb") as w:
        w.write(make_fastq(2000, seed=64))
    gz = (folder / "z.fastq.gz").read_bytes()
    total = sum(sizes.values()) + len(gz)
    seen: list[BuildProgress] = []
    summary = plan_build(str(folder), "fastq").run(run_tasks_locally, progress=seen.append)

    stages = [p.stage for p in seen]
    assert stages[0] == "map" and stages[-1] == "done"
    order = list(dict.fromkeys(stages))
    assert order == ["map", "follow-up", "write", "done"]  # the BGZF object adds a second stage
    maps = [p for p in seen if p.stage == "map"]
    assert [p.tasks_done for p in maps] == list(range(maps[0].tasks + 1))  # in-process: every task is reported
    assert maps[-1].bytes_done == maps[-1].bytes_total == total
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(maps, maps[1:], strict=False))
    assert maps[-1].objects_done == 4 and maps[0].objects == 4
    follow = [p for p in seen if p.stage == "follow-up"]
    assert follow[-1].bytes_total == len(gz) and follow[-1].objects_done == 1
    writes = [p for p in seen if p.stage == "write"]
    assert [p.objects_done for p in writes] == [0, 1, 2, 3]
    assert seen[-1].objects_done == 4 and seen[-1].bytes_done == total

    # the summary table from the same build: names relative to the folder, totals, then all up to date
    table = summary_table(summary)
    assert table.splitlines()[0] == f"in {folder}/"
    assert "r0.fastq" in table and f"{folder}/r0.fastq" not in table
    assert "4 object(s)" in table and "4 indexed" in table and f"{400 + 700 + 1000 + 2000:,}" in table
    seen.clear()
    again = plan_build(str(folder), "fastq").run(run_tasks_locally, progress=seen.append)
    assert [p.stage for p in seen] == ["done"] and seen[0].up_to_date == 4 and seen[0].objects == 0
    assert "4 up to date" in summary_table(again)
    assert f"{400 + 700 + 1000 + 2000:,}" in summary_table(again)  # records come from the kept manifests
    assert "... 2 more object(s)" in summary_table(again, limit=2)


def test_tasks_weigh_their_objects_share_and_objects_finish_with_their_last_task() -> None:
    seen: list[BuildProgress] = []
    todo = [ObjectInfo("a", 600, "e"), ObjectInfo("b", 100, "e")]
    tracker = _Tracker(seen.append, todo, 5, 0.0)
    done = tracker.stage("map", [0, 0, 0, 1])  # object a in three tasks, b in one
    done(1)
    done(1)  # no change, no snapshot
    done(3)
    done(9)  # never past the stage's tasks (Spark counts retried attempts too)
    assert [(p.tasks_done, p.bytes_done, p.objects_done) for p in seen] == [
        (0, 0, 0), (1, 200, 0), (3, 600, 1), (4, 700, 2)]
    assert all(p.up_to_date == 5 and p.bytes_total == 700 and p.tasks == 4 for p in seen)


# -- rendering ----------------------------------------------------------------------------------------------------
def test_numbers_read_like_a_person_writes_them() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 123_456_789, 5e12)] == ["0 B", "999 B", "1.0 kB", "123.5 MB",
                                                                         "5.0 TB"]
    assert [human_seconds(s) for s in (0, 7.4, 61, 3725)] == ["0:00", "0:07", "1:01", "1:02:05"]


def test_a_snapshot_line_has_tasks_objects_bytes_throughput_and_eta() -> None:
    p = snapshot(tasks_done=2, objects_done=1, bytes_total=400_000_000, bytes_done=100_000_000, stage_seconds=5.0,
                 seconds=6.0, up_to_date=3)
    assert p.rate == 20_000_000 and p.eta == 15.0
    line = describe(p)
    assert line.startswith("map  2/8 tasks  1/4 objects (3 up to date)  100.0 MB / 400.0 MB  20.0 MB/s  ETA 0:15")
    assert describe(snapshot()).endswith("-- B/s  ETA --  elapsed 0:00")  # nothing done yet: no rate, no ETA
    assert describe(snapshot(stage="done", bytes_done=100, seconds=65)) == \
        "done in 1:05: 4 object(s) indexed, 100 B"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_on_a_terminal_one_line_is_redrawn_at_most_ten_times_a_second() -> None:
    out, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(out, tty=True, clock=clock)
    for k in range(1, 101):  # 100 snapshots in one second
        clock.t = k / 100
        printer(snapshot(tasks=1000, tasks_done=k, bytes_done=k))
    printer(snapshot(tasks=1000, tasks_done=1000, bytes_done=100))  # the stage ends: always drawn
    printer(snapshot(stage="done", bytes_done=100))
    text = out.getvalue()
    draws = text.count("\r")
    assert 10 <= draws <= 13  # the first, ~10 s^-1, the stage's end, done
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, finished when the build is
    assert text.count("\x1b[K") == draws  # each redraw erases what a longer line left


def test_off_a_terminal_plain_lines_at_stage_changes_and_every_ten_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(out, tty=False, clock=clock)
    for k in range(0, 301):  # 30 s of a stage, a snapshot every 0.1 s
        clock.t = k / 10
        printer(snapshot(tasks=300, tasks_done=k))
    clock.t = 31
    printer(snapshot(stage="write", tasks=0, tasks_done=0, objects_done=0))
    printer(snapshot(stage="done"))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [ln.split()[0] for ln in lines] == ["map", "map", "map", "map", "write", "done"]
    # the start, every 10 s, and the end (which falls on the 30 s mark: one line for both)
    assert [ln.split()[1] for ln in lines[:4]] == ["0/300", "100/300", "200/300", "300/300"]


def test_an_unset_tty_follows_the_stream() -> None:
    assert ProgressPrinter(io.StringIO()).tty is False


# -- the plan picture -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spatial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plot")
    paths = {"laz": str(root / "t.laz"), "cog": str(root / "s.tif"), "imzml": str(root / "i.imzML")}
    Path(paths["laz"]).write_bytes(las_bytes(make_las(1, "1.2", 120_000, seed=2), True))
    write_cog(Path(paths["cog"]), (1, 700, 900), "uint16", seed=3)
    write_imzml(Path(paths["imzml"]), grid_spectra(30, 20, points=16, seed=4))
    for p in paths.values():
        plan_build(p).run(run_tasks_locally, force=True)
    return paths


def _rows(slice_: Any) -> dict[str, np.ndarray]:
    t = slice_.get()
    return {n: t.column(n).to_numpy() for n in t.column_names if n in ("x", "y", "xmin", "ymin", "xmax", "ymax")}


def test_slice_boxes_hold_exactly_their_rows(spatial: dict[str, str]) -> None:
    """Each format's box is checked against the rows its slice decodes: LAZ chunks' points, COG tiles'
    bounds, imzML pixels (unit squares around their coordinates)."""
    for name, path in spatial.items():
        ds = open_dataset({"path": path, "columns": "x,y" if name != "cog" else "xmin,ymin,xmax,ymax"})
        plan = ds.plan(partitions=3)
        layout = plan_layout(ds, plan)
        assert len(layout.slices) >= 2, name
        for part, view in zip([s for p in plan for s in p], layout.slices, strict=True):
            r = _rows(part)
            if name == "cog":
                want = (r["xmin"].min(), r["ymin"].min(), r["xmax"].max(), r["ymax"].max())
            elif name == "imzml":
                want = (r["x"].min() - 0.5, r["y"].min() - 0.5, r["x"].max() + 0.5, r["y"].max() + 0.5)
            else:
                want = (r["x"].min(), r["y"].min(), r["x"].max(), r["y"].max())
            assert view.box == pytest.approx(want), name


def test_boxes_of_a_pruned_read_lie_in_the_box(spatial: dict[str, str]) -> None:
    ds = open_dataset({"path": spatial["laz"], "bbox": "1000,2000,1300,2400"})
    everything = open_dataset({"path": spatial["laz"]})
    pruned = plan_layout(ds, ds.plan(partitions=4))
    full = plan_layout(everything, everything.plan(partitions=4))
    assert 0 < sum(s.data_bytes for s in pruned.slices) < sum(s.data_bytes for s in full.slices)
    for s in pruned.slices:  # a kept chunk meets the box
        assert s.box is not None and s.box[0] <= 1300 and s.box[2] >= 1000 and s.box[1] <= 2400 and s.box[3] >= 2000


def test_gzip_slices_along_the_object_and_their_index_bytes(tmp_path: Path) -> None:
    path = tmp_path / "r.fastq.gz"
    path.write_bytes(gzip.compress(make_fastq(6000, seed=65)))
    plan_build(str(path), None, gzipSpacing="128k").run(run_tasks_locally)
    ds = open_dataset({"path": str(path)})
    layout = plan_layout(ds, ds.plan(partitions=5))
    assert layout.files == {str(path): path.stat().st_size}
    starts = [v.ranges[0][1] for v in layout.slices]
    assert starts == sorted(starts) and max(e for v in layout.slices for _, _, e in v.ranges) == path.stat().st_size
    assert layout.slices[0].index_bytes == 0 and all(v.index_bytes > 0 for v in layout.slices[1:])  # windows
    assert all(v.box is None for v in layout.slices)  # reads have no place on a map
    assert sum(v.rows for v in layout.slices) == 6000


def _png(path: Path) -> bytes:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    return data


def test_inspect_plot_draws_a_map_for_rasters_and_bars_for_text(spatial: dict[str, str], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "cog.png"
    assert main(["inspect", spatial["cog"], "--partitions", "4", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "index statistics: 1 of 1 object(s) indexed" in out
    assert "plan: 4 partition(s), 4 slice(s)" in out and "rows 1 / 1 / 1" in out  # one tile each
    assert f"plot: {png} (4 slice(s), 4 on the map)" in out
    with_map = _png(png)
    text = tmp_path / "notes.txt"
    text.write_bytes(make_text(3000, seed=66))
    plan_build(str(text), None, indexSpacing="4k").run(run_tasks_locally)
    bars = tmp_path / "text.png"
    assert main(["inspect", str(text), "--partitions", "3", "--plot", str(bars)]) == 0
    assert f"plot: {bars} (3 slice(s))" in capsys.readouterr().out
    _png(bars)
    from PIL import Image  # matplotlib's own dependency: the map is a third panel, so the picture is taller

    assert Image.open(io.BytesIO(with_map)).height > Image.open(bars).height


def test_draw_plan_without_matplotlib_names_the_plot_extra(spatial: dict[str, str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    ds = open_dataset({"path": spatial["laz"]})
    with pytest.raises(ImportError, match=r"pip install 'pyspark-dataplug\[plot\]'"):
        draw_plan(ds, ds.plan(), str(tmp_path / "x.png"))
    assert main(["inspect", spatial["laz"], "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'pyspark-dataplug[plot]'" in err and "Traceback" not in err


# -- errors: one line, exit 2, the traceback only with --debug ----------------------------------------------------
def test_a_missing_extra_is_one_line_with_the_pip_install(spatial: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "lazrs", None)
    assert main(["inspect", spatial["laz"]]) == 2
    err = capsys.readouterr().err
    assert err == ("dataplug: reading laz needs the Python module 'lazrs', which is not installed. Install it with: "
                   "pip install 'pyspark-dataplug[las]' (on the driver and on every executor)\n")


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(spatial: dict[str, str], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "no-such-folder" / "x.png")
    assert main(["inspect", spatial["cog"], "--plot", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataplug: unexpected error: FileNotFoundError:") and err.count("\n") == 1
    assert "--debug" in err and "Traceback" not in err
    assert main(["--debug", "inspect", spatial["cog"], "--plot", target]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("dataplug: ")
    assert main(["inspect", spatial["cog"], "-o", "novalue"]) == 2  # was a SystemExit with its own wording
    assert "--option takes KEY=VALUE, got 'novalue'" in capsys.readouterr().err
