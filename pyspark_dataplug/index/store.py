"""Where indexes live and how they are written and read back.

Layout of one index (a folder-like prefix)::

    <index dir>/manifest.json            self-describing: versions, format, source size + ETag, counts
    <index dir>/<table>-<build id>.parquet   Arrow tables named in the manifest
    <index dir>/<blob>-<build id>.bin        binary blobs named in the manifest (e.g. gzip windows)

The index dir is ``<object>.dataplug/<format>/`` next to the object, or, with ``indexLocation``,
``<indexLocation>/<bucket>/<key>.dataplug/<format>/`` so read-only public data can be indexed into a bucket
of your own.

Concurrent and crashed builds. There are no locks (nothing can stay locked after a crash); the rules are:

- Every build writes files of its own (tables carry its build id, blobs a unique name written by map tasks)
  and the manifest last, in one atomic PUT (locally, write-then-rename). A reader sees no index, the previous
  complete one, or the new complete one; two builds at once each publish a complete index, the last manifest
  written wins, and the other build's files are left over.
- Readers open only the files the manifest they loaded names: leftovers are never read.
- Generations: a manifest lists in ``superseded`` the files of the manifest it replaced. A save deletes only
  the files its *previous* manifest superseded, i.e. those of two generations back, so a read (or a Spark job
  whose tasks read gzip windows lazily) that loaded the previous manifest survives one rebuild; a read that
  spans two rebuilds fails with :class:`IndexMissingError` naming the gone file, never with wrong rows.
- Leftovers of a dead build (files no manifest names, and the temporary files of an interrupted local write)
  are deleted by the next successful save of that index once they are :data:`LEFTOVER_GRACE_SECONDS` older
  than the manifest it just wrote (both times by the storage's clock: local mtime, S3 ``LastModified``).
  A live build's files are fresh, so a concurrent build never deletes them; a build running longer than the
  grace period must not run at the same time as another build of the same index. Cleanup errors never fail a
  build: the next one tries again.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (
    IndexFormatError,
    IndexMissingError,
    ObjectNotFoundError,
    OptionError,
    StaleIndexError,
    StorageError,
)
from ..storage import (
    INDEX_SUFFIX,
    ObjectInfo,
    StorageOptions,
    get_storage,
    is_s3,
    join_uri,
    normalize_uri,
    split_s3,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: 2: line formats cut chunks at line starts and keep fingerprints; CSV records follow Spark's rules
INDEX_VERSION = 2
MANIFEST = "manifest.json"
#: seconds a file no manifest names must be older than a freshly written manifest before that save deletes it
#: (a day: any build writes all its files and its manifest well within it)
LEFTOVER_GRACE_SECONDS = 24 * 3600.0


@dataclass
class Index:
    """One object's index: the manifest plus its tables (loaded eagerly; they are small by design)."""

    manifest: dict[str, Any]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    location: str | None = None
    #: arrays derived from the tables once per planning (a plan of 100,000 slices must not rebuild them per cut)
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def source(self) -> ObjectInfo:
        s = self.manifest["source"]
        return ObjectInfo(s["uri"], int(s["size"]), s["etag"])

    @property
    def attrs(self) -> dict[str, Any]:
        return self.manifest.setdefault("attrs", {})

    @property
    def records(self) -> int:
        return int(self.manifest["records"])

    def blob_uri(self, name: str) -> str:
        assert self.location is not None
        return join_uri(self.location, self.manifest["blobs"][name])


def index_dir(uri: str, fmt: str, index_location: str | None = None) -> str:
    """The index prefix of one object for one format (see the module docstring).

    Under ``indexLocation`` the object's bucket and key become a path, and an S3 key is any string: ``a/../../x``
    or ``/etc/x`` must not climb out of the location once a local file system (or a tool that normalizes
    paths) reads it, and two objects must never share an index. So ``.`` and ``..`` and empty segments are
    written percent-encoded, and so is ``%`` itself (which keeps the mapping one-to-one); ordinary keys are
    unchanged.
    """
    _check_format_name(fmt)
    uri = normalize_uri(uri)
    if not index_location:
        return join_uri(uri + INDEX_SUFFIX, fmt)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        rel = f"{bucket}/{key}"
    else:
        rel = uri.lstrip("/")
    base = index_location if is_s3(index_location) else normalize_uri(index_location)
    return base.rstrip("/") + "/" + "/".join(_segment(p) for p in (rel + INDEX_SUFFIX).split("/")) + "/" + fmt


_DOT_SEGMENTS = {"": "%", ".": "%2E", "..": "%2E%2E"}
_FORMAT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_format_name(fmt: str) -> None:
    """The format is the last segment of the index dir: anything that a path resolver would read as a path is
    refused (format names come from the registry, but ``index_dir`` is public and cheap to guard)."""
    if not _FORMAT_NAME.fullmatch(fmt) or ".." in fmt:
        raise OptionError(f"{fmt!r} is not a format name (an index dir segment must be a plain name)")



def _segment(part: str) -> str:
    part = part.replace("%", "%25")
    return _DOT_SEGMENTS.get(part, part)


#: a file name an index may name: no folder, no climbing, no scheme (it is joined to the index's location)
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def validate_manifest(manifest: dict[str, Any], fmt: str, where: str) -> None:
    """Check the keys every reader uses before any is used: types, ranges and file names.

    A manifest is read from storage, where anyone who can write the bucket can put anything: a wrong type
    must be a clear error here, not a TypeError deep in a Spark task, and a table or blob named
    ``../../other/object`` must never make a reader fetch (or a rebuild delete) a file outside the index.
    Format-specific ``attrs`` are checked by their formats.
    """
    def bad(key: str, what: str) -> IndexFormatError:
        return IndexFormatError(f"{where}: key {key!r} {what}; the index is damaged or not ours: rebuild it "
                                f"(dataplug index --force --format {fmt} <object>)")

    def whole(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(key, f"must be a whole number >= 0, not {value!r}"[:200])

    if manifest.get("format") != fmt:
        raise bad("format", f"is {manifest.get('format')!r}, this read is of format {fmt!r}")
    source = manifest.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("uri"), str) \
            or not isinstance(source.get("etag"), str):
        raise bad("source", "must hold the indexed object's uri, size and etag")
    whole("source.size", source.get("size"))
    if "records" in manifest:
        whole("records", manifest["records"])
    for key in ("tables", "blobs", "blob_sizes", "index_params", "build_params", "attrs"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(key, f"must be an object, not {type(manifest[key]).__name__}")
    superseded = manifest.get("superseded", [])
    if not isinstance(superseded, list) or not all(isinstance(r, str) and _FILE_NAME.fullmatch(r) for r in superseded):
        raise bad("superseded", "must be a list of plain file names inside the index")
    for key in ("tables", "blobs"):
        for name, rel in manifest.get(key, {}).items():
            if not isinstance(rel, str) or not _FILE_NAME.fullmatch(rel) or ".." in rel:
                raise bad(f"{key}.{name}", f"must be a plain file name inside the index, not {rel!r}"[:300])
    for name, size in manifest.get("blob_sizes", {}).items():
        whole(f"blob_sizes.{name}", size)
    for key in ("uncompressed_size", "index_bytes"):
        if key in manifest:
            whole(key, manifest[key])


class IndexStore:
    """Reads and writes indexes; one per read or build (cheap: it holds only options)."""

    def __init__(self, index_location: str | None = None, storage: StorageOptions | None = None) -> None:
        self.index_location = index_location
        self.storage = storage or StorageOptions()

    def dir(self, uri: str, fmt: str) -> str:
        return index_dir(uri, fmt, self.index_location)

    def _read(self, uri: str) -> bytes:
        return get_storage(uri, self.storage).read_all(uri)

    def load_manifest(self, uri: str, fmt: str) -> dict[str, Any] | None:
        location = self.dir(uri, fmt)
        try:
            raw = self._read(join_uri(location, MANIFEST))
        except ObjectNotFoundError:
            return None
        try:
            manifest = json.loads(raw)
        except ValueError as e:
            raise IndexFormatError(f"{location}/{MANIFEST}: not valid JSON ({e}); rebuild the index") from e
        version = manifest.get("dataplug_index_version") if isinstance(manifest, dict) else None
        if version != INDEX_VERSION:
            raise IndexFormatError(
                f"{location}: index version {version!r}, this release reads version {INDEX_VERSION}; rebuild "
                f"it with: dataplug index --force --format {fmt} {uri}"
            )
        validate_manifest(manifest, fmt, f"{location}/{MANIFEST}")
        return manifest

    def load(self, info: ObjectInfo, fmt: str, index_params: dict[str, Any] | None = None,
             check: bool = True) -> Index | None:
        """The object's index, or None if it has none; raises if it is stale or built differently."""
        manifest = self.load_manifest(info.uri, fmt)
        if manifest is None:
            return None
        location = self.dir(info.uri, fmt)
        if check:
            check_fresh(manifest, info, fmt, self.index_location)
            if index_params is not None and manifest.get("index_params") != index_params:
                raise IndexMissingError(
                    f"{info.uri}: its {fmt} index was built with {manifest.get('index_params')}, this read "
                    f"needs {index_params}; rebuild it with: {index_command(info.uri, fmt, force=True)}"
                )
        return Index(manifest, _Tables(self, location, manifest.get("tables", {})), location)

    def save(self, info: ObjectInfo, fmt: str, index: Index) -> str:
        """Write tables and blobs first, the manifest last, then clean up (module docstring); returns the index dir."""
        import pyarrow.parquet as pq

        location = self.dir(info.uri, fmt)
        st = get_storage(location, self.storage)
        build = uuid.uuid4().hex[:12]
        manifest = dict(index.manifest)
        manifest.update(
            dataplug_index_version=INDEX_VERSION,
            format=fmt,
            source={"uri": info.uri, "size": info.size, "etag": info.etag},
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            build_id=build,
        )
        names: dict[str, str] = {}
        total = 0
        for name, table in index.tables.items():
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            rel = f"{name}-{build}.parquet"
            st.write(join_uri(location, rel), buf.getvalue())
            names[name] = rel
            total += buf.tell()
        manifest["tables"] = names
        manifest["index_bytes"] = total + sum(int(v) for v in manifest.get("blob_sizes", {}).values())
        named = _files(manifest)
        try:  # read as late as possible: a concurrent build may have published since this one began
            previous = self.load_manifest(info.uri, fmt)
        except IndexFormatError:
            previous = None
        # kept one generation: a read that loaded the previous manifest goes on reading its files
        manifest["superseded"] = sorted(_files(previous) - named) if previous else []
        st.write(join_uri(location, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
        try:
            for rel in sorted(_names(previous.get("superseded")) - named if previous else ()):
                st.delete(join_uri(location, rel))
            _sweep(st, location, named | set(manifest["superseded"]))
        except StorageError:
            pass  # the index is published; what is left over is cleaned by the next build (module docstring)
        index.manifest = manifest
        index.location = location
        return location


def _names(value: Any) -> set[str]:
    """File names read from a manifest, only plain names in the index dir: a manifest can never make a build
    delete (or a read open) anything outside its own folder."""
    if not isinstance(value, list | tuple | dict):
        return set()
    items = value.values() if isinstance(value, dict) else value
    return {v for v in items if isinstance(v, str) and v and "/" not in v and "\\" not in v
            and v not in (".", "..", MANIFEST)}


def _files(manifest: dict[str, Any] | None) -> set[str]:
    """Every file a manifest names (its tables and blobs)."""
    if not manifest:
        return set()
    return _names(manifest.get("tables")) | _names(manifest.get("blobs"))


def _sweep(st: Any, location: str, keep: set[str]) -> None:
    """Delete leftovers of dead builds: files not in ``keep`` and older than the manifest by the grace period."""
    times = st.list_folder(location)
    published = times.get(MANIFEST)
    if published is None:
        return
    for rel, modified in times.items():
        if rel != MANIFEST and rel not in keep and published - modified > LEFTOVER_GRACE_SECONDS:
            st.delete(join_uri(location, rel))


class _Tables(dict):  # type: ignore[type-arg]
    """An index's tables, fetched on first use: planning a schema needs only the manifest.

    Spark asks for the schema and for the partitions in two different Python workers, so each reads the
    manifest; only the second needs the tables (a FASTA's records, the points of a line format).
    """

    def __init__(self, store: IndexStore, location: str, names: dict[str, str]) -> None:
        super().__init__()
        self._load = (store, location, dict(names))

    def _fill(self) -> None:
        if self._load is not None:
            import pyarrow.parquet as pq

            store, location, names = self._load
            self._load = None
            for name, rel in names.items():
                super().__setitem__(name, pq.read_table(io.BytesIO(read_index_file(store, location, rel))))

    def __getitem__(self, key: str) -> Any:
        self._fill()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._fill()
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def get(self, key: str, default: Any = None) -> Any:
        self._fill()
        return super().get(key, default)

    def items(self) -> Any:
        self._fill()
        return super().items()

    def keys(self) -> Any:
        self._fill()
        return super().keys()

    def values(self) -> Any:
        self._fill()
        return super().values()


def read_index_file(store: IndexStore, location: str, rel: str) -> bytes:
    """A file the loaded manifest names (see :func:`index_file_gone`)."""
    try:
        return store._read(join_uri(location, rel))
    except ObjectNotFoundError as e:
        raise index_file_gone(join_uri(location, rel)) from e


def index_file_gone(uri: str) -> IndexMissingError:
    """The error for an index file that a loaded manifest names and that is gone: by the generation rule
    (module docstring), the index was rebuilt at least twice while the read ran."""
    return IndexMissingError(
        f"{uri}, named by the index manifest this read loaded, is gone: the index was rebuilt at least twice "
        f"while the read ran; run the read again"
    )


def store_blob(location: str, name: str, data: bytes, storage: StorageOptions) -> str:
    """Store a binary blob before its manifest exists (from a map task); returns the name to record.

    The name is unique per build, so a concurrent or crashed build never overwrites a blob that a
    published manifest names.
    """
    rel = f"{name}-{uuid.uuid4().hex[:12]}.bin"
    get_storage(location, storage).write(join_uri(location, rel), data)
    return rel


def same_object(manifest: Mapping[str, Any], info: ObjectInfo) -> bool:
    """Whether the manifest was built for this object (compared normalised: ``s3a://`` is ``s3://``).

    Size and ETag alone do not say so: local files extracted from one archive share size and mtime (our local
    ETag), and a copied S3 object keeps its ETag; an index copied or moved next to another object, or two
    objects that share an index dir, must not give one object's index to the other.
    """
    src = manifest.get("source") or {}
    uri = src.get("uri")
    return isinstance(uri, str) and normalize_uri(uri) == normalize_uri(info.uri)


def check_fresh(manifest: dict[str, Any], info: ObjectInfo, fmt: str, index_location: str | None) -> None:
    src = manifest.get("source", {})
    if not same_object(manifest, info):
        raise IndexFormatError(
            f"{info.uri}: its {fmt} index at {index_dir(info.uri, fmt, index_location)} was built for another "
            f"object ({src.get('uri')!r}); rebuild it with: "
            f"{index_command(info.uri, fmt, force=True, index_location=index_location)}"
        )
    if int(src.get("size", -1)) != info.size or src.get("etag") != info.etag:
        raise StaleIndexError(
            f"{info.uri}: the object changed since its {fmt} index was built (indexed size {src.get('size')}, "
            f"ETag {src.get('etag')!r}; now size {info.size}, ETag {info.etag!r}). Rebuild it with: "
            f"{index_command(info.uri, fmt, force=True, index_location=index_location)}"
        )


def index_command(uri: str, fmt: str, force: bool = False, index_location: str | None = None) -> str:
    """The CLI line that builds the missing or stale index: error messages print it."""
    parts = ["dataplug index", f"--format {fmt}"]
    if force:
        parts.append("--force")
    if index_location:
        parts.append(f"--index-location {index_location}")
    parts.append(uri)
    return " ".join(parts)
