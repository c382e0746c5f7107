"""Boxes for spatial pruning, shared by the point-cloud and raster formats.

Two ways in, as for VCF regions: the ``bbox`` option (``xmin,ymin,xmax,ymax`` or ``xmin,ymin,zmin,xmax,ymax,zmax``
in the file's coordinate system; works on every Spark version and over Spark Connect) and the comparisons Spark
pushes on coordinate columns when ``spark.sql.python.filterPushdown.enabled`` is true. A box is closed:
a point on its edge is in it, as laspy's ``CopcReader.query(bounds=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError

INF = math.inf


@dataclass(frozen=True)
class Box:
    """An axis-aligned box; unbounded sides are infinite (a 2-D box is unbounded in z)."""

    xmin: float = -INF
    ymin: float = -INF
    zmin: float = -INF
    xmax: float = INF
    ymax: float = INF
    zmax: float = INF

    def intersects(self, xmin: float, ymin: float, zmin: float, xmax: float, ymax: float, zmax: float) -> bool:
        """Whether a closed box ``[min, max]`` on each axis can hold a point of this one."""
        return (xmin <= self.xmax and xmax >= self.xmin and ymin <= self.ymax and ymax >= self.ymin
                and zmin <= self.zmax and zmax >= self.zmin)

    def and_(self, other: Box) -> Box:
        return Box(max(self.xmin, other.xmin), max(self.ymin, other.ymin), max(self.zmin, other.zmin),
                   min(self.xmax, other.xmax), min(self.ymax, other.ymax), min(self.zmax, other.zmax))

    def to_json(self) -> list[float | None]:
        return [None if math.isinf(v) else v for v in (self.xmin, self.ymin, self.zmin, self.xmax, self.ymax,
                                                       self.zmax)]

    @classmethod
    def from_json(cls, values: Iterable[float | None]) -> Box:
        v = list(values)
        return cls(*[(-INF if i < 3 else INF) if x is None else float(x) for i, x in enumerate(v)])


def parse_bbox(spec: str) -> Box:
    """``xmin,ymin,xmax,ymax`` or ``xmin,ymin,zmin,xmax,ymax,zmax`` -> :class:`Box` (a clear error otherwise)."""
    try:
        values = [float(v) for v in str(spec).replace(" ", "").split(",") if v != ""]
    except ValueError:
        values = []
    if len(values) == 4:
        box = Box(values[0], values[1], -INF, values[2], values[3], INF)
    elif len(values) == 6:
        box = Box(*values)
    else:
        raise OptionError(f"bad bbox {spec!r}: write xmin,ymin,xmax,ymax or xmin,ymin,zmin,xmax,ymax,zmax (numbers, "
                          "in the file's coordinate system)")
    if box.xmin > box.xmax or box.ymin > box.ymax or box.zmin > box.zmax:
        raise OptionError(f"bad bbox {spec!r}: a minimum is greater than its maximum")
    return box


def box_from_filters(filters: Iterable[Any], columns: Mapping[str, str]) -> Box | None:
    """The box implied by pushed comparisons; ``columns`` maps a column to its axis (``x``, ``y`` or ``z``).

    ``{"x": "x", "y": "y", "z": "z"}`` for a point's coordinates (``x >= 3`` sets the box's ``xmin``, ``x < 5``
    its ``xmax``); ``{"xmin": "x", "xmax": "x", ...}`` for a tile's extent works the same way, because a tile
    is kept when it *intersects* the box (a tile with ``xmin >= 3`` has ``xmax >= 3``). Filters on other
    columns or of other kinds are ignored: Spark applies every filter to the rows anyway, so the box only
    has to keep every part that could hold a match. None: no box.
    """
    lo = {"x": -INF, "y": -INF, "z": -INF}
    hi = {"x": INF, "y": INF, "z": INF}
    found = False
    for f in filters:
        col = ".".join(getattr(f, "attribute", ()) or ())
        if col not in columns:
            continue
        value = getattr(f, "value", None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        axis = columns[col]
        kind = type(f).__name__
        if kind in ("GreaterThan", "GreaterThanOrEqual"):
            lo[axis] = max(lo[axis], float(value))
        elif kind in ("LessThan", "LessThanOrEqual"):
            hi[axis] = min(hi[axis], float(value))
        elif kind == "EqualTo":
            lo[axis], hi[axis] = max(lo[axis], float(value)), min(hi[axis], float(value))
        else:
            continue
        found = True
    if not found:
        return None
    return Box(lo["x"], lo["y"], lo["z"], hi["x"], hi["y"], hi["z"])
