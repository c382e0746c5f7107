"""Reader options: declared once, parsed case-insensitively, validated with messages that list what is valid.

Spark hands a Python data source its options as a case-insensitive dict of strings. Defaults come, in
order, from the option itself, from ``spark.dataplug.<option>`` confs captured by :func:`register`, then
from ``DATAPLUG_<OPTION>`` environment variables (``indexLocation`` -> ``DATAPLUG_INDEX_LOCATION``), which
is what reaches Spark's Python workers when the source is auto-discovered.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import OptionError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"128m"``, ``"4 MiB"``, ``"1g"``, ``"65536"`` -> bytes (binary units, as Spark's byte confs)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 65536, 4m, 128MiB, 1g)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    """Bytes as the shortest size :func:`parse_size` reads back (``"32k"``, ``"1g"``), for messages."""
    for unit in ("t", "g", "m", "k"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


def parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


@dataclass(frozen=True)
class Opt:
    """One option: its canonical camelCase name, kind, default and, for choices, the valid values.

    ``bounds`` (inclusive, for int and size options) turn values a library would choke on later -- deep in a
    Spark task -- into an immediate error that states the range. ``build`` marks options that shape an index
    but never change the rows it gives (spacings): a build that names another value rebuilds, a read accepts
    an index built with any value.
    """

    name: str
    kind: str  # str | int | size | bool | char | choice
    default: Any = None
    choices: tuple[str, ...] = ()
    doc: str = ""
    bounds: tuple[int, int] | None = None
    build: bool = False

    @property
    def env_var(self) -> str:
        return "DATAPLUG_" + re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).upper()

    def parse(self, raw: Any) -> Any:
        if raw is None:
            return None
        try:
            if self.kind == "int":
                return self._in_range(int(str(raw).strip()), str, "must be a positive whole number")
            if self.kind == "size":
                return self._in_range(parse_size(raw), format_size, "must be positive")
            if self.kind == "bool":
                return parse_bool(raw)
            if self.kind == "char":
                s = str(raw)
                s = {"\\t": "\t", "tab": "\t"}.get(s, s)
                if len(s) > 1:
                    raise ValueError("must be a single character")
                return s or None
            if self.kind == "choice":
                low = str(raw).strip().lower()
                for c in self.choices:
                    if c.lower() == low:
                        return c
                raise ValueError(f"valid values: {', '.join(self.choices)}")
            return str(raw)
        except ValueError as e:
            raise OptionError(f"bad value {raw!r} for option {self.name!r}: {e}") from e

    def _in_range(self, value: int, show: Callable[[int], str], positive: str) -> int:
        if self.bounds is None:
            if value < 1:
                raise ValueError(positive)
        elif not self.bounds[0] <= value <= self.bounds[1]:
            lo, hi = self.bounds
            why = f" ({self.doc})" if self.doc else ""
            raise ValueError(f"must be from {show(lo)} to {show(hi)}{why}")
        return value


COMMON_OPTIONS: tuple[Opt, ...] = (
    Opt("format", "str", None, doc="data format; guessed from the file names (a folder's objects' names) when absent"),
    Opt("partitions", "int", None, doc="number of partitions (slices) for the whole dataset"),
    Opt("partitionBytes", "size", 128 << 20, doc="uncompressed bytes per partition when 'partitions' is unset"),
    Opt("minPartitions", "int", None,
        doc="with partitionBytes: at least this many partitions (Spark's parallelism; default: the CPU count "
            "of the planning machine), unless slices would fall under 4 MiB"),
    Opt("strategy", "str", None, doc="partitioning strategy; each format has a default"),
    Opt("columns", "str", None,
        doc="comma-separated columns to decode and return, in that order (Spark gives Python sources no column "
            "pruning, and moving unused columns into the JVM costs as much as decoding them)"),
    Opt("indexLocation", "str", None, doc="where indexes live; default: a sidecar '<object>.dataplug/'"),
    Opt("missingIndex", "choice", "error", ("error", "scan"),
        doc="without an index: fail (default) or read each object as one task"),
    Opt("endpointUrl", "str", None, doc="S3-compatible endpoint URL"),
    Opt("awsRegion", "str", None,
        doc="S3 region (also accepted as 'region' by formats that give 'region' no meaning of their own: VCF's is "
            "a genomic region)"),
    Opt("anonymous", "bool", False, doc="unsigned S3 requests (public buckets)"),
    Opt("partSize", "size", 8 << 20, bounds=(1, 1 << 30),
        doc="bytes per ranged GET when a task streams its slice (tiny sizes only make sense for tests)"),
    Opt("partsInFlight", "int", 4, bounds=(1, 64),
        doc="ranged GETs a task keeps in flight while it decodes (1: one at a time)"),
    Opt("maxAttempts", "int", 8, bounds=(1, 50),
        doc="attempts per S3 request on transient errors (503 SlowDown, 5xx, resets, short bodies, timeouts), "
            "with exponential backoff; a ranged GET resumes where it broke"),
    Opt("readTimeout", "int", 60, bounds=(1, 3600),
        doc="seconds an S3 response may stay silent before the attempt counts as failed (and is retried)"),
    Opt("path", "str", None),
    Opt("paths", "str", None),
)


def parse_options(
    raw: Mapping[str, Any],
    format_options: Iterable[Opt] = (),
    defaults: Mapping[str, Any] | None = None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """Validate and type every option; unknown names fail with the list of valid ones."""
    specs = {o.name.lower(): o for o in (*COMMON_OPTIONS, *format_options)}
    defaults = {k.lower(): v for k, v in (defaults or {}).items()}
    out: dict[str, Any] = {}
    given = {str(k).lower(): v for k, v in raw.items() if v is not None}
    unknown = sorted(k for k in given if k not in specs)
    if unknown:
        valid = ", ".join(sorted(o.name for o in specs.values() if o.name not in ("path", "paths")))
        what = f" for format {fmt!r}" if fmt else ""
        raise OptionError(f"unknown option(s) {', '.join(unknown)}{what}; valid options: {valid}")
    for key, spec in specs.items():
        if key in given:
            out[spec.name] = spec.parse(given[key])
        elif key in defaults:
            out[spec.name] = spec.parse(defaults[key])
        elif spec.env_var in os.environ:
            out[spec.name] = spec.parse(os.environ[spec.env_var])
        else:
            out[spec.name] = spec.default
    return out


def paths_from_options(options: Mapping[str, Any]) -> list[str]:
    """``load(p)`` arrives as ``path``; ``load([a, b])`` as ``paths`` holding a JSON list."""
    paths: list[str] = []
    if options.get("paths"):
        value = options["paths"]
        paths.extend(json.loads(value) if isinstance(value, str) else list(value))
    if options.get("path"):
        paths.insert(0, options["path"])
    if not paths:
        raise OptionError("no path given: use .load('s3://bucket/key') or option('path', ...)")
    return paths
