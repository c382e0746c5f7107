"""Pictures of a read plan (``dataplug inspect --plot FILE.png``), with matplotlib from the ``plot`` extra.

What a plan means is computed here without matplotlib (:func:`plan_layout`: pure data, tested on its own);
only :func:`draw_plan` imports it. Three panels: the byte ranges every slice reads along its objects, the
bytes of each partition (data and index), and -- for formats whose rows have a place on a map
(:meth:`Format.extent <pyspark_dataplug.formats._base.Format.extent>`: point clouds, rasters, imzML
images) -- the box of every slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .index.store import Index
    from .plan import Dataset
    from .slices import Slice


@dataclass(frozen=True)
class SliceView:
    """One slice of a plan: where its bytes are and how much it reads."""

    partition: int
    uri: str
    #: ``(file, start, end)`` of every data range (``end`` exclusive); index ranges are counted apart
    ranges: tuple[tuple[str, int, int], ...]
    data_bytes: int
    index_bytes: int
    rows: int | None
    #: ``(xmin, ymin, xmax, ymax)`` from the format, or None
    box: tuple[float, float, float, float] | None


@dataclass
class PlanLayout:
    """A plan as data: its slices, and the files their data ranges lie in, in the order first read."""

    slices: list[SliceView] = field(default_factory=list)
    #: file -> its length (the object's size, or the end of the last range read from it)
    files: dict[str, int] = field(default_factory=dict)

    @property
    def partitions(self) -> int:
        return 1 + max((s.partition for s in self.slices), default=-1)

    def partition_bytes(self) -> list[tuple[int, int]]:
        """``(data bytes, index bytes)`` per partition."""
        out = [[0, 0] for _ in range(self.partitions)]
        for s in self.slices:
            out[s.partition][0] += s.data_bytes
            out[s.partition][1] += s.index_bytes
        return [(a, b) for a, b in out]

    def file_offsets(self) -> dict[str, int]:
        """Where each file starts on one axis that puts the files end to end."""
        offsets, base = {}, 0
        for name, size in self.files.items():
            offsets[name] = base
            base += size
        return offsets


def plan_layout(dataset: Dataset, plan: list[list[Slice]]) -> PlanLayout:
    """What :func:`draw_plan` draws and ``dataplug inspect`` counts; reads nothing (no I/O)."""
    indexes: dict[str, Index | None] = {o.uri: i for o, i in zip(dataset.objects, dataset.indexes, strict=True)}
    sizes = {o.uri: o.size for o in dataset.objects}
    layout = PlanLayout()
    for p, part in enumerate(plan):
        for s in part:
            index = indexes.get(s.uri)
            location = index.location if index is not None else None
            data: list[tuple[str, int, int]] = []
            index_bytes = 0
            for r in s.ranges:
                if location and r.uri.startswith(location.rstrip("/") + "/"):
                    index_bytes += r.size
                    continue
                data.append((r.uri, r.start, r.end))
                known = sizes.get(r.uri, 0)
                layout.files[r.uri] = max(layout.files.get(r.uri, 0), known, r.end)
            box = dataset.fmt.extent(index, s) if index is not None else None
            layout.slices.append(SliceView(p, s.uri, tuple(data), sum(e - a for _, a, e in data), index_bytes,
                                           s.rows, box))
    return layout


def draw_plan(dataset: Dataset, plan: list[list[Slice]], path: str, title: str | None = None) -> PlanLayout:
    """Write a PNG (or any format matplotlib knows from the name) of the plan; returns what it drew."""
    from .formats._base import need

    need("matplotlib", "plot", "dataplug inspect --plot")
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import EngFormatter, MaxNLocator

    layout = plan_layout(dataset, plan)
    boxes = [s for s in layout.slices if s.box is not None]
    panels = 3 if boxes else 2
    fig = Figure(figsize=(11, 3.6 * panels), layout="constrained")
    axes = fig.subplots(panels, 1)
    cmap = colormaps["tab20"]

    def color(partition: int) -> tuple[float, float, float, float]:
        return cmap(partition % 20)

    # 1. along the objects: every data range of every slice, as tall as the bytes its slice reads
    ax = axes[0]
    offsets = layout.file_offsets()
    for s in layout.slices:
        for uri, a, e in s.ranges:
            # translucent: slices of a gzip object overlap between seek points, and that should show
            ax.add_patch(Rectangle((offsets[uri] + a, 0), max(e - a, 1), s.data_bytes, alpha=0.75,
                                   facecolor=color(s.partition), edgecolor="black", linewidth=0.3))
    total = sum(layout.files.values())
    for base in offsets.values():
        if base:
            ax.axvline(base, color="grey", linewidth=0.8, linestyle="--")
    if len(layout.files) <= 8:
        for uri, base in offsets.items():
            ax.annotate(uri.rsplit("/", 1)[-1], (base, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                        va="top", ha="left", rotation=0, xytext=(2, -2), textcoords="offset points")
    top = max((s.data_bytes for s in layout.slices), default=1)
    ax.set_xlim(0, max(total, 1))
    ax.set_ylim(0, top * 1.15 or 1)
    ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.set_xlabel(f"offset in the object{'s (end to end)' if len(layout.files) > 1 else ''}")
    ax.set_ylabel("bytes its slice reads")
    ax.set_title("slices along the object (colour: partition)")

    # 2. bytes per partition: data and index
    ax = axes[1]
    per = layout.partition_bytes()
    xs = list(range(len(per)))
    ax.bar(xs, [d for d, _ in per], color=[color(i) for i in xs], edgecolor="black", linewidth=0.3,
           label="data (colour: partition)")
    ax.bar(xs, [i for _, i in per], bottom=[d for d, _ in per], color="lightgrey", edgecolor="black",
           linewidth=0.3, label="index")
    ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("partition")
    ax.set_ylabel("bytes read")
    data_mb = sorted(d / 1e6 for d, _ in per)
    if data_mb:
        ax.set_title(f"{len(per)} partition(s): {data_mb[0]:.2f} / {data_mb[len(data_mb) // 2]:.2f} / "
                     f"{data_mb[-1]:.2f} MB of data (min / median / max)")
    ax.legend(loc="upper right", fontsize=8)

    # 3. on a map: the box of every slice
    if boxes:
        ax = axes[2]
        for s in boxes:
            assert s.box is not None
            x0, y0, x1, y1 = s.box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=color(s.partition), alpha=0.35,
                                   edgecolor=color(s.partition), linewidth=1.0))
            if layout.partitions <= 50:
                ax.annotate(str(s.partition), ((x0 + x1) / 2, (y0 + y1) / 2), ha="center", va="center", fontsize=7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.autoscale_view()
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"slice boxes on the map ({len(boxes)} slice(s); number: partition)")
    fig.suptitle(title or f"dataplug plan: {dataset.format_name}, {len(plan)} partition(s)")
    fig.savefig(path, dpi=110)
    return layout
