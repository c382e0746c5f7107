"""Regression tests for the correctness faults a review reproduced (issue 13), each on the exact case.

Expected rows are Spark's (``spark.read.csv(multiLine=True)`` on PySpark 4.3, measured; the fuzz in
test_fuzz.py keeps comparing against Spark itself) or Biopython's; every test reads at many tiny index
spacings, so each edge case also falls on a chunk edge.
"""

from __future__ import annotations

import gzip
import logging
import os

import pytest
from data import fastq_reference, make_fastq

from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import FormatError, IndexMissingError, OptionError, StaleIndexError


def _read(uri: str, options: dict, n: int = 3, strategy: str = "records") -> list[tuple]:
    co = CloudObject(options.get("format", "csv"), uri, options)
    return [tuple(r.values()) for s in co.slices(strategy=strategy, num_slices=n) for r in s.get().to_pylist()]


def _every_spacing(local_store, name: str, data: bytes, options: dict, expected: list[tuple],
                   spacings=range(1, 41)) -> None:
    uri = local_store.put(name, data)
    for spacing in spacings:
        opts = {**options, "indexSpacing": str(spacing)}
        CloudObject(opts.get("format", "csv"), uri, opts).preprocess(force=True)
        for n in (1, 2, 5):
            assert _read(uri, opts, n) == expected, f"indexSpacing={spacing} slices={n}"


def test_escaped_quote_on_both_sides_of_an_index_point(local_store):
    # \" must not toggle the quote state, wherever an index point falls between \ and "
    data = b'1,"a\\"b,c"\n2,"d\\"\\"e\n f"\n3,x\n' * 5
    expected = [("1", 'a"b,c'), ("2", 'd""e\n f'), ("3", "x")] * 5
    _every_spacing(local_store, "esc.csv", data, {}, expected)


def test_quotes_inside_comment_lines(local_store):
    data = b'#x"y\na,b\n#"\nc,d\n'
    _every_spacing(local_store, "c.csv", data, {"comment": "#"}, [("a", "b"), ("c", "d")], range(1, 12))


def test_backslashes_that_escape_nothing_are_kept(local_store):
    data = b'a,"C:\\temp\\new",b\nc,"x\\\\",y\n'
    _every_spacing(local_store, "bs.csv", data, {}, [("a", "C:\\temp\\new", "b"), ("c", "x\\", "y")], range(1, 20))


def test_escaped_escape_and_quote_in_an_unquoted_field(local_store):
    data = b'1,"C:\\\\"\n2,x\ntv,5" screen\n'
    _every_spacing(local_store, "ee.csv", data, {}, [("1", "C:\\"), ("2", "x"), ("tv", '5" screen')], range(1, 20))


def test_broken_quoting_points_at_the_stray_quote(local_store):
    data = b'a,b\nc,"d\ne,f\ng,h\n'
    uri = local_store.put("stray.csv", data)
    for spacing in ("2", "5", "1m"):
        with pytest.raises(FormatError, match="never closed.*quote=''") as info:
            CloudObject("csv", uri, {"indexSpacing": spacing}).preprocess(force=True)
        assert info.value.offset == data.index(b'"')


def test_csv_header_longer_than_64_kib(local_store):
    names = [f"column_{i:05d}" for i in range(8000)]
    data = (",".join(names) + "\n" + ",".join(str(i) for i in range(8000)) + "\n").encode()
    assert len(data) > 2 * (64 << 10)
    uri = local_store.put("wide.csv", data)
    co = CloudObject("csv", uri, {"header": True, "inferSchema": True})
    co.preprocess()
    assert co.dataset().schema.names == names
    table = co.slices(num_slices=1)[0].get()
    assert table.num_rows == 1 and table.column("column_07999").to_pylist() == [7999]


def test_tsv_name_means_tab_separated(local_store):
    uri = local_store.put("t.tsv", b"a\tb\n1\t2\n")
    CloudObject("csv", uri, {"header": True}).preprocess()
    assert _read(uri, {"header": True}, 1) == [("1", "2")]


def test_same_size_replacement_with_mtime_restored_is_refused(local_store):
    # cp -p / rsync -t: same size, same mtime, other bytes; never a short or wrong result
    lines = [f"{i:04d}-{'x' * 20}" for i in range(80)]
    data = ("\n".join(lines) + "\n").encode()
    uri = local_store.put("same.txt", data)
    co = CloudObject("text", uri, {"indexSpacing": "256"})
    co.preprocess()
    st = os.stat(uri)
    other = data.replace(b"-xxxxx", b"\nyyyyy")  # same size, more lines
    assert len(other) == len(data)
    local_store.put("same.txt", other)
    os.utime(uri, ns=(st.st_atime_ns, st.st_mtime_ns))
    for n in (1, 3, 7):
        with pytest.raises(StaleIndexError, match="same.txt"):
            _read(uri, {"format": "text"}, n)


def test_more_records_than_indexed_is_an_error(local_store):
    # a slice whose bytes hold more records than its index counted fails, even with fingerprints intact
    data = b"a" * 300 + b"\n" + b"b" * 300 + b"\n"
    uri = local_store.put("more.txt", data)
    CloudObject("text", uri, {"indexSpacing": "1m"}).preprocess()
    st = os.stat(uri)
    local_store.put("more.txt", data[:280] + b"\n" + data[281:])  # a new line break past the fingerprint
    os.utime(uri, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(StaleIndexError, match="found 3 records .* where the index counted 2"):
        _read(uri, {"format": "text"}, 1)


@pytest.mark.parametrize("cut, lines", [(1, 3), (2, 2), (3, 1)])
def test_fastq_truncation_counts_lines_right(local_store, cut, lines):
    data = make_fastq(10, seed=3)
    body = data.split(b"\n")
    truncated = b"\n".join(body[: len(body) - 1 - cut]) + b"\n"  # ends with a line break
    uri = local_store.put("t.fastq", truncated)
    with pytest.raises(FormatError, match=rf"ends {lines} line\(s\) into a 4-line record"):
        CloudObject("fastq", uri).preprocess()


def test_fastq_trailing_blank_lines_and_leading_space_header(local_store):
    data = make_fastq(30, seed=4) + b"@ leading desc\nACGT\n+\nIIII\n\n\n"
    uri = local_store.put("b.fastq", data)
    for spacing in ("7", "64", "1m"):
        CloudObject("fastq", uri, {"indexSpacing": spacing}).preprocess(force=True)
        rows = _read(uri, {"format": "fastq"}, 4)
        assert rows == fastq_reference(data)
        assert rows[-1][:2] == ("leading", "desc")


def test_fastq_missing_quality_line_fails_at_build_near_the_record(local_store):
    data = make_fastq(40, seed=5)
    at = data.index(b"@SRR5.20")
    record_end = data.index(b"\n@SRR5.21")
    qual_start = data.rindex(b"\n", at, record_end) + 1
    bad = data[:qual_start] + data[record_end + 1:]  # record 20 loses its quality line
    uri = local_store.put("m.fastq", bad)
    with pytest.raises(FormatError) as info:
        CloudObject("fastq", uri, {"indexSpacing": "64"}).preprocess()
    assert at <= info.value.offset <= qual_start + 200  # at the record, or the line right after it


def test_index_built_with_other_quote_is_rebuilt_not_reused(local_store):
    data = b"a,'b,c'\n"
    uri = local_store.put("q.csv", data)
    CloudObject("csv", uri).preprocess()
    assert _read(uri, {}, 1) == [("a", "'b", "c'")]
    with pytest.raises(IndexMissingError, match="rebuild"):
        _read(uri, {"quote": "'"}, 1)
    summary = CloudObject("csv", uri, {"quote": "'"}).preprocess()
    assert summary.indexed == [uri]
    assert _read(uri, {"quote": "'"}, 1) == [("a", "b,c")]


def test_sep_delimiter_encoding_and_bigint(local_store):
    data = b"x;y\n1;3000000000\n2;-5\n"
    uri = local_store.put("d.csv", data)
    opts = {"header": True, "delimiter": ";", "inferSchema": True}
    CloudObject("csv", uri, opts).preprocess()
    co = CloudObject("csv", uri, opts)
    assert [str(f.type) for f in co.dataset().schema] == ["int32", "int64"]
    assert _read(uri, opts, 2) == [(1, 3000000000), (2, -5)]
    with pytest.raises(OptionError, match="encoding 'latin1' is not supported; valid: utf-8"):
        CloudObject("csv", uri, {**opts, "encoding": "latin1"}).slices()


@pytest.mark.parametrize("name, fmt, compress", [("r.fq", "fastq", False), ("r.fq.bgz", "fastq", True),
                                                 ("t.tsv.gz", "csv", True)])
def test_names_guess_format_and_compression(local_store, name, fmt, compress):
    data = make_fastq(20, seed=9) if fmt == "fastq" else b"a\tb\n1\t2\n"
    uri = local_store.put(name, gzip.compress(data) if compress else data)
    co = CloudObject(fmt, uri)
    co.preprocess()
    assert co.dataset().format_name == fmt
    assert co.dataset().indexes[0].manifest["compression"] == ("gzip" if compress else "none")
    rows = [tuple(r.values()) for s in co.slices(num_slices=2) for r in s.get().to_pylist()]
    assert rows == (fastq_reference(data) if fmt == "fastq" else [("a", "b"), ("1", "2")])


def test_partition_bytes_and_min_partitions(local_store):
    data = b"".join(f"{i:07d}\n".encode() for i in range(200_000))  # 1.6 MB
    uri = local_store.put("p.txt", data)
    CloudObject("text", uri, {"indexSpacing": "16k"}).preprocess()
    ds = CloudObject("text", uri).dataset()
    assert len(ds.plan(partition_bytes=256 << 10)) == 7  # ceil(1.6 MB / 256 KiB)
    ds = CloudObject("text", uri, {"minPartitions": 5}).dataset()
    assert len(ds.plan()) == 1  # 5 slices would be under 4 MiB each: Spark's rule keeps one
    ds = CloudObject("text", uri, {"partitionBytes": "64k"}).dataset()
    assert len(ds.plan()) == 25


def test_missing_index_scan_warns(local_store, caplog):
    uri = local_store.put("w.txt", b"a\nb\n")
    with caplog.at_level(logging.WARNING, logger="pyspark_dataplug"):
        rows = _read(uri, {"format": "text", "missingIndex": "scan"}, 3)
    assert rows == [("a",), ("b",)]
    assert "without an index, one task each (missingIndex=scan)" in caplog.text and "w.txt" in caplog.text


def test_corrupt_gzip_found_at_read(local_store):
    data = make_fastq(3000, seed=11)
    blob = bytearray(gzip.compress(data))
    uri = local_store.put("c.fastq.gz", bytes(blob))
    CloudObject("fastq", uri, {"gzipSpacing": "64k"}).preprocess()
    st = os.stat(uri)
    mid = len(blob) * 3 // 4
    blob[mid: mid + 32] = b"\x00" * 32
    local_store.put("c.fastq.gz", bytes(blob))
    os.utime(uri, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises((FormatError, StaleIndexError), match=r"c\.fastq\.gz"):
        _read(uri, {"format": "fastq"}, 4)


@pytest.mark.parametrize("char", [b"\x0b", b"\t", b" ", b"\x7f"])
def test_fastq_quality_outside_printable_ascii_is_an_error(local_store, char):
    """Found by the scaled fuzz: a vertical tab at the end of a quality line was kept as a quality value,
    where Biopython strips it and reads on into the next record. Neither is a read: it is damage."""
    data = bytearray(make_fastq(30, seed=161))
    lines = data.split(b"\n")
    lines[4 * 12 + 3] = lines[4 * 12 + 3][:-1] + char  # record 12's last quality character
    uri = local_store.put("q.fastq", bytes(b"\n".join(lines)))
    CloudObject("fastq", uri, {"indexSpacing": "1k"}).preprocess()
    with pytest.raises(FormatError, match=r"q\.fastq.*quality character .* outside '!'..'~'"):
        [s.get() for s in CloudObject("fastq", uri).slices(num_slices=3)]
