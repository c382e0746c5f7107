"""The seed Dataplug API as a drop-in: its example verbatim against the S3 endpoint, on joblib's backends.

``CloudObject.from_s3`` -> ``preprocess(parallel_config=...)`` -> ``partition(fn, num_batches=...)`` with the
original's module paths and names; ``CloudDataset`` over a prefix; slices that pickle without secrets. The
rows are checked against Biopython's reading of the same file. No Spark here.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from data import fastq_reference, make_csv, make_fastq, make_text

from pyspark_dataplug import CloudDataset, CloudObject
from pyspark_dataplug.errors import MissingDependencyError, OptionError
from pyspark_dataplug.storage import IO_STATS

URI = "s3://genomics/SRR6052133_1.fastq.gz"
READS = 2000

SEED = '''\
from pyspark_dataplug import CloudObject
from pyspark_dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
co = CloudObject.from_s3(FASTQGZip, "s3://genomics/SRR6052133_1.fastq.gz")
co.preprocess(parallel_config={"backend": "dask"})        # joblib's parallel_config
data_slices = co.partition(partition_reads_batches, num_batches=200)
'''

#: every module of the seed's layout, and the names each must export
LAYOUT = {
    "generic.text": ["UTF8Text", "whole_words_strategy"],
    "generic.csv": ["CSV", "partition_num_chunks", "partition_chunk_size"],
    "genomics.fastq": ["FASTQGZip", "FASTQ", "partition_reads_batches", "partition_sequences_per_chunk"],
    "genomics.fasta": ["FASTA", "partition_chunks_strategy"],
    "genomics.vcf": ["VCF", "partition_num_chunks"],
    "geospatial.las": ["LiDARPointCloud", "square_split_strategy"],
    "geospatial.laspc": ["LiDARPointCloud", "square_split_strategy"],
    "geospatial.copc": ["CloudOptimizedPointCloud", "square_split_strategy"],
    "geospatial.cog": ["CloudOptimizedGeoTiff", "grid_partition_strategy"],
    "metabolomics.imzml": ["ImzML", "partition_chunks_strategy"],
    "astronomics.ms": ["MS", "ms_partitioning_strategy"],
    "compressed.gzipped": ["GZipText", "partition_chunk_lines", "partition_num_chunks"],
}


def _rows(slices: list[Any]) -> list[tuple]:
    return [tuple(r.values()) for s in slices for r in s.get().to_pylist()]


def _s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint)


@pytest.fixture
def seed_object(s3_server: str) -> tuple[str, bytes]:
    """The seed's object in the seed's bucket, fresh and without an index, so each build really runs."""
    client = _s3(s3_server)
    try:
        client.create_bucket(Bucket="genomics")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="genomics", Prefix="SRR6052133_1"):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket="genomics", Key=obj["Key"])
    data = make_fastq(READS, seed=11)
    client.put_object(Bucket="genomics", Key="SRR6052133_1.fastq.gz", Body=gzip.compress(data))
    return s3_server, data


def _index_keys(endpoint: str) -> list[str]:
    listed = _s3(endpoint).list_objects_v2(Bucket="genomics", Prefix="SRR6052133_1.fastq.gz.dataplug/")
    return [o["Key"] for o in listed.get("Contents", [])]


@pytest.mark.parametrize("backend", ["loky", "threading", "dask"])
def test_the_seed_example_on_each_joblib_backend(seed_object: tuple[str, bytes], backend: str) -> None:
    endpoint, data = seed_object
    from pyspark_dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches

    client = None
    if backend == "dask":
        from dask.distributed import Client

        client = Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None)
    try:
        IO_STATS.reset()
        # the seed's lines; only the endpoint is added (moto's, not AWS)
        co = CloudObject.from_s3(FASTQGZip, "s3://genomics/SRR6052133_1.fastq.gz",
                                 s3_config={"endpoint_url": endpoint})
        co.preprocess(parallel_config={"backend": backend})        # joblib's parallel_config
        data_slices = co.partition(partition_reads_batches, num_batches=200)
        built_here = IO_STATS.bytes_read.get(URI, 0)
    finally:
        if client is not None:
            client.close()
    assert any(k.endswith("manifest.json") for k in _index_keys(endpoint))
    size = len(gzip.compress(data))
    if backend == "loky":  # the map task ran in a worker process: this one read only the object's first bytes
        assert built_here < size
    else:  # threads of this process (dask with processes=False too): the scan's reads are counted here
        assert built_here >= size
    tables = [s.get() for s in data_slices]
    assert len(tables) == 200 and {t.num_rows for t in tables} == {READS // 200}
    assert [tuple(r.values()) for t in tables for r in t.to_pylist()] == fastq_reference(data)


def test_the_seed_example_verbatim_in_a_fresh_process(seed_object: tuple[str, bytes], tmp_path: Path) -> None:
    """The seed's five lines as written, with a Dask client running and the endpoint in boto3's own variable."""
    endpoint, data = seed_object
    script = tmp_path / "seed.py"
    script.write_text(
        "import hashlib, pickle, sys\n"
        "from dask.distributed import Client\n"
        "client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)\n"
        + SEED +
        "rows = [tuple(r.values()) for s in data_slices for r in s.get().to_pylist()]\n"
        "sys.stdout.buffer.write(pickle.dumps((len(data_slices), rows)))\n"
        "client.close()\n"
    )
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    count, rows = pickle.loads(run.stdout)
    assert count == 200 and rows == fastq_reference(data)
    assert any(k.endswith("manifest.json") for k in _index_keys(endpoint))


def test_preprocess_is_idempotent_and_force_rebuilds(seed_object: tuple[str, bytes]) -> None:
    endpoint, _ = seed_object
    co = CloudObject.from_s3("fastq", URI, s3_config={"endpoint_url": endpoint})
    first = co.preprocess(parallel_config={"backend": "threading"})
    again = co.preprocess(parallel_config={"backend": "threading"})
    forced = co.preprocess(parallel_config={"backend": "threading", "n_jobs": 1}, force=True)
    assert (first.indexed, again.skipped, forced.indexed) == ([URI], [URI], [URI])
    assert first.records == forced.records == READS


def test_cloud_dataset_over_a_prefix_and_a_glob(s3_store: Any) -> None:
    from pyspark_dataplug.formats.genomics.fastq import (
        FASTQGZip,
        partition_reads_batches,
        partition_sequences_per_chunk,
    )

    blobs = {f"run1/lane{i}.fastq.gz": make_fastq(300 + 50 * i, seed=20 + i) for i in range(3)}
    blobs["run1/extra.fastq"] = make_fastq(120, seed=30)
    for name, data in blobs.items():
        s3_store.put(name, gzip.compress(data) if name.endswith(".gz") else data)
    s3_config = {"endpoint_url": s3_store.options["endpointUrl"]}
    ds = CloudDataset.from_s3(FASTQGZip, f"{s3_store.root}/run1/", s3_config=s3_config)
    summary = ds.preprocess(parallel_config={"backend": "loky", "n_jobs": 2})
    assert len(summary.indexed) == 4 and summary.records == sum(300 + 50 * i for i in range(3)) + 120
    assert len(ds.uris) == 4

    ref = [r for u in ds.uris for r in fastq_reference(blobs[u[len(s3_store.root) + 1:]])]
    for n in (1, 5, 40):
        slices = ds.partition(partition_reads_batches, num_batches=n)
        assert n <= len(slices) <= n + 3  # a batch across an object boundary is one slice in each
        assert {s.uri for s in slices} == set(ds.uris)
        assert _rows(slices) == ref
    per = ds.partition(partition_sequences_per_chunk, seq_per_chunk=100)
    assert _rows(per) == ref and max(len(s.get()) for s in per) <= 100

    gz_only = CloudDataset.from_s3(FASTQGZip, f"{s3_store.root}/run1/*.fastq.gz", s3_config=s3_config)
    assert sorted(gz_only.preprocess().skipped) == sorted(gz_only.uris)  # indexed above already
    assert len(gz_only.uris) == 3 and all(u.endswith(".gz") for u in gz_only.uris)
    with pytest.raises(OptionError, match="names 4 objects, not one.*CloudDataset"):
        CloudObject.from_s3(FASTQGZip, f"{s3_store.root}/run1/", s3_config=s3_config).preprocess()
    with pytest.raises(OptionError, match="s3:// URIs"):
        CloudDataset.from_s3(FASTQGZip, "/tmp/run1/")


def test_slices_pickle_without_secrets(s3_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark_dataplug.formats.genomics.fastq import partition_reads_batches

    secret, key_id, token = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYsecret", "AKIAIOSFODNN7SEEDAPI", "FwoGZXIvYXdzEXAMPLEtoken"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    data = make_fastq(400, seed=12)
    uri = s3_store.put("secret/reads.fastq.gz", gzip.compress(data))
    co = CloudObject.from_s3("fastq", uri, s3_config={"endpoint_url": s3_store.options["endpointUrl"]})
    co.preprocess(parallel_config={"backend": "threading"})
    slices = co.partition(partition_reads_batches, num_batches=4)
    blobs = [pickle.dumps(s) for s in slices]
    for blob in blobs:
        for leaked in (secret, key_id, token):
            assert leaked.encode() not in blob
        assert s3_store.options["endpointUrl"].encode() in blob  # the endpoint does travel: it is no secret
    assert _rows([pickle.loads(b) for b in blobs]) == fastq_reference(data)


@pytest.mark.parametrize("config, message", [
    ({"backed": "dask"}, r"key\(s\) 'backed' are not joblib.parallel_config arguments; valid: backend, "),
    ({"backend": "spark"}, r"backend 'spark' is not a joblib backend; valid: dask, loky, "),
    ({"backend": "loky", "scheduler_host": "x:8786"}, r"'scheduler_host' are not .* nor 'loky' backend ones"),
    ("dask", r"must be a dict of joblib.parallel_config arguments"),
    ({"backend": "dask"}, r"To use Joblib with Dask first create a Dask Client: from dask.distributed import"),
])
def test_bad_parallel_config_is_a_clear_error(tmp_path: Path, config: Any, message: str) -> None:
    path = tmp_path / "r.fastq"
    path.write_bytes(make_fastq(50, seed=1))
    with pytest.raises(OptionError, match=message):
        CloudObject.from_path("fastq", str(path)).preprocess(parallel_config=config)
    assert not (tmp_path / "r.fastq.dataplug").exists()  # refused before anything was built


def test_parallel_config_and_spark_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="parallel_config \\(joblib\\) or spark, not both"):
        CloudObject.from_path("text", str(tmp_path / "x.txt")).preprocess(parallel_config={}, spark=object())


def test_a_missing_backend_library_names_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # how Python hides a module: its import raises ImportError
    with pytest.raises(MissingDependencyError, match=r"joblib's 'ray' backend .*pip install 'pyspark-dataplug\[ray\]'"):
        CloudObject.from_path("text", str(tmp_path / "x.txt")).preprocess(parallel_config={"backend": "ray"})


def test_an_enclosing_joblib_config_applies(tmp_path: Path) -> None:
    """Without parallel_config, preprocess runs under whatever joblib.parallel_config encloses it."""
    import joblib

    path = tmp_path / "t.txt"
    data = make_text(3000)
    path.write_bytes(data)
    co = CloudObject.from_path("text", str(path), indexSpacing="4k")
    IO_STATS.reset()
    with joblib.parallel_config(backend="loky", n_jobs=2):
        summary = co.preprocess()
    assert summary.records == 3000
    assert IO_STATS.bytes_read.get(co.uri, 0) < len(data)  # the chunks were scanned by loky's workers


def test_the_layout_modules_are_names_over_the_flat_ones() -> None:
    for module, names in LAYOUT.items():
        mod = importlib.import_module(f"pyspark_dataplug.formats.{module}")
        flat = importlib.import_module(f"pyspark_dataplug.formats.{module.split('.')[1]}"
                                       if module not in ("geospatial.laspc", "compressed.gzipped")
                                       else {"geospatial.laspc": "pyspark_dataplug.formats.las",
                                             "compressed.gzipped": "pyspark_dataplug.formats.text"}[module])
        assert set(names) <= set(mod.__all__), module
        for name in mod.__all__:
            assert getattr(mod, name) is getattr(flat, name), f"{module}.{name} is a second copy"
    from pyspark_dataplug.formats import fastq, genomics

    assert genomics.fastq.FASTQGZip.name == fastq.FASTQ.name == "fastq"
    sig = inspect.signature(genomics.fastq.partition_sequences_per_chunk)
    assert list(sig.parameters) == ["cloud_object", "seq_per_chunk", "strategy"]
    assert list(inspect.signature(importlib.import_module("pyspark_dataplug.formats.geospatial.cog")
                                  .grid_partition_strategy).parameters) == ["cloud_object", "n_splits"]


def test_the_layout_imports_without_any_format_extra() -> None:
    """laspy, lazrs, imagecodecs, tifffile, casacore and the engines blocked: every layout module imports."""
    from test_packaging import BLOCKER

    code = BLOCKER.format(blocked=("laspy", "lazrs", "imagecodecs", "tifffile", "casacore", "rasterio", "ray",
                                   "dask", "distributed")) + (
        "import importlib\n"
        f"for m in {sorted(LAYOUT)!r}:\n"
        "    mod = importlib.import_module('pyspark_dataplug.formats.' + m)\n"
        "    [getattr(mod, n) for n in mod.__all__]\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in BLOCKED))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]"


def _whole(co: CloudObject) -> list[tuple]:
    return _rows(co.slices(num_slices=1))


def test_the_originals_partition_functions_cut_exactly(tmp_path: Path) -> None:
    from pyspark_dataplug.formats.compressed.gzipped import GZipText, partition_chunk_lines, partition_num_chunks
    from pyspark_dataplug.formats.generic import csv, text

    (tmp_path / "t.txt").write_bytes(make_text(2000, seed=4))
    co = CloudObject.from_path(text.UTF8Text, str(tmp_path / "t.txt"), indexSpacing="2k")
    co.preprocess()
    ref = _whole(co)
    words = co.partition(text.whole_words_strategy, num_chunks=7)
    assert len(words) == 7 and _rows(words) == ref
    assert _rows(co.partition(text.whole_words_strategy, 3, padding=64)) == ref  # Dataplug's padding is taken

    (tmp_path / "g.txt.gz").write_bytes(gzip.compress(make_text(1000, seed=5)))
    gz = CloudObject.from_path(GZipText, str(tmp_path / "g.txt.gz"))
    gz.preprocess()
    gz_ref = _whole(gz)
    expand = gz.partition(partition_chunk_lines, lines_per_chunk=300)
    merge = gz.partition(partition_chunk_lines, 300, strategy="merge")
    assert [len(s.get()) for s in expand] == [250] * 4 and [len(s.get()) for s in merge] == [333, 333, 334]
    assert _rows(expand) == _rows(merge) == gz_ref
    assert len(gz.partition(partition_num_chunks, n_chunks=6)) == 6
    with pytest.raises(OptionError, match="strategy must be 'expand' or 'merge'"):
        gz.partition(partition_chunk_lines, 300, strategy="split")

    (tmp_path / "c.csv").write_bytes(make_csv(1500))
    cc = CloudObject.from_path(csv.CSV, str(tmp_path / "c.csv"), header=True, indexSpacing="1k")
    cc.preprocess()
    c_ref = _whole(cc)
    size = (tmp_path / "c.csv").stat().st_size
    by_size = cc.partition(csv.partition_chunk_size, chunk_size=size // 5)
    assert 5 <= len(by_size) <= 6 and _rows(by_size) == c_ref
    assert _rows(cc.partition(csv.partition_num_chunks, num_chunks=4, padding=256)) == c_ref

    for bad in (0, -3, 2.5, "8", True):
        with pytest.raises(OptionError, match="num_chunks must be a positive integer"):
            co.partition(text.whole_words_strategy, num_chunks=bad)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_batches'; it takes num_chunks, padding"):
        co.partition(text.whole_words_strategy, num_batches=3)  # the original's own keyword, checked like Python
