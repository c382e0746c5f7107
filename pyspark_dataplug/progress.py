"""What ``dataplug index`` prints while it runs and when it ends: a progress line and a summary table.

Kept apart from the CLI's commands and from the build itself: the build only emits
:class:`~pyspark_dataplug.index.build.BuildProgress` snapshots, and this module turns them into text, so the
rendering is tested without Spark (the snapshots are plain data) and other front ends can draw their own.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .index.build import BuildProgress, BuildSummary

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    """Decimal units, as the build summary's ``MB scanned`` and S3's console: ``12.3 MB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour: the shape of an ETA a person reads at a glance."""
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(p: BuildProgress) -> str:
    """One line for a snapshot: stage, tasks, objects, bytes, throughput and ETA (of the stage)."""
    kept = f" ({p.up_to_date} up to date)" if p.up_to_date else ""
    if p.stage == "done":
        return (f"done in {human_seconds(p.seconds)}: {p.objects} object(s) indexed{kept}, "
                f"{human_bytes(p.bytes_total)}")
    if p.stage == "write":
        return (f"write  {p.objects_done}/{p.objects} indexes saved{kept}  "
                f"{human_bytes(p.bytes_done)} / {human_bytes(p.bytes_total)}  elapsed {human_seconds(p.seconds)}")
    eta = "ETA --" if p.eta is None else f"ETA {human_seconds(p.eta)}"
    rate = f"{human_bytes(p.rate)}/s" if p.bytes_done else "-- B/s"
    return (f"{p.stage}  {p.tasks_done}/{p.tasks} tasks  {p.objects_done}/{p.objects} objects{kept}  "
            f"{human_bytes(p.bytes_done)} / {human_bytes(p.bytes_total)}  {rate}  {eta}  "
            f"elapsed {human_seconds(p.seconds)}")


class ProgressPrinter:
    """A :data:`~pyspark_dataplug.index.build.ProgressCallback` that prints to a stream (stderr by default).

    On a terminal one line is redrawn in place (at most ``redraw`` times a second, and always when a stage
    begins or ends). Elsewhere -- a log file, CI, a pipe -- it prints plain lines: one when a stage begins,
    one every ``every`` seconds while it runs, and one when it ends, so a log shows progress without a
    flood of carriage returns. Snapshots may arrive from Spark's watcher thread; a lock keeps lines whole.
    """

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, every: float = 10.0,
                 redraw: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self.tty = tty
        self.every = every
        self.min_gap = 1.0 / redraw if redraw > 0 else 0.0
        self.clock = clock
        self.lock = threading.Lock()
        self.stage: str | None = None
        self.last_print = float("-inf")
        self.width = 0

    def __call__(self, p: BuildProgress) -> None:
        with self.lock:
            now = self.clock()
            new_stage = p.stage != self.stage
            stage_end = p.tasks > 0 and p.tasks_done == p.tasks
            final = p.stage == "done"
            self.stage = p.stage
            if self.tty:
                if not (new_stage or stage_end or final or now - self.last_print >= self.min_gap):
                    return
                line = describe(p)
                # \r and "erase to end of line": a shorter line leaves nothing of the longer one before it
                self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
            else:
                if not (new_stage or stage_end or final or now - self.last_print >= self.every):
                    return
                self.stream.write(describe(p) + "\n")
            self.stream.flush()
            self.last_print = now


def summary_table(summary: BuildSummary, limit: int = 20) -> str:
    """The objects of a build as a table (up to ``limit`` rows, then a count) and a line of totals.

    Names are shown relative to the folder all objects share, so a prefix of many objects stays readable.
    """
    rows = summary.objects
    if not rows:
        return "no objects"
    prefix = _common_folder([r.uri for r in rows])
    header = ("object", "status", "size", "records", "index", "index/size")
    body = []
    for r in rows[:limit]:
        body.append((r.uri[len(prefix):] or r.uri, r.status, human_bytes(r.size),
                     "" if r.records is None else f"{r.records:,}",
                     "" if r.index_bytes is None else human_bytes(r.index_bytes),
                     "" if r.index_bytes is None or not r.size else f"{r.index_bytes / r.size:.2%}"))
    size = sum(r.size for r in rows)
    records = sum(r.records or 0 for r in rows)
    index = sum(r.index_bytes or 0 for r in rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    total = (f"{len(rows)} object(s)", ", ".join(f"{n} {s}" for s, n in counts.items()), human_bytes(size),
             f"{records:,}", human_bytes(index), f"{index / size:.2%}" if size else "")
    widths = [max(len(row[i]) for row in (header, *body, total)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        return "  ".join(cells).rstrip()

    out = []
    if prefix:
        out.append(f"in {prefix}")
    out += [line(header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in body]
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more object(s)")
    out += ["  ".join("-" * w for w in widths), line(total)]
    return "\n".join(out)


def _common_folder(uris: list[str]) -> str:
    """The longest ``.../`` prefix of every URI (empty for a single object: its full name is shown)."""
    if len(uris) < 2:
        return ""
    prefix = os.path.commonprefix(uris)
    return prefix[: prefix.rfind("/") + 1]
