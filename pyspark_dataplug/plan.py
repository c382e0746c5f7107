"""From paths and options to a read plan: objects, their indexes, the schema, and partitions of slices.

This is the one place where a read is planned, for the Spark reader and the engine-agnostic API alike.
It reads object listings, HEADs and indexes only -- never data (except the first bytes of an object read
without an index, to name CSV columns).

A dataset of several objects is cut as one sequence: global cut points at equal units (records or
bytes), so one partition may hold the tail of one object and the head of the next, and a thousand small
files do not become a thousand tiny tasks.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import IndexMissingError, ObjectNotFoundError, OptionError
from .formats import REGISTRY, format_class, format_suffix, get_format, guess_format, name_format
from .formats._base import check_installed
from .index.store import Index, IndexStore, index_command
from .options import COMMON_OPTIONS, parse_options, paths_from_options
from .storage import (
    _GLOB_CHARS,
    INDEX_SUFFIX,
    ObjectInfo,
    StorageOptions,
    expand,
    expand_folders,
    get_storage,
    normalize_uri,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from .formats._base import Format
    from .slices import Slice

log = logging.getLogger("pyspark_dataplug")

#: partitions planned from the core count are never smaller than this (Spark's openCostInBytes)
MIN_SPLIT_BYTES = 4 << 20
#: bytes read from an object without an index to find its first record (CSV column names)
HEAD_BYTES = 1 << 20


@dataclass
class Dataset:
    """A resolved dataset: what :func:`open_dataset` found, ready to plan."""

    format_name: str
    options: dict[str, Any]
    objects: list[ObjectInfo]
    indexes: list[Index | None]
    fmt: Format
    storage: StorageOptions
    store: IndexStore
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> pa.Schema:
        return self.fmt.output_schema()

    def units(self, strategy: str | None = None) -> int:
        """What ``strategy`` (default: the read's, else the format's first) divides in the indexed objects."""
        strategy = check_strategy(self.fmt, strategy or self.options.get("strategy"))
        return sum(self.fmt.units(i, strategy) for i in self.indexes if i is not None)

    def plan(self, partitions: int | None = None, strategy: str | None = None,
             partition_bytes: int | None = None) -> list[list[Slice]]:
        return plan_partitions(
            self.fmt, self.objects, self.indexes, self.storage,
            strategy=strategy or self.options.get("strategy"),
            partitions=partitions if partitions is not None else self.options.get("partitions"),
            partition_bytes=partition_bytes or self.options.get("partitionBytes"),
            min_partitions=self.options.get("minPartitions"),
        )


def storage_options(options: Mapping[str, Any]) -> StorageOptions:
    return StorageOptions(
        endpoint_url=options.get("endpointUrl") or None,
        region=options.get("awsRegion") or None,
        anonymous=bool(options.get("anonymous")),
        part_size=int(options.get("partSize") or 8 << 20),
        parts_in_flight=int(options.get("partsInFlight") or 4),
        max_attempts=int(options.get("maxAttempts") or 8),
        read_timeout=int(options.get("readTimeout") or 60),
    )


def parse_read_options(raw: Mapping[str, Any], defaults: Mapping[str, Any] | None = None,
                       paths: list[str] | None = None) -> tuple[str, dict[str, Any], list[str]]:
    """Validate options against the common ones and the format's; returns (format, options, paths)."""
    lowered = {str(k).lower(): v for k, v in raw.items() if v is not None}
    defaults = {str(k).lower(): v for k, v in (defaults or {}).items()}
    if paths is None:
        paths = paths_from_options(lowered)
    name = lowered.get("format") or defaults.get("format")
    if name:
        name = str(name).lower()
    else:
        # only the storage options are needed to list a folder, and the format's own are unknown yet
        storage_keys = {o.name.lower() for o in COMMON_OPTIONS if o.name in ("endpointUrl", "awsRegion", "anonymous")}
        common = parse_options({k: v for k, v in lowered.items() if k in storage_keys}, (), defaults)
        name = guess_dataset_format(paths, storage_options(common))
    cls = format_class(name)
    if not any(o.name == "region" for o in cls.options):  # 'region' was the S3 region's name before VCF came
        for given in (lowered, defaults):
            if "region" in given:
                given.setdefault("awsregion", given.pop("region"))
    options = parse_options(lowered, cls.options, defaults, fmt=name)
    options["format"] = name
    if name == "csv" and not ({"sep", "delimiter"} & (lowered.keys() | defaults.keys())) \
            and all(format_suffix(p).startswith(".tsv") for p in paths):
        options["sep"] = "\t"  # a .tsv is tab-separated unless told otherwise
    return name, options, paths


def _show(path: str) -> str:
    """A path as given, plus where it resolved to when that differs (a relative local path)."""
    full = normalize_uri(path)
    return path if full.rstrip("/") == path.rstrip("/") else f"{path} ({full})"


def _names(uris: list[str], limit: int = 5) -> str:
    """Object names for a message: the last part of each, a few of them."""
    shown = ", ".join(u.rstrip("/").rsplit("/", 1)[-1] for u in uris[:limit])
    return shown + (f" (and {len(uris) - limit} more)" if len(uris) > limit else "")


def _globs(paths: list[str], uris: list[str]) -> list[str]:
    """Globs that name just ``uris`` inside the folders among ``paths`` (by the ending that names the
    format), to suggest to a user whose folder also holds other things; empty when no folder fits."""
    out: set[str] = set()
    for p in paths:
        if any(c in p for c in _GLOB_CHARS):
            continue
        folder = normalize_uri(p).rstrip("/") + "/"
        for u in uris:
            suffix = format_suffix(u)
            if u.startswith(folder) and suffix:
                out.add(p.rstrip("/") + "/*" + suffix)
    return sorted(out)


def expand_objects(paths: list[str], storage: StorageOptions, cls: type[Format] | None = None) -> list[ObjectInfo]:
    """:func:`expand`, failing when nothing is left, with a message that says what is never read.

    An empty folder is usually a wrong path, or a folder holding only Spark's ``_SUCCESS`` or our own
    index folders: "no objects" alone does not say which. A format whose objects are folders (``cls``
    with a ``folder_marker``) expands to those folders instead.
    """
    if cls is not None and cls.folder_marker:
        return expand_folders(paths, cls.folder_marker, cls.folder_volatile, storage)
    objects = expand(paths, storage)
    if not objects:
        where = ", ".join(_show(p) for p in paths)
        raise ObjectNotFoundError(
            f"no objects to read in {where}: it holds no files, or only names that are never read as data (names "
            f"starting with '_' or '.', such as _SUCCESS, and '*{INDEX_SUFFIX}' index folders)"
        )
    return objects


def guess_dataset_format(paths: list[str], storage: StorageOptions) -> str:
    """The one format that every path implies: by its name, else by the names of the objects it holds.

    A folder is named after a run or a date, not a format, so its objects decide; they must all agree, or
    the error lists what was found and asks for ``format``.
    """
    found: dict[str, list[str]] = {}
    unknown: list[str] = []
    for p in paths:
        fmt = name_format(p)
        if fmt is not None:
            found.setdefault(fmt, []).append(p)
            continue
        objects = expand_objects([p], storage)
        if len(paths) == 1 and len(objects) == 1 and objects[0].uri == normalize_uri(p):
            return guess_format(p)  # one object with an unknown name: the plain message says it all
        for o in objects:
            fmt = name_format(o.uri)
            if fmt is None:
                unknown.append(o.uri)
            else:
                found.setdefault(fmt, []).append(o.uri)
    if len(found) == 1 and not unknown:
        return next(iter(found))
    what = [f"{fmt} by name: {_names(uris)}" for fmt, uris in sorted(found.items())]
    if unknown:
        what.append(f"no known extension: {_names(unknown)}")
    hint = ""
    globs = [g for fmt in sorted(found) for g in _globs(paths, found[fmt])]
    if globs:
        hint = f", and name only the objects of that format, e.g. {globs[0]}"
    raise OptionError(
        f"cannot guess one format for {', '.join(paths)}: it holds {'; '.join(what)}. Set option 'format' "
        f"(dataplug --format) to one of: {', '.join(sorted(REGISTRY))}{hint}"
    )


def _missing_index_error(name: str, objects: list[ObjectInfo], missing: list[str], paths: list[str],
                         index_location: str | None) -> IndexMissingError:
    """The error for objects without an index, with the command that builds them -- unless their names say
    they are not ``name`` at all (a README.md in a folder of CSV files): then indexing them blindly would
    be bad advice, so the message lists them and suggests naming only the objects that fit."""
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    target = missing[0] if len(missing) == 1 else " ".join(paths)
    command = index_command(target, name, index_location=index_location)
    misfits = [u for u in missing if name_format(u) != name]
    if not misfits:
        return IndexMissingError(
            f"no {name} index for {missing[0]}{more}. Build it once with: {command}"
            f"  (or pyspark_dataplug.build_index(spark, paths, format={name!r})), or read without an index "
            "(one task per object) with option missingIndex=scan"
        )
    fitting = [o.uri for o in objects if name_format(o.uri) == name]
    message = (f"no {name} index for {missing[0]}{more}; {_names(misfits)} "
               f"{'is' if len(misfits) == 1 else 'are'} not named like {name}. ")
    globs = _globs(paths, fitting)
    if globs:
        quoted = " ".join(f"'{g}'" for g in globs)
        message += (f"To read only the {name} ones, name them: "
                    f"{index_command(quoted, name, index_location=index_location)} (and read the same paths); ")
    elif fitting:
        message += f"To read only the {name} ones, name them (by name: {_names(fitting)}); "
    else:
        by_name = sorted({name_format(u) or "unknown" for u in misfits})
        message += f"None of them is named like {name} (by name: {', '.join(by_name)}): check the format; "
    return IndexMissingError(message + f"if they really are {name}, build their indexes with: {command}")


def format_params(cls: type[Format], options: Mapping[str, Any]) -> dict[str, Any]:
    names = {o.name for o in cls.options}
    return {k: v for k, v in options.items() if k in names}


def open_dataset(raw_options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None,
                 paths: list[str] | None = None, first_only: bool = False,
                 pushed: Mapping[str, Any] | None = None) -> Dataset:
    """Expand paths, load (and check) indexes, resolve the schema. ``first_only``: just enough for schema.

    ``pushed``: format params derived from the filters Spark pushed (:meth:`Format.push_filters`).
    """
    name, options, paths = parse_read_options(raw_options, defaults, paths)
    storage = storage_options(options)
    cls = format_class(name)
    every = expand_objects(paths, storage, cls)
    objects = every[:1] if first_only else every
    fmt = cls(format_params(cls, options))
    store = IndexStore(options.get("indexLocation"), storage)
    index_params = fmt.index_params()
    indexes = _load_indexes(objects, lambda info: store.load(info, name, index_params)
                            or fmt.sidecar_index(info, storage))
    missing = [o.uri for o, i in zip(objects, indexes, strict=True) if i is None]
    if missing:
        if options.get("missingIndex") != "scan":
            raise _missing_index_error(name, every, missing, paths, options.get("indexLocation"))
        log.warning("dataplug: reading %d object(s) without an index, one task each (missingIndex=scan): %s",
                    len(missing), ", ".join(missing[:5]))
    first_index = indexes[0]
    head = None
    if first_index is None and not cls.folder_marker:
        info = objects[0]
        head = get_storage(info.uri, storage).read(info.uri, 0, min(info.size, HEAD_BYTES))
    params = {**fmt.params, **fmt.resolve(first_index, head), **(pushed or {})}
    if options.get("columns"):
        params["select"] = select_columns(get_format(name, params).arrow_schema(), options["columns"])
    fmt = get_format(name, params)
    check_installed(fmt, "read")  # here, not in a task on an executor: one line instead of a failed job
    return Dataset(name, options, objects, indexes, fmt, storage, store, params)


#: index loads in flight while planning: each is one or two small GETs, so latency, not bandwidth, bounds them
LOAD_THREADS = 32


def _load_indexes(objects: list[ObjectInfo], load: Callable[[ObjectInfo], Index | None]) -> list[Index | None]:
    """Every object's index, manifest and tables, fetched by a few dozen threads at once.

    Planning needs all of them; one after the other, 10,000 objects on S3 would wait 20,000 round trips.
    """
    if len(objects) <= 1:
        out = [load(o) for o in objects]
    else:
        from concurrent.futures import ThreadPoolExecutor

        def load_all(info: ObjectInfo) -> Index | None:
            index = load(info)
            if index is not None:
                len(index.tables)  # fetch the (lazily loaded) tables here, in parallel
            return index

        with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, len(objects)), thread_name_prefix="dataplug-index") as p:
            out = list(p.map(load_all, objects))
    return out


def select_columns(schema: pa.Schema, spec: str) -> list[str]:
    """``columns`` -> the schema's names, in the order given (matched case-insensitively, as Spark does)."""
    by_lower = {n.lower(): n for n in schema.names}
    names = [c.strip() for c in str(spec).split(",") if c.strip()]
    unknown = [c for c in names if c.lower() not in by_lower]
    if unknown or not names:
        raise OptionError(f"option columns={spec!r}: no column {', '.join(map(repr, unknown)) or 'named'}; "
                          f"valid columns: {', '.join(schema.names)}")
    picked = [by_lower[c.lower()] for c in names]
    if len(set(picked)) != len(picked):
        raise OptionError(f"option columns={spec!r} names a column twice")
    return picked


def check_strategy(fmt: Format, strategy: str | None) -> str:
    """``strategy``, or the format's default (its first) when None; an unknown one fails with the valid ones."""
    strategy = strategy or next(iter(fmt.strategies))
    if strategy not in fmt.strategies:
        raise OptionError(f"unknown strategy {strategy!r} for format {fmt.name!r}; valid: {', '.join(fmt.strategies)}")
    return strategy


def plan_partitions(
    fmt: Format,
    objects: list[ObjectInfo],
    indexes: list[Index | None],
    storage: StorageOptions,
    strategy: str | None = None,
    partitions: int | None = None,
    partition_bytes: int | None = None,
    min_partitions: int | None = None,
) -> list[list[Slice]]:
    """Cut a dataset into partitions, each a list of slices; reads nothing (indexes are already loaded)."""
    strategy = check_strategy(fmt, strategy)
    indexed = [(o, i) for o, i in zip(objects, indexes, strict=True) if i is not None]
    scanned = [o for o, i in zip(objects, indexes, strict=True) if i is None]
    out: list[list[Slice]] = [[fmt.scan_slice(o, storage)] for o in scanned]

    units = [fmt.units(i, strategy) for _, i in indexed]
    total_units = sum(units)
    if total_units == 0:
        return out
    if partitions is None:
        # Spark's own rule for files: slices of partitionBytes, an object counting at least its open cost of
        # 4 MiB (so 2,000 small objects are ~63 tasks, not one task opening 2,000 objects one by one), but
        # spread over the cores when that gives fewer partitions than cores -- unless the slices would be tiny
        weights = [fmt.weight(i) for _, i in indexed]
        weight = sum(weights)
        pb = partition_bytes or (128 << 20)
        # objects of a partition or more are cut into partitionBytes; smaller ones share partitions, each
        # counted with the open cost (Spark's bin packing of small files)
        big = sum(math.ceil(w / pb) for w in weights if w >= pb)
        small = sum(w + MIN_SPLIT_BYTES for w in weights if w < pb)
        parallelism = min_partitions or os.cpu_count() or 1
        partitions = max(1, big + math.ceil(small / pb), min(parallelism, weight // MIN_SPLIT_BYTES))
    n = max(1, min(int(partitions), total_units))
    cuts = [total_units * k // n for k in range(n + 1)]

    parts: list[list[Slice]] = [[] for _ in range(n)]
    base = 0
    for (_, index), u in zip(indexed, units, strict=True):
        if u == 0:
            continue
        # this object's local cut points, and which partition each local piece belongs to
        inner = [(k, c - base) for k, c in enumerate(cuts) if base < c < base + u]
        first_k = max(k for k, c in enumerate(cuts) if c <= base)
        local = [0] + [c for _, c in inner] + [u]
        owners = [first_k] + [k for k, _ in inner]
        for owner, s in zip(owners, fmt.slices(index, strategy, local, storage), strict=True):
            if isinstance(s, list):  # disjoint parts of the object (points pruned between them)
                parts[min(owner, n - 1)].extend(s)
            elif s is not None:
                parts[min(owner, n - 1)].append(s)
        base += u
    out.extend(p for p in parts if p)
    return out
