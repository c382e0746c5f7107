"""End to end through Spark: rows equal Spark's own readers (or Biopython) for any partition count."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import multiset, read_dataplug
from data import fastq_reference, make_csv, make_fastq, make_text

import pyspark_dataplug

PARTITIONS = [1, 2, 7, 64]
MORE_THAN_RECORDS = 100  # used on files of fewer records (each record is then a Spark task)
SPACING = {"indexSpacing": "4k"}  # many index points in small files: every boundary path is exercised


def _index(spark, store, uri, fmt, **opts):
    summary = pyspark_dataplug.build_index(spark, uri, format=fmt, force=True, **store.options, **SPACING, **opts)
    expected = uri if uri.startswith("s3://") else str(Path(uri).resolve())
    assert summary.indexed == [expected] and not summary.skipped
    return summary


def test_fastq_matches_biopython(spark, store):
    data = make_fastq(3000)
    uri = store.put("reads.fastq", data)
    summary = _index(spark, store, uri, "fastq")
    assert summary.records == 3000
    expected = multiset(fastq_reference(data))
    for n in PARTITIONS:
        df = read_dataplug(spark, uri, {**store.options, "partitions": n})
        rows = df.collect()
        assert multiset(rows) == expected, f"partitions={n}"
        assert df.rdd.getNumPartitions() == n
    # the default strategy is bytes; equal record counts must be exact too
    df = read_dataplug(spark, uri, {**store.options, "partitions": 13, "strategy": "records"})
    assert multiset(df.collect()) == expected
    assert df.count() == 3000
    # more partitions than records: one read per partition, none empty, none lost
    small = make_fastq(37, seed=3)
    small_uri = store.put("small.fastq", small)
    _index(spark, store, small_uri, "fastq")
    for strategy in ("records", "bytes"):
        df = read_dataplug(spark, small_uri, {**store.options, "partitions": MORE_THAN_RECORDS, "strategy": strategy})
        if strategy == "records":
            assert df.rdd.getNumPartitions() == 37
        assert multiset(df.collect()) == multiset(fastq_reference(small)), strategy


def test_text_matches_spark_text(spark, store, tmp_path: Path):
    data = make_text(5000, crlf=True, trailing_newline=False)
    uri = store.put("notes.txt", data)
    _index(spark, store, uri, "text")
    local = tmp_path / "copy.txt"
    local.write_bytes(data)
    expected = multiset(spark.read.text(str(local)).collect())
    for n in PARTITIONS:
        rows = read_dataplug(spark, uri, {**store.options, "partitions": n}).collect()
        assert multiset(rows) == expected, f"partitions={n}"
    small = make_text(41, crlf=False)
    small_uri = store.put("small.txt", small)
    _index(spark, store, small_uri, "text")
    local.write_bytes(small)
    rows = read_dataplug(spark, small_uri, {**store.options, "partitions": MORE_THAN_RECORDS}).collect()
    assert multiset(rows) == multiset(spark.read.text(str(local)).collect())


@pytest.mark.parametrize("rfc", [False, True], ids=["backslash-escape", "rfc4180"])
def test_csv_matches_spark_csv(spark, store, tmp_path: Path, rfc: bool):
    data = make_csv(1500, rfc_quotes=rfc)
    uri = store.put("table.csv", data)
    opts = {"header": "true", "inferSchema": "true"}
    if rfc:
        opts["escape"] = '"'
    _index(spark, store, uri, "csv", **opts)
    local = tmp_path / "copy.csv"
    local.write_bytes(data)
    ref_df = spark.read.options(multiLine="true", **opts).csv(str(local))
    expected = multiset(ref_df.collect())
    for n in [1, 7, 64]:
        df = read_dataplug(spark, uri, {**store.options, **opts, "partitions": n})
        assert df.schema == ref_df.schema
        assert multiset(df.collect()) == expected, f"partitions={n}"
    # without inferSchema every column is a string, as with Spark
    plain = {"header": "true", **({"escape": '"'} if rfc else {})}
    df = read_dataplug(spark, uri, {**store.options, **plain, "partitions": 5})
    ref = spark.read.options(multiLine="true", **plain).csv(str(local))
    assert df.schema == ref.schema
    assert multiset(df.collect()) == multiset(ref.collect())


def test_multi_file_dataset_spans_partitions(spark, store, tmp_path: Path):
    uris, expected = [], []
    for i in range(4):
        data = make_fastq(200 + 37 * i, seed=i)
        uris.append(store.put(f"run/part-{i}.fastq", data))
        expected += fastq_reference(data)
    # an empty object is part of the dataset and contributes no rows
    uris.append(store.put("run/part-empty.fastq", b""))
    summary = pyspark_dataplug.build_index(spark, uris, format="fastq", **store.options, **SPACING)
    assert len(summary.indexed) == 5
    folder = uris[0].rsplit("/", 1)[0]
    for n in (1, 3, 64):
        rows = read_dataplug(spark, folder, {**store.options, "format": "fastq", "partitions": n}).collect()
        assert multiset(rows) == multiset(expected), f"partitions={n}"
    glob = folder + "/part-*.fastq"
    df = read_dataplug(spark, glob, {**store.options, "partitions": 2})
    assert df.rdd.getNumPartitions() == 2  # several objects per partition, not one task per file
    assert df.count() == len(expected)
    # several paths in one load()
    rows = read_dataplug(spark, uris[:2], {**store.options, "format": "fastq"}).collect()
    assert multiset(rows) == multiset(expected[: 200 + 237])


def test_sql_view_and_sidecar_reuse(spark, local_store):
    data = make_fastq(500, seed=11)
    uri = local_store.put("sql/reads.fastq", data)
    first = pyspark_dataplug.build_index(spark, uri, format="fastq")
    again = pyspark_dataplug.build_index(spark, uri, format="fastq")
    assert first.indexed == [uri] and again.skipped == [uri] and not again.indexed  # idempotent
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW reads USING dataplug OPTIONS (path '{uri}', format 'fastq')")
    n = spark.sql("SELECT count(*) AS n FROM reads WHERE length(sequence) > 100").collect()[0]["n"]
    assert n == sum(1 for r in fastq_reference(data) if len(r[2]) > 100)


def test_index_location_elsewhere(spark, store, tmp_path: Path):
    data = make_text(300)
    uri = store.put("ro/data.txt", data)
    location = str(tmp_path / "indexes")
    pyspark_dataplug.build_index(spark, uri, format="text", indexLocation=location, **store.options)
    rows = read_dataplug(spark, uri, {**store.options, "indexLocation": location, "partitions": 3}).collect()
    (tmp_path / "copy.txt").write_bytes(data)
    assert multiset(rows) == multiset(spark.read.text(str(tmp_path / "copy.txt")).collect())
    assert any(p.name == "manifest.json" for p in Path(location).rglob("*"))


def test_missing_index_scan_fallback(spark, store, tmp_path: Path):
    data = make_csv(200, header=True)
    uri = store.put("noindex.csv", data)
    local = tmp_path / "c.csv"
    local.write_bytes(data)
    df = read_dataplug(spark, uri, {**store.options, "header": "true", "missingIndex": "scan"})
    ref = spark.read.options(header="true", multiLine="true").csv(str(local))
    assert df.rdd.getNumPartitions() == 1
    assert multiset(df.collect()) == multiset(ref.collect())


def test_errors_reach_the_spark_user(spark, local_store):
    data = make_fastq(50, seed=12)
    uri = local_store.put("err/reads.fastq", data)
    with pytest.raises(Exception, match=r"dataplug index --format fastq .*reads\.fastq"):
        read_dataplug(spark, uri, {}).collect()
    pyspark_dataplug.build_index(spark, uri, format="fastq")
    with pytest.raises(Exception, match=r"unknown option\(s\) partitons.*valid options"):
        read_dataplug(spark, uri, {"partitons": 3}).collect()
    with pytest.raises(Exception, match="bad value 'many' for option 'partitions'"):
        read_dataplug(spark, uri, {"partitions": "many"}).collect()
    local_store.put("err/reads.fastq", make_fastq(60, seed=12))  # the object changes after indexing
    with pytest.raises(Exception, match="changed since its fastq index was built"):
        read_dataplug(spark, uri, {}).collect()
    bad = local_store.put("err/bad.fastq", data.replace(b"\n+\n", b"\n-\n", 1))
    # a malformed record is found when the object is indexed, with its offset, not in some later task
    with pytest.raises(Exception, match=r"bad\.fastq at byte \d+: malformed FASTQ record"):
        pyspark_dataplug.build_index(spark, bad, format="fastq")


def test_register_turns_spark_confs_into_defaults(spark, local_store, tmp_path: Path):
    data = make_fastq(120, seed=60)
    uri = local_store.put("conf/reads.fastq", data)
    location = str(tmp_path / "conf-indexes")
    pyspark_dataplug.build_index(spark, uri, format="fastq", indexLocation=location)
    spark.conf.set("spark.dataplug.indexLocation", location)
    try:
        pyspark_dataplug.register(spark)
        df = read_dataplug(spark, uri, {"partitions": 3})  # no indexLocation option: the conf supplies it
        assert multiset(df.collect()) == multiset(fastq_reference(data))
    finally:
        spark.conf.unset("spark.dataplug.indexLocation")
        pyspark_dataplug.register(spark)  # back to no conf defaults for the other tests
    with pytest.raises(Exception, match="no fastq index"):
        read_dataplug(spark, uri, {}).collect()
