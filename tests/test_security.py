"""Security: what is read from storage is data, never code; index keys stay inside indexLocation; no secret leaks.

A bucket is shared: whoever can write next to the data can write an index. So nothing read from storage is
unpickled or evaluated (checked on the package's source), manifests are validated before any field is used,
a table or blob name cannot point outside its index, and no object key can place an index outside
``indexLocation``. Credentials come from boto3's chain in each process and are never carried: a Spark job with
distinctive credentials is searched for them everywhere a user or an operator could see text.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import posixpath
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET
from data import fastq_reference, make_fastq
from flaky_proxy import FlakyProxy

from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import IndexFormatError, OptionError
from pyspark_dataplug.index.store import index_dir
from pyspark_dataplug.storage import LocalStorage

PACKAGE = Path(__file__).parent.parent / "pyspark_dataplug"

#: calls that turn bytes into code or objects: none may appear in the package
FORBIDDEN = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "loads"), ("dill", "loads"),
    ("dill", "load"), ("marshal", "loads"), ("marshal", "load"), ("yaml", "load"), ("yaml", "unsafe_load"),
    ("shelve", "open"), ("pd", "read_pickle"), ("pandas", "read_pickle"), ("jsonpickle", "decode"),
    ("cloudpickle", "loads"), ("cloudpickle", "load"), ("joblib", "load"),
}


UNSAFE_MODULES = ("pickle", "marshal", "dill", "shelve", "yaml", "joblib")


def _calls(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("eval", "exec", "compile", "__import__"):
                found.append((f.id, node.lineno))
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN:
                found.append((f"{f.value.id}.{f.attr}", node.lineno))
            for kw in node.keywords:  # numpy.load(..., allow_pickle=True)
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(("allow_pickle", node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module in UNSAFE_MODULES:
            names = {a.name for a in node.names}
            if names & {"load", "loads", "Unpickler"}:
                found.append((f"from {node.module} import {sorted(names)}", node.lineno))
    return found


def test_nothing_read_from_storage_is_unpickled_or_evaluated() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    bad = {str(f.relative_to(PACKAGE)): hits for f in files if (hits := _calls(ast.parse(f.read_text())))}
    assert bad == {}, f"code that turns stored bytes into objects or code: {bad}"


def test_the_scan_itself_finds_what_it_forbids() -> None:
    sample = "import pickle, yaml, numpy as np\npickle.loads(b)\neval(s)\nyaml.load(t)\nnp.load(p, allow_pickle=True)\n"
    assert [name for name, _ in _calls(ast.parse(sample))] == ["pickle.loads", "eval", "yaml.load", "allow_pickle"]


# -- manifests are validated before use ----------------------------------------------------------------------

@pytest.fixture
def indexed(local_store: Any) -> tuple[str, Path]:
    data = make_fastq(300, seed=151)
    uri = local_store.put("m.fastq", data)
    CloudObject("fastq", uri, {"indexSpacing": "4k"}).preprocess()
    return uri, Path(uri + ".dataplug/fastq/manifest.json")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(format="vcf"), r"'format' is 'vcf'"),
    (lambda m: m.update(source="s3://elsewhere"), r"'source' must hold"),
    (lambda m: m["source"].update(size="12"), r"'source.size' must be a whole number"),
    (lambda m: m["source"].update(size=-4), r"'source.size' must be a whole number"),
    (lambda m: m.update(records=True), r"'records' must be a whole number"),
    (lambda m: m.update(records=1.5), r"'records' must be a whole number"),
    (lambda m: m.update(tables=["points"]), r"'tables' must be an object"),
    (lambda m: m["tables"].update(points="../../../etc/passwd"), r"'tables.points' must be a plain file name"),
    (lambda m: m["tables"].update(points="/etc/passwd"), r"'tables.points' must be a plain file name"),
    (lambda m: m["tables"].update(points="s3://other-bucket/x.parquet"), r"must be a plain file name"),
    (lambda m: m["tables"].update(points="sub/x.parquet"), r"must be a plain file name"),
    (lambda m: m["tables"].update(points="..\\x.parquet"), r"must be a plain file name"),
    (lambda m: m.update(blobs={"w": "..%2F..%2Fx.bin"}), r"'blobs.w' must be a plain file name"),
    (lambda m: m.update(blob_sizes={"w": "big"}), r"'blob_sizes.w' must be a whole number"),
    (lambda m: m.update(attrs="x"), r"'attrs' must be an object"),
])
def test_a_manifest_is_validated_before_any_field_is_used(indexed: tuple, edit: Any, message: str) -> None:
    uri, manifest = indexed
    doc = json.loads(manifest.read_text())
    edit(doc)
    manifest.write_text(json.dumps(doc))
    with pytest.raises(IndexFormatError, match=r"manifest\.json: key .*" + message):
        CloudObject("fastq", uri).slices(num_slices=2)


def test_a_manifest_that_is_not_an_object_is_refused(indexed: tuple) -> None:
    uri, manifest = indexed
    for text in ("[1, 2]", "null", '"text"', "1e999"):
        manifest.write_text(text)
        with pytest.raises(IndexFormatError, match=r"index version None"):
            CloudObject("fastq", uri).slices(num_slices=2)


def test_the_untouched_manifest_reads(indexed: tuple) -> None:
    uri, _ = indexed
    rows = [tuple(r.values()) for s in CloudObject("fastq", uri).slices(num_slices=3) for r in s.get().to_pylist()]
    assert rows == fastq_reference(make_fastq(300, seed=151))


# -- object keys cannot escape indexLocation -----------------------------------------------------------------

HOSTILE_KEYS = [
    "../../../etc/passwd", "a/../../../../x", "./x", "a/./b", "a//b", "/abs/key", "a/b/..", "..", ".",
    "%2e%2e/%2e%2e/x", "%2E%2E%2F%2E%2E%2Fx", "..%2f..%2fx", "a%2fb", "a/%2e/b", "%", "%25", "a/...", "a\\..\\..\\x",
    "x" * 300, "тест/данные.fastq", "a b/c+d.fastq",
]


@pytest.mark.parametrize("location", ["local", "s3"])
def test_object_keys_cannot_escape_the_index_location(tmp_path: Path, location: str) -> None:
    base = str(tmp_path / "indexes") if location == "local" else "s3://index-bucket/indexes"
    dirs = {}
    for key in HOSTILE_KEYS:
        d = index_dir(f"s3://data-bucket/{key}", "fastq", base)
        path = d.split("://", 1)[1] if "://" in d else d
        root = base.split("://", 1)[1] if "://" in base else base
        # what a file system, or any tool that normalizes paths, makes of it stays inside the location
        assert posixpath.normpath(path).startswith(root + "/data-bucket/"), (key, d)
        assert not any(seg in (".", "..", "") for seg in path[len(root) + 1:].split("/")), (key, d)
        assert d.endswith(".dataplug/fastq")
        dirs[key] = d
    assert len(set(dirs.values())) == len(dirs)  # one-to-one: two objects never share an index
    # ordinary keys keep the layout indexes already have
    plain = index_dir("s3://data-bucket/run1/a.fastq", "fastq", base)
    assert plain == f"{base}/data-bucket/run1/a.fastq.dataplug/fastq"


def test_a_hostile_key_builds_and_reads_inside_a_local_index_location(s3_store: Any, tmp_path: Path) -> None:
    data = make_fastq(40, seed=152)
    uri = s3_store.put("x/../../../escape.fastq", data)  # S3 keeps '..' as part of the key
    location = tmp_path / "indexes"
    opts = {**s3_store.options, "indexLocation": str(location)}
    CloudObject("fastq", uri, opts).preprocess()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(location in p.parents for p in written), written
    slices = CloudObject("fastq", uri, opts).slices(num_slices=2)
    rows = [tuple(r.values()) for s in slices for r in s.get().to_pylist()]
    assert rows == fastq_reference(data)


def test_hostile_buckets_and_local_paths_stay_inside_and_apart() -> None:
    seen: dict[str, str] = {}
    for location in ("/srv/indexes", "s3://index-bucket/some/prefix"):
        for bucket in ("data", "..", ".", "%2e%2e"):
            for key in [*HOSTILE_KEYS, "", "trail/", "a/b.dataplug/fastq"]:
                d = index_dir(f"s3://{bucket}/{key}", "fastq", location)
                rel = d[len(location):]
                assert d.startswith(location + "/") and posixpath.normpath(rel) == rel, (bucket, key, d)
                assert seen.setdefault(d, f"{bucket}/{key}") == f"{bucket}/{key}", (d, seen[d], key)
        # local sources are absolute and normalised before they become segments
        for p in ("/data/../../x.txt", "rel/../../y.txt", "/a/%2e%2e/b", "file:///data/./z.txt", "//twice/x"):
            rel = index_dir(p, "fastq", location)[len(location):]
            assert posixpath.normpath(rel) == rel and "/../" not in rel, (p, rel)


@pytest.mark.parametrize("fmt", ["../x", "a/b", "..", ".", "", "/abs", "text/../../x", "s3://x", "a\\b"])
def test_the_format_component_is_a_plain_name(fmt: str) -> None:
    for location in (None, "/srv/indexes"):
        with pytest.raises(OptionError, match="not a format name"):
            index_dir("s3://b/x.fastq", fmt, location)


def test_a_hostile_key_builds_and_reads_inside_an_s3_index_location(s3_store: Any) -> None:
    import boto3

    data = make_fastq(30, seed=156)
    uri = s3_store.put("y/../../%2e%2e/a//escape.fastq", data)
    bucket, prefix = uri[len("s3://"):].split("/", 2)[:2]
    location = f"s3://{bucket}/idx-{uuid.uuid4().hex[:6]}"
    opts = {**s3_store.options, "indexLocation": location}
    CloudObject("fastq", uri, opts).preprocess()
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=opts["endpointUrl"]).list_objects_v2(
        Bucket=bucket)["Contents"] if ".dataplug/" in o["Key"] and (prefix in o["Key"])]
    root = location.split("/", 3)[3]
    assert keys and all(k.startswith(root + "/") and posixpath.normpath(k) == k for k in keys), keys
    slices = CloudObject("fastq", uri, opts).slices(num_slices=2)
    assert [tuple(r.values()) for s in slices for r in s.get().to_pylist()] == fastq_reference(data)


def test_an_index_of_another_object_is_refused_and_rebuilt(tmp_path: Path) -> None:
    # same bytes and the same mtime (as an archive extracts them): size and ETag match, only the uri differs
    import shutil

    data = make_fastq(20, seed=157)
    a, b = tmp_path / "a.fastq", tmp_path / "b.fastq"
    for p in (a, b):
        p.write_bytes(data)
        os.utime(p, ns=(10**18, 10**18))
    assert LocalStorage().info(str(a)).etag == LocalStorage().info(str(b)).etag
    CloudObject("fastq", str(a)).preprocess()
    shutil.copytree(f"{a}.dataplug", f"{b}.dataplug")
    with pytest.raises(IndexFormatError, match=r"b\.fastq: its fastq index .* built for another object .*a\.fastq"):
        CloudObject("fastq", str(b)).slices(num_slices=2)
    CloudObject("fastq", str(b)).preprocess()  # a build does not keep it: it rebuilds for this object
    manifest = json.loads((Path(index_dir(str(b), "fastq")) / "manifest.json").read_text())
    assert manifest["source"]["uri"] == str(b)
    rows = [tuple(r.values()) for s in CloudObject("fastq", str(b)).slices(num_slices=2) for r in s.get().to_pylist()]
    assert rows == fastq_reference(data)


def test_s3a_and_s3_name_one_object(s3_store: Any) -> None:
    data = make_fastq(10, seed=158)
    uri = s3_store.put("s3a.fastq", data)
    CloudObject("fastq", uri, s3_store.options).preprocess()
    s3a = "s3a://" + uri[len("s3://"):]
    rows = [tuple(r.values()) for s in CloudObject("fastq", s3a, s3_store.options).slices(num_slices=1)
            for r in s.get().to_pylist()]
    assert rows == fastq_reference(data)


# -- credentials never appear anywhere ---------------------------------------------------------------------------

KEY_ID = "AKIADATAPLUGLEAKTEST7"
SECRET = "dpLeak/Secret+Key0123456789abcdefghijklmn"
TOKEN = "DataplugLeakSessionToken/0123456789+abcdefghij"


@pytest.fixture(scope="module")
def secrets_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tests/secrets_job.py run once with distinctive credentials: everything it saw, and the requests sent."""
    out = tmp_path_factory.mktemp("secrets") / "out.json"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("secrets_job.py")), str(out)],
                          capture_output=True, text=True, env=env, timeout=900, cwd=str(out.parent))
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    result["texts"]["job stdout"] = proc.stdout
    result["texts"]["job stderr (Spark's and Python's logs)"] = proc.stderr
    return result


def test_credentials_never_appear_in_plans_errors_slices_logs_cli_or_the_spark_ui(secrets_run: dict) -> None:
    texts = secrets_run["texts"]
    # what is searched holds what it should: a search of empty or failed texts would prove nothing
    assert " WARN " in texts["job stderr (Spark's and Python's logs)"]  # the JVM's log is in it
    for name in ("reads.txt", "table.csv", "reads.fastq"):
        assert "BatchScan dataplug" in texts[f"queryExecution {name}"] and "BatchScan" in texts[f"sql plan {name}"]
        assert "== Physical Plan ==" in texts[f"explain {name}"] and name in texts[f"slices {name}"]
        assert "DataplugPartition" in texts[f"partitions {name}"]
    for fallback in ("error", "scan"):
        assert "nope.txt" in texts[f"error missing {fallback}"], texts[f"error missing {fallback}"]
        assert "denied" in texts[f"error denied {fallback}"].lower(), texts[f"error denied {fallback}"]
    assert "nope.txt" in texts["build error missing"] and "denied" in texts["build error denied"].lower()
    for what in ("nope.txt", "denied.txt"):  # --debug prints the traceback
        assert what in texts[f"cli --debug {what}"] and "Traceback" in texts[f"cli --debug {what}"]
    assert '"sparkProperties"' in texts["ui environment"] and texts["ui sql"].startswith("[")
    # the credentials were really used: the signed requests carried the key id and the session token
    assert secrets_run["signed"] and all(KEY_ID in h.get("Authorization", "") for h in secrets_run["signed"])
    assert all(h.get("X-Amz-Security-Token") == TOKEN for h in secrets_run["signed"])
    needles = {v: v for v in (KEY_ID, SECRET, TOKEN)}
    needles.update({f"hex {v[:6]}": v.encode().hex() for v in (KEY_ID, SECRET, TOKEN)})
    needles.update({f"url-quoted {v[:6]}": v.replace("/", "%2F").replace("+", "%2B") for v in (SECRET, TOKEN)})
    needles.update({f"prefix {v[:6]}": v[:12] for v in (SECRET, TOKEN)})  # not even a truncated repr
    leaks = [(name, what) for name, text in texts.items() for what, needle in needles.items() if needle in text]
    assert leaks == [], leaks
    assert len(texts) >= 30, sorted(texts)


def test_slices_and_storage_options_hold_no_credentials(s3_store: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    uri = s3_store.put("p.fastq", make_fastq(50, seed=154))
    co = CloudObject("fastq", uri, s3_store.options)
    co.preprocess()
    blob = b"".join(pickle.dumps(s) for s in co.slices(num_slices=2))
    assert SECRET.encode() not in blob and TOKEN.encode() not in blob and b"testing" not in blob
    # the seed API's s3_config takes boto3 client arguments: secrets among them are refused, and not echoed
    with pytest.raises(Exception, match=r"(?i)aws_secret_access_key.*not supported.*credentials come from") as err:
        CloudObject.from_s3("fastq", uri, s3_config={"endpoint_url": s3_store.options["endpointUrl"],
                                                     "aws_secret_access_key": SECRET})
    assert SECRET not in str(err.value)
    # an option of that name is refused by name, its value not echoed either
    with pytest.raises(Exception, match=r"unknown option\(s\) awssecretaccesskey") as err:
        CloudObject("fastq", uri, {**s3_store.options, "awsSecretAccessKey": SECRET}).slices(num_slices=1)
    assert SECRET not in str(err.value)


# -- anonymous access sends no credentials ------------------------------------------------------------------

def _public(endpoint: str, prefix: str) -> None:
    """Make every object under ``prefix`` public-read, as a data provider publishing data and indexes does."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            client.put_object_acl(Bucket=BUCKET, Key=obj["Key"], ACL="public-read")


def test_anonymous_spark_reads_of_public_data_send_no_credentials(spark: Any, s3_server: str) -> None:
    import gzip

    import boto3

    data = make_fastq(800, seed=155)
    prefix = f"public-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=BUCKET, Key=f"{prefix}/p.fastq.gz",
                                                          Body=gzip.compress(data))
    uri = f"s3://{BUCKET}/{prefix}/p.fastq.gz"
    CloudObject("fastq", uri, {"endpointUrl": s3_server, "gzipSpacing": "64k"}).preprocess()  # the provider
    _public(s3_server, prefix)
    with FlakyProxy(s3_server) as proxy:
        rows = (spark.read.format("dataplug").option("format", "fastq").option("endpointUrl", proxy.endpoint)
                .option("anonymous", "true").option("partitions", "3").load(uri).collect())
        sent = [(m, p, h) for (m, p, _), h in zip(proxy.requests, proxy.headers, strict=True)]
    assert sorted(tuple(r) for r in rows) == sorted(fastq_reference(data))
    assert {m for m, _, _ in sent} >= {"GET", "HEAD"} and any(".dataplug/" in p for _, p, _ in sent)
    for _, path, headers in sent:
        names = {k.lower() for k in headers}
        assert not names & {"authorization", "x-amz-security-token", "x-amz-content-sha256"}, headers
        assert "X-Amz-Credential" not in path and "X-Amz-Signature" not in path and "testing" not in path


def test_anonymous_builds_and_reads_send_no_credentials_with_credentials_set(secrets_run: dict) -> None:
    # the job's last phase: anonymous=true, credentials in the environment, a public object indexed into
    # another bucket (moto takes unsigned writes; real S3 only into a bucket that allows them) and read by Spark
    sent = secrets_run["anonymous"]
    targets = [h["_target"] for h in sent]
    assert any(t.startswith("GET /secrets-data/reads.txt") for t in targets), targets
    assert any(t.startswith("PUT /secrets-indexes/anon/") and t.endswith("manifest.json") for t in targets), targets
    assert any(t.startswith("GET /secrets-indexes/anon/") for t in targets), targets
    for h in sent:
        assert not {k.lower() for k in h} & {"authorization", "x-amz-security-token", "x-amz-credential"}, h
        assert not any(q in h["_target"].lower() for q in ("x-amz-credential", "x-amz-signature",
                                                           "x-amz-security-token")), h["_target"]
        assert not any(v in json.dumps(h) for v in (KEY_ID, SECRET, TOKEN)), h
