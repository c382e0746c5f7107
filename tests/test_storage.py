"""Storage against real endpoints: retries, resumed ranges, clear errors; and a light package import."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest
from conftest import BUCKET
from flaky_proxy import FlakyProxy

from pyspark_dataplug.errors import ObjectNotFoundError, StaleIndexError, StorageError
from pyspark_dataplug.storage import IO_STATS, LocalStorage, S3Storage, StorageOptions, expand


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
