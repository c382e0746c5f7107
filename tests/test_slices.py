"""The engine-agnostic API, without Spark: exact slices, pickling, other processes, I/O accounting."""

from __future__ import annotations

import multiprocessing
import pickle
import re

import pytest
from conftest import multiset
from data import fastq_reference, make_csv, make_fastq, make_text

from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import FormatError, IndexMissingError, OptionError, StaleIndexError
from pyspark_dataplug.formats.fastq import FASTQ, partition_bytes_batches, partition_reads_batches
from pyspark_dataplug.formats.text import Text, partition_lines_batches
from pyspark_dataplug.storage import IO_STATS


def _rows(slices):
    return [tuple(r.values()) for s in slices for r in s.get().to_pylist()]


@pytest.mark.parametrize("spacing", ["1k", "64k"])
def test_fastq_slices_exact_for_any_count(store, spacing):
    data = make_fastq(1200, seed=2)
    uri = store.put("a.fastq", data)
    co = CloudObject(FASTQ, uri, {**store.options, "indexSpacing": spacing})
    co.preprocess()
    ref = fastq_reference(data)
    # every count on local files; over HTTP the fine-grained ones would be thousands of GETs for nothing new
    counts = (1, 2, 3, 7, 64, 1199, 1200, 5000) if store.kind == "local" else (1, 7, 64)
    for n in counts:
        slices = co.partition(partition_reads_batches, num_batches=n)
        sizes = [s.context["records"] for s in slices]
        assert len(slices) == min(n, 1200)
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1  # never empty or inverted batches
        assert _rows(slices) == ref, f"num_batches={n}"
        assert _rows(co.partition(partition_bytes_batches, num_batches=n)) == ref


def test_seed_example_from_s3(s3_store):
    data = make_fastq(400, seed=9)
    uri = s3_store.put("SRR6052133_1.fastq", data)
    co = CloudObject.from_s3(FASTQ, uri, s3_config={"endpoint_url": s3_store.options["endpointUrl"],
                                                     "region_name": "us-east-1"})
    co.preprocess()
    data_slices = co.partition(partition_reads_batches, num_batches=20)
    reads = data_slices[0].get()
    assert reads.column_names == ["id", "description", "sequence", "quality"]
    assert [tuple(r.values()) for r in reads.to_pylist()] == fastq_reference(data)[:20]
    with pytest.raises(OptionError, match="aws_secret_access_key"):
        CloudObject.from_s3(FASTQ, uri, s3_config={"aws_secret_access_key": "x"})


def _evaluate(blob: bytes) -> list[tuple]:
    s = pickle.loads(blob)
    return [tuple(r.values()) for r in s.get().to_pylist()]


def test_slices_pickle_and_run_in_other_processes(store):
    data = make_fastq(500, seed=4)
    uri = store.put("p.fastq", data)
    co = CloudObject.from_path(FASTQ, uri, **store.options, indexSpacing="2k")
    co.preprocess()
    slices = co.partition(partition_reads_batches, num_batches=6)
    blobs = [pickle.dumps(s) for s in slices]
    for b in blobs:
        assert b"testing" not in b  # no credentials travel
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.map(_evaluate, blobs)
    assert [r for p in parts for r in p] == fastq_reference(data)


def test_replanning_reads_no_data(store):
    data = make_text(4000)
    uri = store.put("t.txt", data)
    co = CloudObject(Text, uri, {**store.options, "indexSpacing": "2k"})
    co.preprocess()
    IO_STATS.reset()
    fresh = CloudObject(Text, uri, store.options)
    for n in (10, 100, 1000):
        fresh.partition(partition_lines_batches, num_batches=n)
    data_uri = fresh.uri
    assert IO_STATS.bytes_read.get(data_uri, 0) == 0  # only the index was read
    assert sum(IO_STATS.bytes_read.values()) > 0


def test_task_reads_only_its_range(store):
    data = make_fastq(2000, seed=5)
    uri = store.put("r.fastq", data)
    co = CloudObject(FASTQ, uri, {**store.options, "indexSpacing": "4k"})
    co.preprocess()
    slices = co.partition(partition_reads_batches, num_batches=10)
    IO_STATS.reset()
    slices[4].get()
    got = sum(IO_STATS.bytes_read.values())
    assert got == slices[4].nbytes
    assert got < len(data) / 10 + 2 * 4096 + 1024  # its records plus at most two index spacings


def test_stale_index_is_refused(store):
    data = make_fastq(300, seed=6)
    uri = store.put("s.fastq", data)
    co = CloudObject(FASTQ, uri, store.options)
    co.preprocess()
    slices = co.partition(partition_reads_batches, num_batches=3)
    store.put("s.fastq", make_fastq(301, seed=6))  # rewritten after indexing
    with pytest.raises(StaleIndexError, match="s.fastq"):
        slices[1].get()  # a slice planned before the change
    with pytest.raises(StaleIndexError, match="dataplug index --format fastq --force"):
        CloudObject(FASTQ, uri, store.options).partition(partition_reads_batches, num_batches=3)


def test_missing_index_names_the_command(store):
    uri = store.put("m.fastq", make_fastq(10))
    with pytest.raises(IndexMissingError, match=r"dataplug index --format fastq .*m\.fastq"):
        CloudObject(FASTQ, uri, store.options).partition(partition_reads_batches, num_batches=2)


@pytest.mark.parametrize(
    "mangle, what",
    [
        (lambda d: d.replace(b"@SRR8.5 ", b"SRR8.5 ", 1), "does not start with '@'"),
        (lambda d: d.replace(b"\n+\n", b"\n-\n", 3), "does not start with '+'"),
        (lambda d: d[: d.index(b"\n@SRR8.7") - 3] + d[d.index(b"\n@SRR8.7"):], "lengths differ"),
        (lambda d: d[: d.rindex(b"\n+\n")], "truncated FASTQ record"),
    ],
    ids=["header", "plus", "length", "truncated"],
)
def test_malformed_fastq_names_object_and_offset(local_store, mangle, what):
    data = mangle(make_fastq(40, seed=8))
    uri = local_store.put("bad.fastq", data)
    co = CloudObject(FASTQ, uri, {"indexSpacing": "1k"})
    with pytest.raises(FormatError, match=re.escape(what)) as info:
        co.preprocess()
        for s in co.partition(partition_reads_batches, num_batches=3):
            s.get()
    assert info.value.uri == uri and info.value.offset is not None
    assert "bad.fastq at byte" in str(info.value)


def test_unknown_option_and_bad_values_list_valid_ones(local_store):
    uri = local_store.put("o.fastq", make_fastq(5))
    with pytest.raises(OptionError, match="valid options: .*partitions"):
        CloudObject(FASTQ, uri, {"partitionz": 3}).preprocess()
    with pytest.raises(OptionError, match="valid values: error, scan"):
        CloudObject(FASTQ, uri, {"missingIndex": "maybe"}).preprocess()
    with pytest.raises(OptionError, match="unknown format 'fastb'.*copc, csv, fasta, fastq, imzml, las, laz, ms, text"):
        CloudObject("fastb", uri).preprocess()
    with pytest.raises(FormatError, match=r"o\.fastq at byte 0: sequence before the first '>' header"):
        CloudObject("fasta", uri).preprocess()  # a FASTQ is no FASTA: a clear error, not empty rows
    co = CloudObject(FASTQ, uri)
    co.preprocess()
    with pytest.raises(OptionError, match="valid: bytes, records"):
        co.slices(strategy="chunks", num_slices=2)


def test_csv_quoted_newlines_and_header_per_object(local_store):
    import csv
    import io

    # several objects, each with its own header line: every header is skipped, from whichever slice
    uris, ref = [], []
    for i in range(3):
        data = make_csv(100 + 50 * i, seed=i, rfc_quotes=True)
        uris.append(local_store.put(f"q/part-{i}.csv", data))
        rows = [tuple(v if v != "" else None for v in r) for r in csv.reader(io.StringIO(data.decode()))][1:]
        ref += [r for r in rows if r]
    opts = {"format": "csv", "header": True, "escape": '"', "indexSpacing": "1k"}
    for uri in uris:
        CloudObject("csv", uri, opts).preprocess()
    from pyspark_dataplug.plan import open_dataset

    ds = open_dataset(opts, paths=[uris[0].rsplit("/", 1)[0]])
    for n in (1, 2, 7, 300, 1000):
        rows = [tuple(r.values()) for part in ds.plan(partitions=n) for s in part for r in s.get().to_pylist()]
        assert multiset(rows) == multiset(ref), n
        assert not any(r[0] == "id" for r in rows)


def test_empty_and_edge_objects(local_store):
    for name, data, expected in [
        ("empty.txt", b"", []),
        ("nl.txt", b"\n", [""]),
        ("two.txt", b"a\n\n", ["a", ""]),
        ("noeol.txt", b"a\r\nb", ["a", "b"]),
    ]:
        uri = local_store.put(name, data)
        co = CloudObject(Text, uri)
        co.preprocess()
        rows = [r[0] for r in _rows(co.slices(num_slices=4))]
        assert rows == expected, name


def test_rebuild_replaces_the_index_files_of_two_builds_back(local_store):
    from pathlib import Path

    uri = local_store.put("rebuild.fastq", make_fastq(100, seed=13))
    co = CloudObject(FASTQ, uri)
    co.preprocess()
    folder = Path(uri + ".dataplug/fastq")
    first = {p.name for p in folder.iterdir()} - {"manifest.json"}
    co.preprocess(force=True)
    second = {p.name for p in folder.iterdir()} - {"manifest.json"}
    co.preprocess(force=True)
    third = {p.name for p in folder.iterdir()} - {"manifest.json"}
    # one generation is kept for reads that loaded the previous manifest; two back is deleted
    assert len(first) == 1 and len(second) == 2 and first < second
    assert len(third) == 2 and not first & third and second & third
    assert _rows(co.slices(num_slices=3)) == fastq_reference(make_fastq(100, seed=13))


def test_environment_variables_are_option_defaults(local_store, tmp_path, monkeypatch):
    uri = local_store.put("env.fastq", make_fastq(50, seed=61))
    location = str(tmp_path / "env-indexes")
    monkeypatch.setenv("DATAPLUG_INDEX_LOCATION", location)
    CloudObject(FASTQ, uri).preprocess()
    from pathlib import Path

    assert any(p.name == "manifest.json" for p in Path(location).rglob("*"))
    assert len(_rows(CloudObject(FASTQ, uri).slices(num_slices=2))) == 50
    monkeypatch.setenv("DATAPLUG_PARTITIONS", "nope")
    with pytest.raises(OptionError, match="bad value 'nope' for option 'partitions'"):
        CloudObject(FASTQ, uri).slices()
