"""Ranged reads of objects by URI: local paths, ``file://`` and ``s3://`` (boto3).

Everything above this module sees only :class:`Storage`: ``info``, ``read`` (a byte range), ``read_all``,
``write``, ``delete`` and ``list``. Retries live in one place (:func:`_retrying`), so every S3 call -- HEAD, ranged
GET, LIST, PUT -- gets the same backoff, and a ranged GET that breaks mid-body resumes at the byte where
it broke instead of starting over. Every ranged GET response, resumed ones too, is checked to be the bytes and
the version asked for (206, Content-Range, ETag) before a byte of it is used.

Clients are never pickled: a :class:`StorageOptions` (endpoint, region, anonymous; no credentials) travels
with slices, and each process builds its own client from it, with the standard credential chain.
"""

from __future__ import annotations

import glob as _glob
import os
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlparse

from .errors import DataplugError, ObjectNotFoundError, StaleIndexError, StorageError

T = TypeVar("T")

#: Names that are never data: Spark's own convention (``_SUCCESS``, ``.crc``) plus our index sidecars.
INDEX_SUFFIX = ".dataplug"
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage. Picklable and free of credentials by design.

    Attributes
    ----------
    endpoint_url : str or None
        S3-compatible endpoint (MinIO, moto, Ceph); None means AWS (or ``AWS_ENDPOINT_URL``).
    region : str or None
        AWS region; None lets boto3 resolve it.
    anonymous : bool
        Unsigned requests, for public buckets.
    max_attempts : int
        Attempts per request for transient errors (5xx, throttling, broken connections).
    read_timeout : float
        Seconds a response may stay silent before the attempt fails (and counts as transient).
    part_size, parts_in_flight : int
        A streamed range is read as ranged GETs of ``part_size`` bytes, ``parts_in_flight`` at once (S3's
        guidance: 8-16 MiB byte ranges over several connections).
    """

    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool = False
    max_attempts: int = 8
    read_timeout: float = 60.0
    part_size: int = 8 << 20
    parts_in_flight: int = 4


@dataclass(frozen=True)
class ObjectInfo:
    """What identifies one version of an object: an index built for another version is stale."""

    uri: str
    size: int
    etag: str


class IOStats:
    """Per-process counters of what was read, keyed by URI: tests and benchmarks assert on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.bytes_read: dict[str, int] = defaultdict(int)
            self.read_calls: dict[str, int] = defaultdict(int)

    def add(self, uri: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_read[uri] += nbytes
            self.read_calls[uri] += 1


IO_STATS = IOStats()


class Storage(Protocol):
    """The few operations formats, indexes and the Spark reader need from any backend."""

    def info(self, uri: str) -> ObjectInfo: ...

    def read(self, uri: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Bytes ``[start, end)``; ``etag`` set means: fail with StaleIndexError if the object changed."""
        ...

    def read_all(self, uri: str) -> bytes:
        """A whole (small) object in one request: manifests and index tables."""
        ...

    def write(self, uri: str, data: bytes) -> None: ...

    def delete(self, uri: str) -> None: ...

    def list(self, pattern: str) -> list[ObjectInfo]: ...

    def list_tree(self, prefix: str) -> list[ObjectInfo]:
        """Every file below a folder, at any depth (none: an empty list), index folders excepted."""
        ...

    def list_folder(self, prefix: str) -> dict[str, float]:
        """The files directly in a folder, by name, with their last-modified times (seconds since the epoch).

        Every name is listed, index folders and hidden files too: index cleanup uses it on an index folder.
        Times come from the storage's clock, so callers compare them with each other, not with this host's.
        """
        ...


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://", "s3n://"))


def normalize_uri(uri: str) -> str:
    """One spelling per object: ``file://`` and relative paths become absolute local paths."""
    if is_s3(uri):
        return "s3://" + uri.split("://", 1)[1]
    if uri.startswith("file://"):
        uri = unquote(urlparse(uri).path)
    return os.path.abspath(os.path.expanduser(uri))


def join_uri(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


def get_storage(uri: str, options: StorageOptions | None = None) -> Storage:
    """The backend for a URI; S3 backends share one client per process and options."""
    if is_s3(uri):
        return S3Storage(options or StorageOptions())
    return LocalStorage()


#: files the field keeps next to its data files (samtools, bgzip and tabix indexes; an imzML's binary
#: ``.ibd``, read through its ``.imzML``): never objects of their own
SIDECAR_SUFFIXES = (".fai", ".gzi", ".tbi", ".csi", ".ibd")


def _skip_name(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return (base.startswith(("_", ".")) or INDEX_SUFFIX + "/" in name + "/" or base.endswith(INDEX_SUFFIX)
            or base.lower().endswith(SIDECAR_SUFFIXES))


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob over ``/``-separated keys the way :func:`glob.glob` reads it over local paths.

    S3 has no folders, so matching whole keys with ``fnmatch`` lets ``*`` run across ``/``: ``run1/*.txt``
    would pick up ``run1/sub/c.txt``, which neither a local glob nor Hadoop's does. Translating one component
    at a time keeps ``*``, ``?`` and ``[...]`` inside it; and, as glob.glob does, a wildcard component skips
    names starting with ``.`` unless it starts with ``.`` itself, so both backends list the same objects.
    Use with ``fullmatch``.
    """
    return re.compile("/".join(_glob_component(c) for c in pattern.split("/")))


def _glob_component(comp: str) -> str:
    out: list[str] = []
    i, n = 0, len(comp)
    while i < n:
        c = comp[i]
        i += 1
        if c == "*":
            if not out or out[-1] != "[^/]*":  # runs of * are one *: no needless backtracking
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            # Where the class ends, exactly as fnmatch decides: a leading ']' (after an optional '!') is literal.
            j = i
            if j < n and comp[j] == "!":
                j += 1
            if j < n and comp[j] == "]":
                j += 1
            while j < n and comp[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))  # unclosed: a literal '['
            else:
                out.append(_glob_class(comp[i:j]))
                i = j + 1
        else:
            out.append(re.escape(c))
    regex = "".join(out)
    if any(ch in comp for ch in _GLOB_CHARS) and not comp.startswith("."):
        regex = r"(?!\.)" + regex
    return regex


def _glob_class(body: str) -> str:
    # fnmatch's rules: '!' negates, a '-' between two characters is a range (an empty range matches nothing),
    # anything else -- '^', '\\', '&&' -- is literal. A negated class must still not match '/'.
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    items: list[str] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            k += 3
            if lo <= hi:
                items.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            items.append(re.escape(body[k]))
            k += 1
    if not items:
        return "[^/]" if negate else "(?!)"
    return f"[^{''.join(items)}/]" if negate else f"[{''.join(items)}]"


# ----------------------------------------------------------------------------------------------- local


class LocalStorage:
    """Local files; the embedded default, so the quick start needs no server."""

    def info(self, uri: str) -> ObjectInfo:
        path = normalize_uri(uri)
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"{path}: no such file") from e
        except PermissionError as e:
            raise StorageError(f"{path}: permission denied") from e
        if not os.path.isfile(path):
            raise ObjectNotFoundError(f"{path}: not a regular file")
        return ObjectInfo(path, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def read(self, uri: str, start: int, end: int, etag: str | None = None) -> bytes:
        path = normalize_uri(uri)
        if etag is not None and self.info(path).etag != etag:
            raise StaleIndexError(f"{path}: the file changed since it was indexed; rebuild its index")
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if end > size:  # before reading: a damaged offset must not have f.read allocate terabytes
                    raise StorageError(f"{path}: short read: bytes [{start}, {end}) asked of a {size}-byte file")
                f.seek(start)
                data = f.read(max(0, end - start))
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"{path}: no such file") from e
        IO_STATS.add(path, len(data))
        if len(data) != max(0, end - start):
            raise StorageError(f"{path}: short read at byte {start + len(data)} (wanted [{start}, {end}))")
        return data

    def read_all(self, uri: str) -> bytes:
        path = normalize_uri(uri)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"{path}: no such file") from e
        IO_STATS.add(path, len(data))
        return data

    def write(self, uri: str, data: bytes) -> None:
        # Write-then-rename: readers see the old file or the whole new one, never a prefix.
        path = normalize_uri(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def delete(self, uri: str) -> None:
        try:
            os.remove(normalize_uri(uri))
        except FileNotFoundError:
            pass

    def list(self, pattern: str) -> list[ObjectInfo]:
        path = normalize_uri(pattern)
        if any(c in path for c in _GLOB_CHARS):
            names = sorted(_glob.glob(path))
        elif os.path.isdir(path):
            names = sorted(os.path.join(path, n) for n in os.listdir(path))
        elif os.path.exists(path):
            names = [path]
        else:
            raise ObjectNotFoundError(f"{path}: no such file or directory")
        out = [self.info(n) for n in names if os.path.isfile(n) and not _skip_name(n)]
        if not out and not os.path.isdir(path):
            raise ObjectNotFoundError(f"{path}: matches no file")
        return out

    def list_tree(self, prefix: str) -> list[ObjectInfo]:
        root = normalize_uri(prefix).rstrip("/") or "/"
        out = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.endswith(INDEX_SUFFIX))
            out.extend(self.info(os.path.join(folder, f)) for f in sorted(files))
        return out

    def list_folder(self, prefix: str) -> dict[str, float]:
        try:
            entries = list(os.scandir(normalize_uri(prefix)))
        except FileNotFoundError:
            return {}
        out = {}
        for e in entries:
            try:
                if e.is_file():
                    out[e.name] = e.stat().st_mtime
            except FileNotFoundError:  # deleted while listed
                continue
        return out


# ----------------------------------------------------------------------------------------------- S3

_CLIENTS: dict[tuple[int, StorageOptions], object] = {}
_CLIENTS_LOCK = threading.Lock()

_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "500", "502", "503", "504", "RequestLimitExceeded",
}


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def _s3_client(options: StorageOptions):  # noqa: ANN202 - boto3 types are dynamic
    # One client per process (clients are not fork-safe, hence the pid in the key).
    k = (os.getpid(), options)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(k)
        if client is None:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            cfg = Config(
                # Our own loop retries (and resumes ranged reads); botocore's would restart from zero.
                retries={"total_max_attempts": 1},
                signature_version=UNSIGNED if options.anonymous else None,
                max_pool_connections=32,
                connect_timeout=10,
                read_timeout=options.read_timeout,
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=options.endpoint_url, region_name=options.region, config=cfg
            )
            _CLIENTS[k] = client
    return client


def _error_code(e: BaseException) -> str:
    resp = getattr(e, "response", None) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code or status


def _is_transient(e: BaseException) -> bool:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        FlexibleChecksumError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import ProtocolError

    if isinstance(e, ClientError):
        resp = e.response or {}
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        return _error_code(e) in _TRANSIENT_CODES or int(status) >= 500 or int(status) == 429
    return isinstance(
        e,
        ConnectionClosedError | ConnectTimeoutError | EndpointConnectionError | IncompleteReadError
        | ReadTimeoutError | ProtocolError | ConnectionError | _ShortRead
        # a connection that broke while a whole body was read: what botocore raises then, not IncompleteReadError
        | ResponseStreamingError
        # a body that arrived complete by HTTP's rules but not as S3 sent it (cut short, or damaged on the way)
        | FlexibleChecksumError,
    )


class _ShortRead(Exception):
    """The body ended before the requested range did: retried like a reset connection."""


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _check_ranged_get(resp: dict, uri: str, lo: int, end: int, etag: str | None, seen_etag: str | None) -> str:
    """Refuse a ranged GET response that is not the bytes asked for; return its ETag.

    An endpoint or proxy that drops ``Range`` sends the whole object with 200, one that drops ``If-Match``
    sends whatever version is current: both look like success to boto3, and the reader would decode the wrong
    bytes without a word. ``seen_etag`` is the ETag of this read's first response, so a resumed read never
    splices two versions of an object even when no index pinned one.
    """
    where = f"{uri} [{lo}, {end})"
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status != 206:
        why = " with the whole object: the endpoint (or a proxy) ignored the Range header" if status == 200 else ""
        raise StorageError(f"{where}: ranged GET answered HTTP {status}{why}; expected 206 Partial Content")
    # Another version first: it explains a range mismatch too (a newer, shorter object).
    got = str(resp.get("ETag") or "").strip('"')
    if etag and got != etag:
        raise StaleIndexError(f"{where}: the endpoint returned ETag {got or 'none'!r}, the index was built for "
                              f"{etag!r} (the endpoint ignored If-Match): the object changed since it was indexed; "
                              "rebuild its index (dataplug index --force)")
    if seen_etag is not None and got != seen_etag:
        raise StorageError(f"{where}: the object changed while it was being read (ETag {seen_etag!r}, then "
                           f"{got!r}); read it again")
    content_range = resp.get("ContentRange") or ""
    m = _CONTENT_RANGE.fullmatch(content_range.strip())
    if not m:
        raise StorageError(f"{where}: ranged GET answered Content-Range {content_range!r}; expected "
                           f"'bytes {lo}-{end - 1}/<size>'")
    first, last, total = int(m[1]), int(m[2]), m[3]
    if first == lo and last < end - 1 and total != "*" and int(total) == last + 1:
        raise StorageError(f"{where}: the object is only {total} bytes; the range runs past its end (the "
                           "object changed, or the index or offsets belong to another object)")
    if (first, last) != (lo, end - 1):
        raise StorageError(f"{where}: ranged GET answered Content-Range {content_range!r}, not bytes "
                           f"{lo}-{end - 1}; refusing bytes from the wrong offsets")
    return got


def _checksum_error() -> type[Exception]:
    from botocore.exceptions import FlexibleChecksumError

    return FlexibleChecksumError


def _retrying(fn: Callable[[], T], what: str, options: StorageOptions) -> T:
    """Run ``fn`` with exponential backoff and full jitter on transient errors; map the rest to ours."""
    delay = 0.1
    for attempt in range(1, options.max_attempts + 1):
        try:
            return fn()
        except DataplugError:
            raise  # already ours and already final: a response that is wrong, not a request that failed
        except Exception as e:  # noqa: BLE001 - classified below, re-raised as ours
            if _is_transient(e) and attempt < options.max_attempts:
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 10.0)
                continue
            raise _translate(e, what, attempt, options) from e
    raise AssertionError("unreachable")


def _translate(e: BaseException, what: str, attempts: int, options: StorageOptions) -> Exception:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(e, ClientError):
        code = _error_code(e)
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            return ObjectNotFoundError(f"{what}: not found ({code})")
        if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            if options.anonymous:  # the usual advice would be to do what was already done
                return StorageError(f"{what}: access denied ({code}) to an anonymous request; the object is not "
                                    "public: set credentials and anonymous=false")
            return StorageError(f"{what}: access denied ({code}); check credentials or use anonymous=true")
        if code in ("PreconditionFailed", "412"):
            return StaleIndexError(f"{what}: the object changed since it was indexed (ETag differs); rebuild "
                                   "its index (dataplug index --force)")
        if code == "InvalidRange":
            return StorageError(f"{what}: range not satisfiable (object shorter than its index says?)")
        cause = f"HTTP {code}" if code.isdigit() else code  # a HEAD's error has no body, only its status
        return StorageError(f"{what}: {cause or e} after {attempts} attempt(s)")
    if isinstance(e, NoCredentialsError):
        return StorageError(f"{what}: no AWS credentials found; set them, or use anonymous=true for a "
                            "public bucket")
    if _is_transient(e):
        return StorageError(f"{what}: still failing after {attempts} attempts: {e}")
    if isinstance(e, ObjectNotFoundError | StorageError | StaleIndexError):
        return e
    return StorageError(f"{what}: {e}")


class S3Storage:
    """S3 and S3-compatible stores through boto3, with ranged GETs that resume after a broken stream."""

    def __init__(self, options: StorageOptions) -> None:
        self.options = options

    @property
    def client(self):  # noqa: ANN201
        return _s3_client(self.options)

    def info(self, uri: str) -> ObjectInfo:
        bucket, key = split_s3(uri)
        head = _retrying(lambda: self.client.head_object(Bucket=bucket, Key=key), uri, self.options)
        return ObjectInfo(normalize_uri(uri), int(head["ContentLength"]), head.get("ETag", "").strip('"'))

    def read(self, uri: str, start: int, end: int, etag: str | None = None) -> bytes:
        if end <= start:
            return b""
        bucket, key = split_s3(uri)
        parts: list[bytes] = []
        got = 0
        seen_etag: str | None = None

        def attempt() -> None:
            nonlocal got, seen_etag
            lo = start + got
            kept = len(parts)
            kwargs = {"Bucket": bucket, "Key": key, "Range": f"bytes={lo}-{end - 1}"}
            if etag:
                kwargs["IfMatch"] = f'"{etag}"'
            resp = self.client.get_object(**kwargs)
            body = resp["Body"]
            try:
                # Every attempt, resumed ones too: a retry can land on another server, proxy or version.
                seen_etag = _check_ranged_get(resp, uri, lo, end, etag, seen_etag)
                # Keep whatever arrived before a break: the retry asks only for the rest.
                while got < end - start:
                    try:
                        chunk = body.read(min(8 << 20, end - start - got))
                    except _checksum_error():
                        # the body failed its checksum: none of this attempt's bytes can be trusted
                        got -= sum(len(p) for p in parts[kept:])
                        del parts[kept:]
                        raise
                    if not chunk:
                        raise _ShortRead(f"body ended at byte {start + got}")
                    parts.append(chunk)
                    got += len(chunk)
                    IO_STATS.add(normalize_uri(uri), len(chunk))
            finally:
                body.close()

        _retrying(attempt, f"{uri} [{start}, {end})", self.options)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def read_all(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)

        def attempt() -> bytes:
            resp = self.client.get_object(Bucket=bucket, Key=key)
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            # botocore checks this too when it can; a short manifest must never reach json.loads as "valid".
            expected = resp.get("ContentLength")
            if expected is not None and len(data) != int(expected):
                raise _ShortRead(f"body has {len(data)} of its {expected} bytes")
            return data

        data = _retrying(attempt, uri, self.options)
        IO_STATS.add(normalize_uri(uri), len(data))
        return data

    def write(self, uri: str, data: bytes) -> None:
        bucket, key = split_s3(uri)
        # A PUT is atomic: readers see the old object or the whole new one.
        _retrying(lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data), uri, self.options)

    def delete(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        _retrying(lambda: self.client.delete_object(Bucket=bucket, Key=key), uri, self.options)

    def list(self, pattern: str) -> list[ObjectInfo]:
        bucket, key = split_s3(pattern)
        globbing = any(c in key for c in _GLOB_CHARS)
        if globbing:
            prefix = key[: min(key.index(c) for c in _GLOB_CHARS if c in key)]
            regex = glob_to_regex(key)
        else:
            # An exact key is one object; otherwise the key is a "folder" prefix.
            if key and not key.endswith("/"):
                try:
                    return [self.info(pattern)]
                except ObjectNotFoundError:
                    pass
            prefix = key.rstrip("/") + "/" if key else ""
        # No '/' left after the prefix: nothing below the next '/' can match, so let S3 stop there instead of
        # sending the whole subtree (a folder of files next to a folder of a million parts).
        delimiter = "/" not in key[len(prefix):]
        out: list[ObjectInfo] = []
        for obj in self._contents(pattern, prefix, delimiter):
            k = obj["Key"]
            if k.endswith("/") or _skip_name(k):
                continue
            if globbing and not regex.fullmatch(k):
                continue
            if not globbing and "/" in k[len(prefix):]:
                continue  # like Spark: a folder's own files, not its subfolders'
            out.append(ObjectInfo(f"s3://{bucket}/{k}", int(obj["Size"]), obj.get("ETag", "").strip('"')))
        if not out:
            raise ObjectNotFoundError(f"{pattern}: matches no object")
        return out

    def _contents(self, uri: str, key: str, delimiter: bool = False) -> Iterator[dict]:
        """The objects of ``uri``'s bucket under ``key``, page after page (with ``delimiter``, not below a ``/``)."""
        bucket, _ = split_s3(uri)
        token: str | None = None
        while True:
            kwargs = {"Bucket": bucket, "Prefix": key}
            if delimiter:
                kwargs["Delimiter"] = "/"
            if token:
                kwargs["ContinuationToken"] = token
            page = _retrying(lambda kw=kwargs: self.client.list_objects_v2(**kw), uri, self.options)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def list_tree(self, prefix: str) -> list[ObjectInfo]:
        bucket, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key.rstrip("/") else ""
        return [ObjectInfo(f"s3://{bucket}/{obj['Key']}", int(obj["Size"]), obj.get("ETag", "").strip('"'))
                for obj in self._contents(prefix, key)
                if not obj["Key"].endswith("/") and INDEX_SUFFIX + "/" not in obj["Key"]]

    def list_folder(self, prefix: str) -> dict[str, float]:
        _, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key.rstrip("/") else ""
        return {obj["Key"][len(key):]: obj["LastModified"].timestamp()
                for obj in self._contents(prefix, key, delimiter=True) if obj["Key"] != key}

def expand(paths: list[str], options: StorageOptions | None = None) -> list[ObjectInfo]:
    """Paths, globs and prefixes to a de-duplicated list of objects, in the order given."""
    seen: dict[str, ObjectInfo] = {}
    for p in paths:
        for info in get_storage(p, options).list(p):
            seen.setdefault(info.uri, info)
    return list(seen.values())


# ----------------------------------------------------------------------------------------------- folders


def folder_version(uri: str, files: list[ObjectInfo], volatile: tuple[str, ...] = ()) -> ObjectInfo:
    """One version for a folder-shaped object (a MeasurementSet): its own files' names, sizes and ETags.

    Only the files directly in the folder count (a MeasurementSet's rows live there; its sub-tables are
    folders of their own), minus ``volatile`` names that change without the data changing (casacore's
    ``table.lock``). Any rewrite of a counted file changes the version, so a stale index is detected as for
    a single object.
    """
    import hashlib

    root = uri.rstrip("/") + "/"
    own = sorted((f.uri[len(root):], f.size, f.etag) for f in files
                 if f.uri.startswith(root) and "/" not in f.uri[len(root):] and f.uri[len(root):] not in volatile)
    digest = hashlib.sha256(repr(own).encode()).hexdigest()[:32]
    return ObjectInfo(uri.rstrip("/"), sum(size for _, size, _ in own), f"folder-{digest}")


def folder_files(uri: str, options: StorageOptions | None = None) -> dict[str, ObjectInfo]:
    """The files directly in a folder-shaped object, by name (what its slices read, with their versions)."""
    root = uri.rstrip("/") + "/"
    return {f.uri[len(root):]: f for f in get_storage(uri, options).list_tree(uri)
            if f.uri.startswith(root) and "/" not in f.uri[len(root):]}


def expand_folders(paths: list[str], marker: str, volatile: tuple[str, ...] = (),
                   options: StorageOptions | None = None) -> list[ObjectInfo]:
    """Paths to folder-shaped objects: every folder holding ``marker`` (``table.dat``) is one object.

    A path may name the folder itself, a folder of them (``s3://bucket/night1/``) or a glob of them
    (``.../*.ms``). Folders inside an object (a MeasurementSet's sub-tables hold a ``table.dat`` too) belong
    to it and are never objects of their own.
    """
    seen: dict[str, ObjectInfo] = {}
    for p in paths:
        full = normalize_uri(p).rstrip("/")
        globbing = any(c in full for c in _GLOB_CHARS)
        root = full[: full.rfind("/", 0, min(full.index(c) for c in _GLOB_CHARS if c in full))] if globbing else full
        files = get_storage(p, options).list_tree(root)
        found = sorted({f.uri.rsplit("/", 1)[0] for f in files if f.uri.rsplit("/", 1)[-1] == marker})
        outer = [d for d in found if not any(d.startswith(o + "/") for o in found if o != d)]
        if globbing:
            bucket_free = full.split("://", 1)[1] if is_s3(full) else full
            regex = glob_to_regex(bucket_free)
            outer = [d for d in outer if regex.fullmatch(d.split("://", 1)[1] if is_s3(d) else d)]
        if not outer:
            raise ObjectNotFoundError(f"{p}: holds no folder with a {marker} (is it the right path, and the "
                                      "right format?)")
        for d in outer:
            seen.setdefault(d, folder_version(d, [f for f in files if f.uri.startswith(d + "/")], volatile))
    return list(seen.values())
