"""Real parts only: a local Spark (``local[2]``) and moto's S3 server over HTTP on 127.0.0.1, via boto3."""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before Spark starts: its Python workers inherit the JVM's environment.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
for _k, _v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

BUCKET = "dataplug-tests"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("dataplug-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


class Store:
    """Where a test puts its objects: a local folder or the S3 endpoint, with the options to read them."""

    def __init__(self, kind: str, root: str, options: dict[str, str]) -> None:
        self.kind = kind
        self.root = root
        self.options = options

    def put(self, name: str, data: bytes) -> str:
        uri = f"{self.root}/{name}"
        if self.kind == "s3":
            import boto3

            bucket, _, key = uri[len("s3://"):].partition("/")
            boto3.client("s3", endpoint_url=self.options["endpointUrl"]).put_object(Bucket=bucket, Key=key, Body=data)
        else:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            Path(uri).write_bytes(data)
        return uri

    def delete(self, uri: str) -> None:
        if self.kind == "s3":
            import boto3

            bucket, _, key = uri[len("s3://"):].partition("/")
            boto3.client("s3", endpoint_url=self.options["endpointUrl"]).delete_object(Bucket=bucket, Key=key)
        else:
            Path(uri).unlink()


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "local":
        return Store("local", str(tmp_path / "data"), {})
    endpoint = request.getfixturevalue("s3_server")
    return Store("s3", f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}", {"endpointUrl": endpoint})


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store(request.param, tmp_path, request)


@pytest.fixture
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store("local", tmp_path, request)


@pytest.fixture
def s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store("s3", tmp_path, request)


def multiset(rows: list[Any]) -> Counter:
    return Counter(tuple(r) if not isinstance(r, tuple) else r for r in rows)


def read_dataplug(spark: Any, paths: str | list[str], options: dict[str, Any]) -> Any:
    reader = spark.read.format("dataplug")
    for k, v in options.items():
        reader = reader.option(k, v)
    return reader.load(paths)
