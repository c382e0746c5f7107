"""Seeded differential fuzz: dataplug against Spark's own readers (CSV, text) and Biopython (FASTQ).

Hundreds of generated files (tests/fuzz_data.py), each read through slices at several tiny index
spacings and slice counts, plain and gzip, and a group of them through Spark: every row must equal the
reference, and no file may fail that the reference reads. The seeds are fixed, so a failure names a file
that reproduces it.
"""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import multiset, read_dataplug
from data import fastq_reference
from fuzz_data import DIALECTS, make_csv, make_fastq, make_text

import pyspark_dataplug
from pyspark_dataplug import CloudObject

FILES_PER_DIALECT = 40
SPACINGS = ["7", "23", "64", "300"]  # bytes: an index point every few records, or every few bytes


def _rows(co: CloudObject, strategy: str, n: int) -> list[tuple]:
    return [tuple(r.values()) for s in co.slices(strategy=strategy, num_slices=n) for r in s.get().to_pylist()]


def _check_slices(path: str, options: dict, expected: Counter, index: int) -> None:
    """One object at one spacing: every slice count and strategy gives exactly the reference rows."""
    spacing = SPACINGS[index % len(SPACINGS)]
    co = CloudObject(options["format"], path, {**options, "indexSpacing": spacing})
    co.preprocess(force=True)
    for strategy, n in (("records", 1), ("records", 3 + index % 5), ("bytes", 1000)):
        got = multiset(_rows(co, strategy, n))
        assert got == expected, f"{path} indexSpacing={spacing} {strategy} x{n}: {_diff(got, expected)}"


def _diff(got: Counter, want: Counter) -> str:
    extra, missing = got - want, want - got
    return f"unexpected {list(extra.items())[:3]}, missing {list(missing.items())[:3]}"


def _spark_rows_per_file(df) -> dict[str, Counter]:
    from pyspark.sql import functions as F

    out: dict[str, Counter] = defaultdict(Counter)
    for r in df.withColumn("_file", F.input_file_name()).collect():
        name = r["_file"].rsplit("/", 1)[-1]
        out[name][tuple(r)[:-1]] += 1
    return out


@pytest.mark.parametrize("group", range(len(DIALECTS)))
def test_csv_against_spark(spark, tmp_path: Path, group: int):
    d = DIALECTS[group]
    width = 1 + group % 5
    folder = tmp_path / f"csv{group}"
    folder.mkdir()
    files = {}
    for i in range(FILES_PER_DIALECT):
        name = f"f{i:03d}.csv"
        files[name] = make_csv(1000 * group + i, d, rows=(i * 7) % 45, width=width)
        (folder / name).write_bytes(files[name])
    opts = d.options()
    ref = spark.read.options(multiLine="true", **opts).csv(str(folder))
    expected = _spark_rows_per_file(ref)
    for i, name in enumerate(sorted(files)):
        _check_slices(str(folder / name), {"format": "csv", **opts}, expected[name], i)
    # the same files as one dataset through Spark, at a tiny spacing and several partition counts
    pyspark_dataplug.build_index(spark, str(folder), format="csv", force=True, indexSpacing="16", **opts)
    whole = multiset(ref.collect())
    for n in (1, 7):
        df = read_dataplug(spark, str(folder), {"format": "csv", **opts, "partitions": n, "strategy": "records"})
        assert df.schema == ref.schema
        assert multiset(df.collect()) == whole, f"group {group} partitions={n}"
    # one bigger object in gzip, cut at seek points every 64 KiB
    big = make_csv(99_000 + group, d, rows=12_000, width=width)
    (tmp_path / "big.csv").write_bytes(big)
    gz_path = tmp_path / "big.csv.gz"
    gz_path.write_bytes(gzip.compress(big))
    want = multiset(spark.read.options(multiLine="true", **opts).csv(str(tmp_path / "big.csv")).collect())
    co = CloudObject("csv", str(gz_path), {**opts, "gzipSpacing": "64k"})
    co.preprocess()
    assert len(co.dataset().indexes[0].tables["seeks"]) >= 2  # an edge inside the stream, not only at 0
    for strategy, n in (("records", 5), ("bytes", 100)):
        assert multiset(_rows(co, strategy, n)) == want, f"gzip group {group} {strategy}"


def test_text_against_spark(spark, tmp_path: Path):
    folder = tmp_path / "text"
    folder.mkdir()
    names = []
    for i in range(60):
        name = f"t{i:03d}.txt"
        (folder / name).write_bytes(make_text(i, lines=(i * 5) % 70))
        names.append(name)
    expected = _spark_rows_per_file(spark.read.text(str(folder)))
    for i, name in enumerate(names):
        _check_slices(str(folder / name), {"format": "text"}, expected[name], i)
    big = make_text(7777, lines=60_000)
    (tmp_path / "big.txt").write_bytes(big)
    (tmp_path / "big.txt.gz").write_bytes(gzip.compress(big))
    want = multiset(spark.read.text(str(tmp_path / "big.txt")).collect())
    co = CloudObject("text", str(tmp_path / "big.txt.gz"), {"gzipSpacing": "64k"})
    co.preprocess()
    assert multiset(_rows(co, "records", 11)) == want


def test_fastq_against_biopython(tmp_path: Path):
    for i in range(120):
        data = make_fastq(i, reads=i % 30)
        path = tmp_path / f"r{i:03d}.fastq"
        path.write_bytes(data)
        _check_slices(str(path), {"format": "fastq"}, multiset(fastq_reference(data)), i)
    big = make_fastq(4242, reads=20_000)
    (tmp_path / "big.fastq.gz").write_bytes(gzip.compress(big))
    co = CloudObject("fastq", str(tmp_path / "big.fastq.gz"), {"gzipSpacing": "64k"})
    co.preprocess()
    assert _rows(co, "records", 13) == fastq_reference(big)
