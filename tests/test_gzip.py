"""gzip split across tasks: exact records from seek points, for every line format and gzip flavour."""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
from Bio import bgzf
from conftest import multiset, read_dataplug
from data import fastq_reference, make_csv, make_fastq, make_text

import pyspark_dataplug
from pyspark_dataplug import CloudObject
from pyspark_dataplug.errors import FormatError, StaleIndexError
from pyspark_dataplug.formats.fastq import FASTQGZip, partition_reads_batches
from pyspark_dataplug.storage import IO_STATS

SPACING = {"gzipSpacing": "128k"}


def _rows(slices):
    return [tuple(r.values()) for s in slices for r in s.get().to_pylist()]


def _indexed(store, name: str, blob: bytes) -> tuple[str, CloudObject]:
    """Put a gzip object and index it with small seek spacing, so even small files have several points."""
    uri = store.put(name, blob)
    co = CloudObject(FASTQGZip, uri, {**store.options, **SPACING})
    co.preprocess()
    return uri, co


def _bgzf(data: bytes, path: Path) -> bytes:
    with bgzf.BgzfWriter(str(path), "wb") as w:
        w.write(data)
    return path.read_bytes()


@pytest.fixture(scope="session")
def big_fastq_gz(tmp_path_factory) -> tuple[Path, dict]:
    """~200 MB of FASTQ (seeded, reads of varying length) as one .gz, plus its reference digest."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(2026)
    parts, total = [], 0
    i = 0
    while total < 200 << 20:
        n = 20_000
        lengths = rng.integers(30, 250, n)
        bases = np.frombuffer(b"ACGTN", np.uint8)[rng.integers(0, 5, lengths.sum())]
        quals = np.frombuffer(b"!#+@ABCDEFGHIJ", np.uint8)[rng.integers(0, 14, lengths.sum())]
        seq_txt, qual_txt = bases.tobytes().decode(), quals.tobytes().decode()
        lines, pos = [], 0
        for k, ln in enumerate(lengths.tolist()):
            desc = f" run=7 len={ln}" if (i + k) % 5 else ""
            lines.append(f"@R{i + k}{desc}\n{seq_txt[pos:pos + ln]}\n+\n{qual_txt[pos:pos + ln]}\n")
            pos += ln
        chunk = "".join(lines).encode()
        parts.append(chunk)
        total += len(chunk)
        i += n
    data = b"".join(parts)
    path = folder / "big.fastq.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return path, _digest(fastq_reference(data))


def _digest(rows) -> dict:
    """Order-independent: count and CRC32 sums per column (a lost plus a duplicated read cannot cancel)."""
    d = {"n": 0, "id": 0, "desc": 0, "nodesc": 0, "seq": 0, "qual": 0}
    for ident, desc, seq, qual in rows:
        d["n"] += 1
        d["id"] += zlib.crc32(ident.encode())
        d["desc"] += zlib.crc32((desc or "").encode())
        d["nodesc"] += desc is None
        d["seq"] += zlib.crc32(seq.encode())
        d["qual"] += zlib.crc32(qual.encode())
    return d


def _spark_digest(df) -> dict:
    from pyspark.sql import functions as F

    row = df.select(
        F.count("*").alias("n"),
        F.sum(F.crc32(F.col("id").cast("binary"))).alias("id"),
        F.sum(F.crc32(F.coalesce(F.col("description"), F.lit("")).cast("binary"))).alias("desc"),
        F.sum(F.col("description").isNull().cast("long")).alias("nodesc"),
        F.sum(F.crc32(F.col("sequence").cast("binary"))).alias("seq"),
        F.sum(F.crc32(F.col("quality").cast("binary"))).alias("qual"),
    ).collect()[0]
    return {k: int(row[k]) for k in ("n", "id", "desc", "nodesc", "seq", "qual")}


def test_big_fastq_gz_through_spark_and_slices(spark, request, big_fastq_gz, tmp_path):
    path, expected = big_fastq_gz
    for kind in ("local", "s3"):
        if kind == "s3":
            from conftest import make_store

            store = make_store("s3", tmp_path, request)
            uri = store.put("big.fastq.gz", path.read_bytes())
            options = store.options
        else:
            uri, options = str(path), {}
        summary = pyspark_dataplug.build_index(spark, uri, format="fastq", **options)
        assert summary.records == expected["n"]
        for n in (1, 2, 7, 64, 200):
            df = read_dataplug(spark, uri, {**options, "partitions": n, "strategy": "records"})
            assert df.rdd.getNumPartitions() == n
            assert _spark_digest(df) == expected, f"{kind} partitions={n}"
        # the default strategy cuts only at seek points: at most one partition per point, nothing read twice
        points = CloudObject(FASTQGZip, uri, options).dataset().indexes[0].tables["points"].num_rows
        df = read_dataplug(spark, uri, {**options, "partitions": 200})
        assert df.rdd.getNumPartitions() == min(200, points)
        assert _spark_digest(df) == expected
        assert read_dataplug(spark, uri, options).count() == expected["n"]
        if kind == "local":
            co = CloudObject(FASTQGZip, uri, options)
            slices = co.partition(partition_reads_batches, num_batches=7)
            assert _digest(r for s in slices for r in zip(*s.get().to_pydict().values(), strict=True)) == expected


@pytest.mark.parametrize("flavour", ["gzip", "multi-member", "bgzf"])
def test_gzip_flavours_exact_for_any_count(store, tmp_path, flavour):
    data = make_fastq(6000, seed=21)
    if flavour == "gzip":
        blob = gzip.compress(data)
    elif flavour == "multi-member":
        a, b = data.index(b"\n@SRR", len(data) // 3) + 1, data.index(b"\n@SRR", 2 * len(data) // 3) + 1
        # members may end mid-record; an empty member in between
        blob = gzip.compress(data[:a]) + gzip.compress(b"") + gzip.compress(data[a:b + 7]) + gzip.compress(data[b + 7:])
    else:
        blob = _bgzf(data, tmp_path / "x.bgz")
    uri = store.put(f"f-{flavour}.fastq.gz", blob)
    co = CloudObject(FASTQGZip, uri, {**store.options, **SPACING})
    co.preprocess()
    ref = fastq_reference(data)
    counts = (1, 2, 7, 64, 997) if store.kind == "local" else (1, 7, 64)
    for n in counts:
        assert _rows(co.partition(partition_reads_batches, num_batches=n)) == ref, f"num_batches={n}"
    # more batches than reads: one read each
    small = make_fastq(40, seed=22)
    small_blob = _bgzf(small, tmp_path / "s.bgz") if flavour == "bgzf" else gzip.compress(small)
    suri = store.put(f"s-{flavour}.fastq.gz", small_blob)
    co = CloudObject(FASTQGZip, suri, {**store.options, **SPACING})
    co.preprocess()
    slices = co.partition(partition_reads_batches, num_batches=100)
    assert len(slices) == 40 and _rows(slices) == fastq_reference(small)


def test_text_and_csv_in_gzip_match_spark(spark, store, tmp_path):
    text = make_text(20_000, seed=31, crlf=True)
    uri = store.put("log.txt.gz", gzip.compress(text))
    pyspark_dataplug.build_index(spark, uri, format="text", **store.options, **SPACING)
    (tmp_path / "log.txt").write_bytes(text)
    ref = multiset(spark.read.text(str(tmp_path / "log.txt")).collect())
    for n in (1, 7, 64):
        assert multiset(read_dataplug(spark, uri, {**store.options, "partitions": n}).collect()) == ref

    table = make_csv(4000, seed=32, rfc_quotes=True)
    curi = store.put("t.csv.gz", _bgzf(table, tmp_path / "t.bgz"))
    opts = {"header": "true", "escape": '"', "inferSchema": "true"}
    pyspark_dataplug.build_index(spark, curi, format="csv", **store.options, **SPACING, **opts)
    (tmp_path / "t.csv").write_bytes(table)
    ref_df = spark.read.options(multiLine="true", **opts).csv(str(tmp_path / "t.csv"))
    for n in (1, 7):
        df = read_dataplug(spark, curi, {**store.options, **opts, "partitions": n})
        assert df.schema == ref_df.schema
        assert multiset(df.collect()) == multiset(ref_df.collect())


def test_gzip_detected_by_magic_not_name(local_store):
    data = make_fastq(300, seed=3)
    uri, co = _indexed(local_store, "reads-no-suffix.fastq", gzip.compress(data))
    assert co.dataset().indexes[0].manifest["compression"] == "gzip"
    assert _rows(co.partition(partition_reads_batches, num_batches=5)) == fastq_reference(data)


def test_empty_gzip_objects(local_store):
    for name, blob in [("empty.fastq.gz", gzip.compress(b"")), ("two-empty.fastq.gz", gzip.compress(b"") * 2)]:
        uri = local_store.put(name, blob)
        co = CloudObject(FASTQGZip, uri)
        co.preprocess()
        assert co.dataset().indexes[0].records == 0
        assert co.partition(partition_reads_batches, num_batches=3) == []


def test_task_fetches_its_range_plus_one_window(store):
    data = make_fastq(20_000, seed=4)
    uri, co = _indexed(store, "w.fastq.gz", gzip.compress(data))
    slices = co.partition(partition_reads_batches, num_batches=6)
    seeks = co.dataset().indexes[0].tables["seeks"]
    su, cs = seeks.column("u").to_pylist(), seeks.column("c").to_pylist()
    for s in slices[1:-1]:
        IO_STATS.reset()
        s.get()
        fetched = sum(IO_STATS.bytes_read.values())
        window = s.ranges[0].size if len(s.ranges) == 2 else 0
        comp = s.ranges[-1]
        assert fetched == window + comp.size
        assert window <= 32768 + 64
        # it starts at the seek point its first record inflates from (a byte early for a bit offset) ...
        k = max(i for i, u in enumerate(su) if u <= s.context["edge"])
        assert comp.start in (cs[k], cs[k] - 1)
        # ... and ends no further than the first seek point after its last record, plus a little slack
        after = [c for u, c in zip(su, cs, strict=True) if u > s.context["end"]]
        assert after and comp.end <= after[0] + 1024  # (END_SLACK: a block header and margin)
        assert comp.end - comp.start < len(gzip.compress(data)) / 2  # never the whole object


def test_slices_of_gzip_pickle_and_evaluate_in_a_pool(local_store):
    import multiprocessing

    data = make_fastq(3000, seed=5)
    uri, co = _indexed(local_store, "pool.fastq.gz", gzip.compress(data))
    blobs = [pickle.dumps(s) for s in co.partition(partition_reads_batches, num_batches=5)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        tables = pool.map(_eval, blobs)
    assert [r for t in tables for r in t] == fastq_reference(data)


def _eval(blob: bytes) -> list[tuple]:
    return [tuple(r.values()) for r in pickle.loads(blob).get().to_pylist()]


def test_truncated_and_corrupt_gzip_name_object_and_offset(local_store):
    data = gzip.compress(make_fastq(3000, seed=6))
    uri = local_store.put("trunc.fastq.gz", data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"trunc\.fastq\.gz at byte \d+: .*(truncated|corrupt)"):
        CloudObject(FASTQGZip, uri, SPACING).preprocess()
    bad = bytearray(data)
    bad[len(bad) // 2: len(bad) // 2 + 64] = b"\xff" * 64
    uri = local_store.put("corrupt.fastq.gz", bytes(bad))
    with pytest.raises(FormatError, match=r"corrupt\.fastq\.gz at byte \d+"):
        CloudObject(FASTQGZip, uri, SPACING).preprocess()


def test_gzip_changed_after_indexing_is_refused(store):
    data = make_fastq(2000, seed=8)
    uri, co = _indexed(store, "stale.fastq.gz", gzip.compress(data))
    slices = co.partition(partition_reads_batches, num_batches=4)
    store.put("stale.fastq.gz", gzip.compress(data + make_fastq(3, seed=9)))
    with pytest.raises(StaleIndexError):
        slices[2].get()


def test_scan_without_index_reads_whole_gzip(local_store):
    data = make_fastq(500, seed=10)
    uri = local_store.put("noindex.fastq.gz", gzip.compress(data[:9000]) + gzip.compress(data[9000:]))
    co = CloudObject(FASTQGZip, uri, {"missingIndex": "scan"})
    slices = co.slices(num_slices=4)
    assert len(slices) == 1  # without an index a gzip object is one task, as in Spark
    assert _rows(slices) == fastq_reference(data)


# ------------------------------------------------------------------------------------------ BGZF, in parallel
def test_bgzf_block_walk_joins_from_any_chunk_start(tmp_path):
    """Chunk walks started at arbitrary offsets find the true block starts and chain into the real block list."""
    from pyspark_dataplug import gz

    blob = _bgzf(make_fastq(3000, seed=31), tmp_path / "w.bgz")
    # the true blocks, walked from the start by their BSIZE fields
    true, p = [], 0
    while p < len(blob):
        true.append(p)
        p += int.from_bytes(blob[p + 16: p + 18], "little") + 1
    assert p == len(blob) and len(true) > 5
    rng = np.random.default_rng(5)
    for _ in range(20):
        cuts = sorted({0, *rng.integers(1, len(blob), size=int(rng.integers(1, 6))).tolist(), len(blob)})
        walks = [gz.bgzf_blocks("w.bgz", blob[a: min(len(blob), b + 2 * gz.BGZF_MAX_BLOCK)], a, a, b, len(blob), 1)
                 for a, b in zip(cuts, cuts[1:], strict=False)]
        seeks, usize = gz.bgzf_seeks("w.bgz", walks, len(blob))
        assert [c for _, c, *_ in seeks] == true  # spacing 1: a point at every block
        assert usize == len(make_fastq(3000, seed=31))


def test_bgzf_index_is_built_in_parallel_without_windows(local_store, tmp_path, monkeypatch):
    """BGZF objects get member seek points (no window blob) from chunks walked in parallel, and read exactly."""
    import pyspark_dataplug.formats._lines as lines

    data = make_fastq(5000, seed=32)
    uri = local_store.put("p.fastq.gz", _bgzf(data, tmp_path / "p.bgz"))
    monkeypatch.setattr(lines, "SPLIT_BYTES", 50_000)  # many chunks, so chains must join across tasks
    fmt = FASTQGZip({})
    from pyspark_dataplug.storage import get_storage

    tasks = fmt.build_tasks(get_storage(uri).info(uri), Path(uri).read_bytes()[:64], str(tmp_path / "ix"), None)
    assert len(tasks) > 3 and all(t["codec"] == "bgzf" for t in tasks)
    co = CloudObject(FASTQGZip, uri, SPACING)
    co.preprocess()
    index = co.dataset().indexes[0]
    assert index.manifest["seek_points"] == "members" and "windows" not in index.manifest.get("blobs", {})
    assert index.records == 5000 and len(index.tables["seeks"]) > 3
    for n in (1, 2, 7, 5001):
        assert _rows(co.partition(partition_reads_batches, num_batches=n)) == fastq_reference(data), n


def test_bgzf_damage_and_impostors(local_store, tmp_path):
    data = make_fastq(3000, seed=33)
    blob = _bgzf(data, tmp_path / "d.bgz")
    # truncated: the end-of-file block is gone, so the sequential gzip path reports the cut
    uri = local_store.put("cut.fastq.gz", blob[: len(blob) // 2])
    with pytest.raises(FormatError, match=r"cut\.fastq\.gz at byte \d+"):
        CloudObject(FASTQGZip, uri, SPACING).preprocess()
    # a block's size field damaged: the chain breaks, the sequential pass (which does not need that field)
    # takes over, and the rows are exact
    bad = bytearray(blob)
    second = int.from_bytes(blob[16:18], "little") + 1
    bad[second + 16: second + 18] = (1000).to_bytes(2, "little")
    uri = local_store.put("bsize.fastq.gz", bytes(bad))
    co = CloudObject(FASTQGZip, uri, SPACING)
    co.preprocess()
    assert _rows(co.partition(partition_reads_batches, num_batches=4)) == fastq_reference(data)
    # compressed bytes damaged inside a block: the error names the object and the byte
    bad = bytearray(blob)
    bad[second + 200: second + 264] = b"\xff" * 64
    uri = local_store.put("broken.fastq.gz", bytes(bad))
    with pytest.raises(FormatError, match=r"broken\.fastq\.gz at byte \d+"):
        CloudObject(FASTQGZip, uri, SPACING).preprocess()
    # BGZF followed by plain gzip members (and BGZF's end block last): valid gzip, so the build falls back to
    # one sequential pass and reads it exactly
    tail = make_fastq(500, seed=34)
    mixed = blob[:-28] + gzip.compress(tail) + blob[-28:]
    uri = local_store.put("mixed.fastq.gz", mixed)
    co = CloudObject(FASTQGZip, uri, SPACING)
    co.preprocess()
    index = co.dataset().indexes[0]
    assert "seek_points" not in index.manifest and index.records == 3500
    assert _rows(co.partition(partition_reads_batches, num_batches=5)) == fastq_reference(data + tail)


@pytest.mark.parametrize("level", [1, 6, 9])
def test_every_sparse_window_seek_point_inflates_exactly(local_store, level):
    """rapidgzip zeroes the window bytes it finds unused: inflating from *every* point must still be exact.

    Text with long-distance repeats (words reused from far back, varied lines) makes matches reach deep into
    each window, where a wrongly zeroed byte would show; the points are checked directly, not via records.
    """
    from pyspark_dataplug import gz
    from pyspark_dataplug.storage import LocalStorage

    rng = np.random.default_rng(level)
    words = [bytes(rng.integers(97, 123, size=int(n))) for n in rng.integers(2, 12, size=3000)]
    lines = [b" ".join(words[i] for i in rng.integers(0, len(words), size=int(rng.integers(1, 30)))) + b"\n"
             for _ in range(15000)]
    data = b"".join(lines)
    uri = local_store.put(f"deep{level}.txt.gz", gzip.compress(data, level))
    info = LocalStorage().info(uri)
    with gz.GzipPass(LocalStorage(), info, gz.MIN_SPACING) as gp:
        assert b"".join(gp.pieces()) == data
        scan = gp.result()
    assert scan.size == len(data) and len(scan.points) > 20
    comp = Path(uri).read_bytes()
    sparse = 0
    for u, c, bits, off, n in scan.points:
        window = zlib.decompress(scan.blob[off: off + n]) if n else None
        sparse += window is not None and window.count(0) > 0
        start = c - 1 if bits else c
        want = min(len(data) - u, 100_000)
        got = gz.inflate(uri, comp[start:], start, c, bits, window, want, len(comp))
        assert bytes(got) == data[u: u + want], f"point at u={u}"
    assert sparse > 0  # the windows are sparse indeed (else this test checks nothing new)
