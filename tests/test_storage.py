"""Storage against real endpoints: retries, resumed ranges, clear errors; and a light package import."""

from __future__ import annotations

import fnmatch
import os
import random
import subprocess
import sys
import uuid

import boto3
import pytest
from conftest import BUCKET
from flaky_proxy import FlakyProxy

from pyspark_dataplug.errors import ObjectNotFoundError, StaleIndexError, StorageError
from pyspark_dataplug.storage import IO_STATS, LocalStorage, S3Storage, StorageOptions, expand, glob_to_regex


@pytest.fixture
def blob(s3_server):
    data = bytes(range(256)) * 4096  # 1 MiB
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=BUCKET, Key="storage/blob.bin", Body=data)
    return f"s3://{BUCKET}/storage/blob.bin", data


def test_transient_errors_are_retried_and_ranges_resume(s3_server, blob):
    uri, data = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.faults = ["slowdown", "error500", "cut"]
        IO_STATS.reset()
        assert st.read(uri, 1000, 600_000) == data[1000:600_000]
        ranges = [r for m, _, r in proxy.requests if m == "GET" and r]
        # three faulty attempts, then the rest; after the cut the retry asks only for the missing tail
        assert len(ranges) == 4
        assert ranges[0] == "bytes=1000-599999"
        resumed = int(ranges[-1].split("=")[1].split("-")[0])
        assert 1000 < resumed < 600_000
        assert IO_STATS.bytes_read[uri] == 599_000


def test_throttling_that_never_ends_is_a_clear_error(s3_server, blob):
    uri, _ = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint, max_attempts=3))
        proxy.faults = ["slowdown"] * 3
        with pytest.raises(StorageError, match=r"blob\.bin.*SlowDown after 3 attempt"):
            st.read(uri, 0, 10)


def test_missing_denied_and_changed_objects(s3_server, blob):
    uri, data = blob
    st = S3Storage(StorageOptions(endpoint_url=s3_server))
    with pytest.raises(ObjectNotFoundError, match="nope.bin"):
        st.info(f"s3://{BUCKET}/storage/nope.bin")
    with pytest.raises(ObjectNotFoundError, match="no-such-bucket"):
        st.read("s3://no-such-bucket/x", 0, 10)
    etag = st.info(uri).etag
    assert st.read(uri, 0, 4, etag=etag) == data[:4]
    with pytest.raises(StaleIndexError, match="changed since it was indexed"):
        st.read(uri, 0, 4, etag="0123456789abcdef0123456789abcdef")


def test_listing_globs_prefixes_and_pagination(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server)
    for i in range(1005):  # more than one LIST page (1000 keys)
        client.put_object(Bucket=BUCKET, Key=f"many/part-{i:04d}.txt", Body=b"x\n")
    client.put_object(Bucket=BUCKET, Key="many/_SUCCESS", Body=b"")
    client.put_object(Bucket=BUCKET, Key="many/part-0000.txt.dataplug/text/manifest.json", Body=b"{}")
    opts = StorageOptions(endpoint_url=s3_server)
    assert len(expand([f"s3://{BUCKET}/many/"], opts)) == 1005
    assert len(expand([f"s3://{BUCKET}/many"], opts)) == 1005
    assert len(expand([f"s3://{BUCKET}/many/part-00*.txt"], opts)) == 100
    with pytest.raises(ObjectNotFoundError, match="matches no object"):
        expand([f"s3://{BUCKET}/many/*.csv"], opts)


def _put(endpoint: str, key: str, data: bytes) -> str:
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


def _gets(proxy: FlakyProxy) -> list[str | None]:
    return [r for m, _, r in proxy.requests if m == "GET"]


# --- responses that look like success but are not the bytes asked for


def test_ranged_get_answered_with_the_whole_object_is_an_error(s3_server, blob):
    uri, _ = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.faults = ["ignore-range"]
        with pytest.raises(StorageError, match=r"blob\.bin \[1000, 2000\): .*HTTP 200 .*ignored the Range"):
            st.read(uri, 1000, 2000)
        assert len(_gets(proxy)) == 1  # a broken endpoint is not retried


def test_ranged_get_with_another_content_range_is_an_error(s3_server, blob):
    uri, _ = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.faults = ["wrong-content-range"]
        with pytest.raises(StorageError, match=r"blob\.bin \[1000, 2000\): .*'bytes 1001-2000/1048576', not bytes "
                                               r"1000-1999"):
            st.read(uri, 1000, 2000)


def test_endpoint_ignoring_if_match_cannot_return_another_version(s3_server):
    key = f"storage/{uuid.uuid4().hex[:8]}/versions.bin"
    uri = _put(s3_server, key, b"A" * 1000)
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        etag = st.info(uri).etag
        _put(s3_server, key, b"B" * 1000)  # same size, other bytes: only the ETag tells them apart
        proxy.faults = ["ignore-if-match"]
        with pytest.raises(StaleIndexError, match=rf"{key} \[0, 10\): .*ETag .*{etag}.*changed since it was indexed"):
            st.read(uri, 0, 10, etag=etag)


@pytest.mark.parametrize("fault", ["ignore-range", "wrong-content-range"])
def test_resumed_ranged_get_is_checked_too(s3_server, blob, fault):
    uri, _ = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.faults = ["cut", fault]
        with pytest.raises(StorageError, match=r"blob\.bin \[\d+, 600000\): "):
            st.read(uri, 1000, 600_000)
        ranges = [r for r in _gets(proxy) if r]
        assert ranges[0] == "bytes=1000-599999" and ranges[1] != ranges[0]  # the failure was on the resume


def test_resumed_read_never_splices_two_versions(s3_server):
    # No index ETag to send as If-Match: the read pins the version of its own first response.
    key = f"storage/{uuid.uuid4().hex[:8]}/rewritten.bin"
    uri = _put(s3_server, key, b"A" * 600_000)

    def rewrite(number: int) -> None:
        if number == 1:  # the resume, after the cut
            _put(s3_server, key, b"B" * 600_000)

    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.faults = ["cut"]
        proxy.before_forward = rewrite
        with pytest.raises(StorageError, match=rf"{key} \[\d+, 600000\): the object changed while it was being read"):
            st.read(uri, 0, 600_000)


def test_range_past_the_end_is_a_clear_error_not_retried(s3_server):
    key = f"storage/{uuid.uuid4().hex[:8]}/short.bin"
    uri = _put(s3_server, key, b"x" * 1000)
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        with pytest.raises(StorageError, match=rf"{key} \[500, 2000\): the object is only 1000 bytes"):
            st.read(uri, 500, 2000)
        assert len(_gets(proxy)) == 1


def test_read_all_retries_a_truncated_body(s3_server, blob):
    # A break while reading a whole body surfaces as botocore's ResponseStreamingError: transient like any reset.
    # (botocore also compares the body with Content-Length; read_all checks that too, so a short manifest can
    # never be parsed as a whole one.)
    uri, data = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.fault_on = "get"
        proxy.faults = ["cut"]
        assert st.read_all(uri) == data
        assert len(_gets(proxy)) == 2


@pytest.mark.parametrize("op", ["info", "read", "read_all", "list"])
def test_access_denied_names_the_object(s3_server, blob, op):
    uri, _ = blob
    with FlakyProxy(s3_server) as proxy:
        st = S3Storage(StorageOptions(endpoint_url=proxy.endpoint))
        proxy.fault_on = "any"
        proxy.faults = ["denied"]
        call = {"info": lambda: st.info(uri), "read": lambda: st.read(uri, 0, 10),
                "read_all": lambda: st.read_all(uri), "list": lambda: st.list(uri.replace("blob", "bl?b"))}[op]
        with pytest.raises(StorageError, match=r"blob\.bin|bl\?b\.bin") as err:
            call()
        assert "access denied" in str(err.value)
        assert len(proxy.requests) == 1  # denied is final: no retries


def test_anonymous_request_to_a_private_object_says_so(s3_server, blob):
    uri, _ = blob
    st = S3Storage(StorageOptions(endpoint_url=s3_server, anonymous=True))
    with pytest.raises(StorageError, match=r"blob\.bin: access denied .*anonymous request.*not public"):
        st.info(uri)


# --- the same globs mean the same objects on S3 and on local disk

TREE = ["run1/a.txt", "run1/b.txt", "run1/sub/c.txt", "run1/_SUCCESS", "run1/.hidden/e.txt",
        "run1/a.txt.dataplug/text/manifest.json", "run2/d.txt"]


@pytest.fixture(scope="module")
def trees(s3_server, tmp_path_factory):
    local = tmp_path_factory.mktemp("tree")
    s3 = f"s3://{BUCKET}/tree-{uuid.uuid4().hex[:8]}"
    for name in TREE:
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(name.encode())
        _put(s3_server, f"{s3.split('/', 3)[3]}/{name}", name.encode())
    return {"local": (str(local), None), "s3": (s3, StorageOptions(endpoint_url=s3_server))}


@pytest.mark.parametrize(("pattern", "expected"), [
    ("run1/*.txt", ["run1/a.txt", "run1/b.txt"]),
    ("run1/?.txt", ["run1/a.txt", "run1/b.txt"]),
    ("run*/*.txt", ["run1/a.txt", "run1/b.txt", "run2/d.txt"]),
    ("run?/*", ["run1/a.txt", "run1/b.txt", "run2/d.txt"]),
    ("run1/", ["run1/a.txt", "run1/b.txt"]),
    ("run1", ["run1/a.txt", "run1/b.txt"]),
    ("run1/[ab].txt", ["run1/a.txt", "run1/b.txt"]),
    ("run1/[!a].txt", ["run1/b.txt"]),
    ("run1/[a-c].txt", ["run1/a.txt", "run1/b.txt"]),
    ("run1/*/*.txt", ["run1/sub/c.txt"]),  # not .hidden/e.txt: a wildcard never matches a leading '.'
    ("run1/.*/*.txt", ["run1/.hidden/e.txt"]),
    ("*/sub/*.txt", ["run1/sub/c.txt"]),
    ("run1/sub/c.txt", ["run1/sub/c.txt"]),
    ("run1/*.csv", None),
    ("run1/[c-z].txt", None),
])
def test_listing_is_the_same_on_s3_and_local(trees, pattern, expected):
    for kind, (root, options) in trees.items():
        if expected is None:
            with pytest.raises(ObjectNotFoundError, match="matches no"):
                expand([f"{root}/{pattern}"], options)
            continue
        got = [o.uri[len(root) + 1:] for o in expand([f"{root}/{pattern}"], options)]
        assert got == expected, kind


def test_s3_listing_stops_at_the_folder_when_it_can(s3_server, trees):
    root = trees["s3"][0]
    with FlakyProxy(s3_server) as proxy:
        opts = StorageOptions(endpoint_url=proxy.endpoint)
        expand([f"{root}/run1/*.txt"], opts)
        assert "delimiter=%2F" in proxy.requests[-1][1]
        expand([f"{root}/run*/*.txt"], opts)  # '/' after the wildcard: the whole prefix must be listed
        assert "delimiter" not in proxy.requests[-1][1]


def test_glob_components_match_like_fnmatch():
    # Within one path component the S3 translation must agree with fnmatch (what glob.glob uses locally).
    rng = random.Random(7)
    for _ in range(5000):
        pattern = "".join(rng.choice("ab-!^]*?[\\.") for _ in range(rng.randint(1, 7)))
        name = "".join(rng.choice("ab-!^]\\[c") for _ in range(rng.randint(0, 5)))
        if pattern.startswith("."):
            continue  # leading dots follow glob's hidden-file rule, tested above
        assert bool(glob_to_regex(pattern).fullmatch(name)) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


# --- options reach boto3


def test_anonymous_requests_are_unsigned(s3_server):
    data = b"public\n"
    key = f"storage/{uuid.uuid4().hex[:8]}/public.txt"
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=BUCKET, Key=key, Body=data, ACL="public-read")
    uri = f"s3://{BUCKET}/{key}"
    with FlakyProxy(s3_server) as proxy:
        assert S3Storage(StorageOptions(endpoint_url=proxy.endpoint, anonymous=True)).info(uri).size == len(data)
        assert "authorization" not in {k.lower() for k in proxy.headers[-1]}
        S3Storage(StorageOptions(endpoint_url=proxy.endpoint)).info(uri)
        assert proxy.headers[-1]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")


@pytest.mark.parametrize(("region", "scope"), [("eu-west-3", "eu-west-3"), (None, "us-east-1")])
def test_region_is_the_signing_region(s3_server, blob, region, scope):
    uri, _ = blob
    with FlakyProxy(s3_server) as proxy:
        S3Storage(StorageOptions(endpoint_url=proxy.endpoint, region=region)).info(uri)
        # Credential=<key>/<date>/<region>/s3/aws4_request; None falls back to AWS_DEFAULT_REGION (conftest)
        assert f"/{scope}/s3/aws4_request" in proxy.headers[-1]["Authorization"]


def test_local_paths_and_file_uris(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"hello\n")
    st = LocalStorage()
    assert st.read(f"file://{p}", 1, 4) == b"ell"
    assert [o.uri for o in expand([str(tmp_path)])] == [str(p)]
    with pytest.raises(ObjectNotFoundError):
        st.info(str(tmp_path / "missing"))


def test_import_is_light_and_never_fails():
    # Spark imports every pyspark_* module during data source discovery: ours must be cheap and safe.
    code = ("import sys, pyspark_dataplug; heavy = [m for m in ('pyarrow', 'boto3', 'numpy', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.stdout.strip() == "[]"


def test_local_read_past_the_end_fails_before_reading(tmp_path):
    """A damaged offset asking terabytes of a small file is a StorageError naming it, not a MemoryError."""
    p = tmp_path / "small.bin"
    p.write_bytes(b"x" * 100)
    st = LocalStorage()
    assert st.read(str(p), 90, 100) == b"x" * 10
    with pytest.raises(StorageError, match=r"small\.bin: short read: bytes \[16, 17592186646400\) asked of a 100-byte"):
        st.read(str(p), 16, 17592186646400)
