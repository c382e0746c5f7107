"""FASTA: rows equal Biopython's records (cut into ``sequenceChunkSize`` rows) and pyfaidx's ranges.

Most tests plan and evaluate slices in-process (the same slices Spark tasks run) so they can try many
partition counts and index spacings quickly; the Spark tests read through ``spark.read.format("dataplug")``
from local files and from the S3 endpoint, with the index built by the Spark job or taken from a ``.fai``.
"""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import read_dataplug

from pyspark_dataplug.errors import DataplugError, FormatError, StaleIndexError
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset

PARTITIONS = (1, 2, 7, 1000)


def reference(data: bytes, chunk: int) -> list[tuple[Any, ...]]:
    """Biopython's records, cut at multiples of ``chunk`` bases (0: whole), ids split as ``title.split(None, 1)``."""
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rows = []
    for title, seq in SimpleFastaParser(io.StringIO(data.decode(), newline="")):
        words = title.split(None, 1)
        ident = words[0] if words else ""
        desc = words[1].rstrip() if len(words) > 1 and words[1].strip() else None
        if chunk == 0 or not seq:
            rows.append((ident, desc, 0, seq))
        else:
            rows.extend((ident, desc, s, seq[s: s + chunk]) for s in range(0, len(seq), chunk))
    return rows


def build(path: str, **options: Any) -> None:
    plan_build(path, "fasta", **options).run(run_tasks_locally, force=True)


def read(path: str, partitions: int, strategy: str = "bases", chunk: int | None = None,
         **options: Any) -> list[tuple[Any, ...]]:
    opts = {"path": path, "format": "fasta", **options}
    if chunk is not None:
        opts["sequenceChunkSize"] = str(chunk)
    rows = []
    for part in open_dataset(opts).plan(partitions=partitions, strategy=strategy):
        for s in part:
            t = s.get()
            rows.extend(zip(*(t.column(n).to_pylist() for n in ("id", "description", "start", "sequence")),
                            strict=True))
    return rows


def random_fasta(rng: random.Random, n: int, regular: bool = False) -> bytes:
    """Records of many shapes: empty, short, wrapped at different widths, CRLF, blank lines, soft-masking."""
    out = []
    for i in range(n):
        length = rng.choice([0, 1, 5, 59, 60, 61, 120, 777, 3000])
        if regular and length == 0:
            length = 3
        seq = "".join(rng.choice("ACGTNNacgtn") for _ in range(length))
        width = rng.choice([5, 7, 60, 80])
        title = rng.choice([f"r{i}", f"r{i} some description {i}", f"r{i}\tx>y=z", f"r{i}  spaced  "]
                           + ([] if regular else ["dup"]))
        nl = "\n" if regular else rng.choice(["\n", "\r\n"])
        lines = [seq[j: j + width] for j in range(0, length, width)]
        body = nl.join(lines) + (nl if lines else "")
        if not regular and lines and rng.random() < 0.15:
            body = body.replace(nl, nl + nl, 1)  # a blank line inside the record
        if not regular and rng.random() < 0.1:
            body += nl  # blank lines after it
        out.append(">" + title + nl + body)
    text = "".join(out)
    if not regular and rng.random() < 0.3:
        text = text.rstrip("\r\n")  # no line break at the end
    return text.encode()


# -- differential fuzz against Biopython: every shape, partition count, spacing and strategy ---------------
@pytest.mark.parametrize("seed", range(6))
def test_fuzz_against_biopython(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = random_fasta(rng, rng.randint(1, 40))
    if seed % 3 == 0:
        data = b";an old-style comment\n#another\n\n" + data
    path = tmp_path / "x.fa"
    path.write_bytes(data)
    build(str(path), indexSpacing=rng.choice(["1", "13", "300"]))
    for chunk in (0, 1, 7, 60, 1000):
        want = reference(data, chunk)
        for parts in PARTITIONS:
            for strategy in ("bases", "records"):
                assert read(str(path), parts, strategy, chunk) == want, (chunk, parts, strategy)


@pytest.mark.parametrize("codec", ["gzip", "bgzf"])
def test_gzip_and_bgzf_built_index(tmp_path: Path, codec: str) -> None:
    import pysam

    rng = random.Random(11)
    data = random_fasta(rng, 400)
    plain = tmp_path / "x.fa"
    plain.write_bytes(data)
    path = str(plain) + ".gz"
    if codec == "gzip":
        Path(path).write_bytes(gzip.compress(data))
    else:
        pysam.tabix_compress(str(plain), path)
    build(path, gzipSpacing="40000")
    ds = open_dataset({"path": path, "format": "fasta"})
    assert ds.indexes[0].manifest["compression"] == "gzip"
    assert ds.indexes[0].tables["seeks"].num_rows > 3  # slices really start at several seek points
    for chunk in (0, 100):
        want = reference(data, chunk)
        for parts in PARTITIONS:
            assert read(path, parts, chunk=chunk) == want, (chunk, parts)


# -- an existing .fai (and .gzi) is the index: nothing to build ---------------------------------------------
@pytest.mark.parametrize("bgzip", [False, True])
def test_existing_fai_needs_no_build(tmp_path: Path, bgzip: bool) -> None:
    import pysam

    data = random_fasta(random.Random(5), 60, regular=True)
    plain = tmp_path / "ref.fa"
    plain.write_bytes(data)
    path = str(plain)
    if bgzip:
        pysam.tabix_compress(path, path + ".gz")
        path += ".gz"
    pysam.faidx(path)
    ds = open_dataset({"path": path, "format": "fasta"})
    assert ds.indexes[0].manifest["sidecar"] == (".fai + .gzi" if bgzip else ".fai")
    assert not (Path(path + ".dataplug")).exists()
    for parts in PARTITIONS:
        assert read(path, parts, chunk=50) == reference(data, 50)
    summary = plan_build(path, "fasta").run(run_tasks_locally)  # the build job reuses it too
    assert summary.indexed == [] and summary.skipped == [str(Path(path).resolve())]
    assert not (Path(path + ".dataplug")).exists()


def test_chunks_match_pyfaidx_and_slices_fetch_only_their_bases(tmp_path: Path) -> None:
    """A 50 Mbp record read in 1 Mbp rows over 13 partitions: each row equals pyfaidx's fetch of its range."""
    import numpy as np
    import pyfaidx

    rng = np.random.default_rng(3)
    big = np.frombuffer(b"ACGTNacgt", np.uint8)[rng.integers(0, 9, 50_000_000)].tobytes().decode()
    lines = "\n".join(big[i: i + 61] for i in range(0, len(big), 61))
    data = f">chr1 the big one\n{lines}\n>chr2\nACGT\nAC\n>empty\n".encode()
    path = tmp_path / "big.fa"
    path.write_bytes(data)
    build(str(path))
    ds = open_dataset({"path": str(path), "format": "fasta"})
    parts = ds.plan(partitions=13)
    assert len(parts) == 13
    # each slice fetches its own bases (plus line breaks), within a row of the even share
    share = len(data) / 13
    for part in parts:
        assert sum(r.size for s in part for r in s.ranges) < share + 1_100_000
    fa = pyfaidx.Fasta(str(path), sequence_always_upper=False, as_raw=True)
    rows = [r for part in parts for s in part for r in s.get().to_pylist()]
    assert [(r["id"], r["start"]) for r in rows[:3]] == [("chr1", 0), ("chr1", 1_000_000), ("chr1", 2_000_000)]
    assert len(rows) == 50 + 2
    for r in rows:
        if r["id"] == "empty":
            assert r["sequence"] == "" and r["description"] is None
            continue
        assert r["sequence"] == fa[r["id"]][r["start"]: r["start"] + 1_000_000]
    assert rows[0]["description"] == "the big one"


# -- edge cases, each named ---------------------------------------------------------------------------------
EDGE_CASES = {
    "empty records": b">a\n>b\nACGT\n>c\n",
    "soft-masked and N runs": b">a\nACGTacgtNNNNNNNNNNnnnnACGT\nacgtNNNN\n",
    "ragged last line": b">a\nACGTA\nACGTA\nAC\n>b\nAAAAA\nA\n",
    "blank lines": b"\n\n>a\nACGT\n\nACGT\n\n\n>b\n\nAC\n\n",
    "crlf": b">a desc\r\nACGT\r\nAC\r\n>b\r\nGG\r\n",
    "greater-than in description": b">a x>y >z\nACGT\n",
    "comments before the first header": b";comment\n# another\n\n>a\nAC\n",
    "duplicate names": b">a first\nAAAA\n>a second\nCCCC\n",
    "different widths per record": b">a\nACG\nTAC\nG\n>b\nACGTACGTACGT\nACGTACGTACGT\nA\n",
    "spaces and tabs in lines": b">a\nAC GT  \nA\tC\n",
    "no final line break": b">a\nACGT\nAC",
    "header only": b">lonely header",
    "CRs before line feeds": b">a desc\r\r\nAC\r\r\nGT\r\n\r\n>b\r\nGG\r",  # trailing whitespace for both readers
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases(tmp_path: Path, case: str) -> None:
    data = EDGE_CASES[case]
    path = tmp_path / "e.fa"
    path.write_bytes(data)
    build(str(path), indexSpacing="3")
    for chunk in (0, 2):
        want = reference(data, chunk)
        assert want, "each case must hold records"
        for parts in (1, 2, 5, 100):
            for strategy in ("bases", "records"):
                assert read(str(path), parts, strategy, chunk) == want, (chunk, parts, strategy)


def test_duplicate_names_are_kept_in_order(tmp_path: Path) -> None:
    path = tmp_path / "d.fa"
    path.write_bytes(EDGE_CASES["duplicate names"])
    build(str(path))
    assert read(str(path), 2) == [("a", "first", 0, "AAAA"), ("a", "second", 0, "CCCC")]


def test_a_fai_that_dropped_a_duplicate_fails_instead_of_losing_it(tmp_path: Path) -> None:
    """samtools keeps only the first of two records with one name: reading with its .fai must not lose one."""
    import pysam

    path = tmp_path / "d.fa"
    path.write_bytes(EDGE_CASES["duplicate names"] + b">b\nGG\n")
    pysam.faidx(str(path))
    assert len((tmp_path / "d.fa.fai").read_text().splitlines()) == 2
    for parts in (1, 3):
        with pytest.raises(DataplugError, match=r"d\.fa"):
            read(str(path), parts)


# -- bad input: a clear error naming object and offset ------------------------------------------------------
def test_sequence_before_the_first_header_fails_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.fa"
    path.write_bytes(b"\nACGTACGT\n>a\nAC\n")
    with pytest.raises(FormatError, match=r"bad\.fa at byte 1: sequence before the first '>' header"):
        build(str(path))
    with pytest.raises(FormatError, match=r"at byte 1: sequence before the first '>' header"):
        read(str(path), 1, missingIndex="scan")


LONE_CR = {  # Biopython ends a line at a lone CR, samtools does not: the rows would depend on the reader
    "in a header": b">a\nACGT\n>b desc\rGG\nGG\n",  # Biopython: title 'b desc', bases 'GGGG'
    "before a header": b">a\nACGT\r>b\nGG\n",  # Biopython: two records
    "inside a sequence line": b">a\nACGTACGT\nAC\rGT\n",
}


@pytest.mark.parametrize("case", sorted(LONE_CR))
def test_a_lone_carriage_return_fails_with_its_offset(tmp_path: Path, case: str) -> None:
    """Found by the bad-input fuzz: a flipped bit turned a CRLF header's LF into a base, so the rows differed."""
    import pysam

    data = LONE_CR[case]
    path = tmp_path / "cr.fa"
    path.write_bytes(data)
    at = data.index(b"\r")
    with pytest.raises(FormatError, match=rf"cr\.fa at byte {at}: a lone carriage return"):
        build(str(path))
    for parts in (1, 3):
        with pytest.raises(FormatError, match=rf"cr\.fa at byte {at}: a lone carriage return"):
            read(str(path), parts, missingIndex="scan")
    if case == "in a header":  # samtools indexes it (its title runs to the LF): the read itself refuses it
        pysam.faidx(str(path))
        with pytest.raises(FormatError, match=rf"cr\.fa at byte {at}: a lone carriage return"):
            read(str(path), 1)


def test_object_changed_after_indexing_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.fa"
    path.write_bytes(b">a\nACGT\n>b\nGGGG\n")
    build(str(path))
    path.write_bytes(b">a\nACGT\n>b\nGGGT\n")  # same size: the mtime-based version changes
    with pytest.raises(StaleIndexError, match="changed since"):
        read(str(path), 1)


def test_a_fai_of_another_file_fails_at_read(tmp_path: Path) -> None:
    import pysam

    path = tmp_path / "r.fa"
    path.write_bytes(b">a\nACGTACGT\nACGT\n>b\nGGGGGGGG\nGG\n")
    pysam.faidx(str(path))
    path.write_bytes(b">a\nACGTACGT\nACGTAC\n>b\nGGGGGGGG\n")  # same size, other layout; .fai kept
    with pytest.raises(DataplugError, match=r"r\.fa.*(changed|another file)"):
        read(str(path), 1)
    with pytest.raises(DataplugError, match=r"r\.fa.*(changed|another file)"):
        read(str(path), 3)


def test_impossible_fai_fails_at_planning(tmp_path: Path) -> None:
    path = tmp_path / "r.fa"
    path.write_bytes(b">a\nACGT\n")
    (tmp_path / "r.fa.fai").write_text("a\t400\t3\t4\t5\n")
    with pytest.raises(StaleIndexError, match=r"r\.fa\.fai does not describe"):
        open_dataset({"path": str(path), "format": "fasta"})


# -- Spark: the index job, the reader, S3, pushdown conf on and off -----------------------------------------
@pytest.mark.parametrize("pushdown", ["false", "true"])
def test_spark_reads_fasta_from_s3(spark: Any, s3_store: Any, pushdown: str) -> None:
    from pyspark_dataplug import build_index

    data = random_fasta(random.Random(21), 300)
    uri = s3_store.put("g/x.fa", data)
    build_index(spark, uri, format="fasta", indexSpacing="4k", **s3_store.options)
    spark.conf.set("spark.sql.python.filterPushdown.enabled", pushdown)
    try:
        for parts in (1, 2, 7, 60):
            df = read_dataplug(spark, uri, {"format": "fasta", "partitions": parts, "sequenceChunkSize": 100,
                                            **s3_store.options})
            got = [tuple(r) for r in df.collect()]
            assert got == reference(data, 100), parts
        long_reads = read_dataplug(spark, uri, {"format": "fasta", **s3_store.options}) \
            .where("length(sequence) > 100").count()
        assert long_reads == sum(1 for r in reference(data, 1_000_000) if len(r[3]) > 100)
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")


def test_spark_reads_a_bgzipped_reference_with_its_fai(spark: Any, tmp_path: Path) -> None:
    import pysam

    data = random_fasta(random.Random(8), 200, regular=True)
    plain = tmp_path / "ref.fa"
    plain.write_bytes(data)
    pysam.tabix_compress(str(plain), str(plain) + ".gz")
    pysam.faidx(str(plain) + ".gz")
    df = read_dataplug(spark, str(plain) + ".gz", {"partitions": 5, "sequenceChunkSize": 64})
    assert [tuple(r) for r in df.collect()] == reference(data, 64)
    assert not Path(str(plain) + ".gz.dataplug").exists()
