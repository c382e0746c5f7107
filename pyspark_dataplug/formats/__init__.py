"""Lazy registry of formats: name -> ``"module:Class"``.

Nothing is imported until a format is asked for, so a missing optional library (laspy, tifffile, ...)
only fails the read that needs it, with an install hint, never ``import pyspark_dataplug`` (which Spark's
data source discovery imports in every session).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import OptionError

if TYPE_CHECKING:
    from ._base import Format

#: name -> (import path, pip extra that provides its dependencies, or None)
REGISTRY: dict[str, tuple[str, str | None]] = {
    "text": ("pyspark_dataplug.formats.text:Text", None),
    "csv": ("pyspark_dataplug.formats.csv:CSV", None),
    "fastq": ("pyspark_dataplug.formats.fastq:FASTQ", None),
    "fasta": ("pyspark_dataplug.formats.fasta:FASTA", None),
    "vcf": ("pyspark_dataplug.formats.vcf:VCF", None),
    "cog": ("pyspark_dataplug.formats.cog:COG", "cog"),
    "las": ("pyspark_dataplug.formats.las:LAS", "las"),
    "laz": ("pyspark_dataplug.formats.las:LAZ", "las"),
    "copc": ("pyspark_dataplug.formats.copc:COPC", "las"),
    "ms": ("pyspark_dataplug.formats.ms:MeasurementSet", "ms"),
    "imzml": ("pyspark_dataplug.formats.imzml:ImzML", "imzml"),
}

#: File-name endings that name a format (compression suffixes are stripped first); the longest match wins
#: (``x.copc.laz`` is COPC, not just LAZ).
EXTENSIONS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".log": "text",
    ".csv": "csv", ".tsv": "csv",
    ".fastq": "fastq", ".fq": "fastq",
    ".fasta": "fasta", ".fa": "fasta", ".fna": "fasta", ".fas": "fasta",
    ".vcf": "vcf",
    ".tif": "cog", ".tiff": "cog",
    ".las": "las", ".laz": "laz", ".copc.laz": "copc",
    ".ms": "ms",
    ".imzml": "imzml",
}
COMPRESSION_SUFFIXES = (".gz", ".bgz", ".bgzf", ".gzip")


def format_class(name: str) -> type[Format]:
    """The class registered under ``name`` (case-insensitive), imported on first use."""
    key = name.lower()
    if key not in REGISTRY:
        raise OptionError(f"unknown format {name!r}; valid formats: {', '.join(sorted(REGISTRY))}")
    target, extra = REGISTRY[key]
    module, _, cls = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if not extra or not e.name or e.name.startswith("pyspark_dataplug"):
            raise  # a broken install of this package, not a missing extra
        from ._base import missing_dependency

        raise missing_dependency(e.name, extra, f"format {key!r}") from e
    return getattr(mod, cls)


def get_format(name: str, params: Mapping[str, Any] | None = None) -> Format:
    return format_class(name)(dict(params or {}))


def _split_name(path: str) -> tuple[str | None, str]:
    """The format a name implies (or None) and the ending that implies it, compression included."""
    low = path.lower().rstrip("/")
    compression = ""
    for suffix in COMPRESSION_SUFFIXES:
        if low.endswith(suffix):
            low, compression = low[: -len(suffix)], suffix
            break
    for ext, fmt in sorted(EXTENSIONS.items(), key=lambda kv: -len(kv[0])):
        if low.endswith(ext):
            return fmt, ext + compression
    return None, ""


def name_format(path: str) -> str | None:
    """The format an object's name implies, or None: the one guess that costs no I/O."""
    return _split_name(path)[0]


def format_suffix(path: str) -> str:
    """The ending that names the format (``".fastq.gz"``), or ``""``: messages build globs from it."""
    return _split_name(path)[1]


def guess_format(path: str) -> str:
    """Format from the file name; the error lists the formats to pass with ``format``."""
    fmt = name_format(path)
    if fmt is None:
        raise OptionError(
            f"cannot guess the format of {path!r} from its name; set option 'format' (dataplug --format) to one "
            f"of: {', '.join(sorted(REGISTRY))}"
        )
    return fmt
