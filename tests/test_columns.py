"""The ``columns`` option: only the named columns are decoded and cross into Spark, for every format."""

from __future__ import annotations

import pytest
from conftest import multiset, read_dataplug
from data import fastq_reference, make_csv, make_fastq

import pyspark_dataplug
from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import OptionError


def test_columns_through_the_slice_api(local_store):
    data = make_fastq(300, seed=70)
    uri = local_store.put("c.fastq", data)
    CloudObject("fastq", uri, {"indexSpacing": "4k"}).preprocess()
    ref = fastq_reference(data)
    for spec, idx in (("sequence", [2]), ("Quality, ID", [3, 0]), ("description,sequence", [1, 2])):
        co = CloudObject("fastq", uri, {"columns": spec})
        tables = [s.get() for s in co.slices(num_slices=5)]
        names = [n for n in co.dataset().schema.names]
        assert all(t.column_names == names for t in tables)
        rows = [tuple(r.values()) for t in tables for r in t.to_pylist()]
        assert rows == [tuple(r[i] for i in idx) for r in ref], spec
    with pytest.raises(OptionError, match="no column 'seq'; valid columns: id, description, sequence, quality"):
        CloudObject("fastq", uri, {"columns": "seq"}).slices()
    with pytest.raises(OptionError, match="names a column twice"):
        CloudObject("fastq", uri, {"columns": "id,ID"}).slices()


def test_columns_through_spark_for_every_format(spark, store, tmp_path):
    fq = make_fastq(500, seed=71)
    fq_uri = store.put("c.fastq", fq)
    pyspark_dataplug.build_index(spark, fq_uri, format="fastq", **store.options)
    df = read_dataplug(spark, fq_uri, {**store.options, "columns": "quality,id", "partitions": 3})
    assert df.columns == ["quality", "id"]
    assert multiset(df.collect()) == multiset((r[3], r[0]) for r in fastq_reference(fq))

    table = make_csv(400, seed=72)
    csv_uri = store.put("c.csv", table)
    opts = {"header": "true", "inferSchema": "true"}
    pyspark_dataplug.build_index(spark, csv_uri, format="csv", **store.options, **opts)
    (tmp_path / "c.csv").write_bytes(table)
    ref = spark.read.options(multiLine="true", **opts).csv(str(tmp_path / "c.csv")).select("score", "name")
    df = read_dataplug(spark, csv_uri, {**store.options, **opts, "columns": "score,name", "partitions": 2})
    assert df.schema == ref.schema
    assert multiset(df.collect()) == multiset(ref.collect())

    text_uri = store.put("c.txt", b"a\nb\n")
    pyspark_dataplug.build_index(spark, text_uri, format="text", **store.options)
    assert read_dataplug(spark, text_uri, {**store.options, "columns": "value"}).collect() == [("a",), ("b",)]
