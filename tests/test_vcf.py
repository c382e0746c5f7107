"""VCF through the index, slices and Spark: exact rows at any partitioning, region pruning, pushdown, bad input.

Row-level decoding (every field, Glow's rules, pysam's differences) is tested in ``test_vcfparse.py``; here
the oracle is pysam's ``VariantFile`` on the fields that locate and identify a variant plus the genotype
calls, and the whole-object decode for everything else.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import read_dataplug

from pyspark_dataplug.errors import DataplugError, FormatError
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset

CONTIGS = ("chr1", "chr2", "chr3")


def make_vcf(n: int, samples: int = 4, seed: int = 1, crlf: bool = False) -> bytes:
    """Sorted variants on three contigs: multi-allelic sites, missing values, END on symbolic alleles."""
    rng = random.Random(seed)
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c},length=100000000>" for c in CONTIGS),
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="allele frequency">',
        '##INFO=<ID=END,Number=1,Type=Integer,Description="end">',
        '##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">',
        '##FILTER=<ID=q10,Description="low quality">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="depth">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="allele depths">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT" + "".join(f"\ts{i}" for i in range(samples)),
    ]
    lines = []
    for c in CONTIGS:
        pos = 1
        for i in range(n // len(CONTIGS)):
            pos += rng.randint(1, 3000)
            kind = rng.random()
            if kind < 0.05:
                ref, alt, info = "A", "<DEL>", f"END={pos + rng.randint(10, 5000)};DP=5"
            elif kind < 0.3:
                ref, alt, info = "AC", "A,ACC", f"AF=0.1,0.2;DP={rng.randint(1, 99)}"
            else:
                ref, alt, info = rng.choice("ACGT"), rng.choice("ACGT"), rng.choice(["DP=7;DB", "AF=0.5", "."])
            n_alt = alt.count(",") + 1
            gts = []
            for _ in range(samples):
                gt = rng.choice(["0/0", "0/1", "1|1", "./.", "0|.", "1"])
                ad = ",".join(str(rng.randint(0, 30)) for _ in range(n_alt + 1))
                gts.append(f"{gt}:{rng.choice([str(rng.randint(0, 60)), '.'])}:{ad}")
            ident = rng.choice([f"rs{i}", ".", f"rs{i};rs{i}b"])
            qual = rng.choice([str(rng.randint(1, 99)), "."])
            filt = rng.choice(["PASS", ".", "q10"])
            lines.append("\t".join([c, str(pos), ident, ref, alt, qual, filt, info, "GT:DP:AD", *gts]))
    nl = "\r\n" if crlf else "\n"
    return (nl.join(header + lines) + nl).encode()


def build(path: str, **options: Any) -> None:
    plan_build(path, "vcf", **options).run(run_tasks_locally, force=True)


def read(path: str, partitions: int, **options: Any) -> tuple[list[dict[str, Any]], int]:
    """Rows and the bytes the plan fetches."""
    ds = open_dataset({"path": path, "format": "vcf", **options})
    rows, nbytes = [], 0
    for part in ds.plan(partitions=partitions):
        for s in part:
            nbytes += s.nbytes
            rows.extend(s.get().to_pylist())
    return rows, nbytes


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    calls = tuple(tuple(g["calls"]) for g in row["genotypes"])
    return (row["contigName"], row["start"], row["end"], row["referenceAllele"], tuple(row["alternateAlleles"]),
            row["qual"], calls)


def pysam_keys(path: str, region: tuple[str, int, int] | None = None) -> list[tuple[Any, ...]]:
    """pysam's records mapped to :func:`key`: missing alleles None -> -1, ALT '.' -> [], QUAL '.' -> None."""
    import pysam

    with pysam.VariantFile(path) as vf:
        if region and not Path(path + ".tbi").exists():  # what fetch does, without a tabix index
            recs = [r for r in vf if r.chrom == region[0] and r.start < region[2] and r.stop > region[1]]
        else:
            recs = vf.fetch(*region) if region else vf.fetch()
        return [(r.chrom, r.start, r.stop, r.ref, tuple(r.alts or ()), r.qual,
                 tuple(tuple(-1 if a is None else a for a in s["GT"]) for s in r.samples.values()))
                for r in recs]


@pytest.fixture(scope="module")
def vcfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One call set as plain, gzip and BGZF (with a .tbi for pysam's region queries)."""
    import pysam

    root = tmp_path_factory.mktemp("vcf")
    data = make_vcf(45000, samples=3)  # gzip slices' read-ahead (64 KiB) stays small beside a third of it
    plain = root / "calls.vcf"
    plain.write_bytes(data)
    (root / "calls.gz.vcf.gz").write_bytes(gzip.compress(data))
    bgz = str(root / "calls.bgz.vcf.gz")
    pysam.tabix_compress(str(plain), bgz)
    pysam.tabix_index(bgz, preset="vcf")
    out = {"plain": str(plain), "gzip": str(root / "calls.gz.vcf.gz"), "bgzf": bgz}
    build(out["plain"], indexSpacing="64k")
    build(out["gzip"], gzipSpacing="40000")
    build(out["bgzf"], gzipSpacing="40000")
    return out


@pytest.mark.parametrize("codec", ["plain", "gzip", "bgzf"])
def test_rows_equal_pysam_at_any_partitioning(vcfs: dict[str, str], codec: str) -> None:
    want = pysam_keys(vcfs["bgzf"])
    assert len(want) == 45000
    whole, _ = read(vcfs[codec], 1)
    assert [key(r) for r in whole] == want
    for parts in (2, 7, 300):
        rows, _ = read(vcfs[codec], parts)
        assert rows == whole, parts


def test_tiny_spacing_and_crlf(tmp_path: Path) -> None:
    data = make_vcf(90, samples=2, seed=4, crlf=True)
    path = tmp_path / "crlf.vcf"
    path.write_bytes(data)
    build(str(path), indexSpacing="1")
    lf = tmp_path / "lf.vcf"
    lf.write_bytes(data.replace(b"\r\n", b"\n"))
    want = pysam_keys(str(lf))
    for parts in (1, 5, 200):
        rows, _ = read(str(path), parts)
        assert [key(r) for r in rows] == want, parts


@pytest.mark.parametrize("codec", ["plain", "bgzf"])
def test_region_reads_a_third_of_the_bytes_and_exactly_its_rows(vcfs: dict[str, str], codec: str) -> None:
    size = Path(vcfs[codec]).stat().st_size
    rows, nbytes = read(vcfs[codec], 1, region="chr2")
    assert [key(r) for r in rows] == pysam_keys(vcfs["bgzf"], ("chr2", 0, 100_000_000))
    ds = open_dataset({"path": vcfs[codec], "format": "vcf", "region": "chr2"})
    covered = sum(s.context["end"] - s.context["edge"] for p in ds.plan(partitions=4) for s in p)
    assert 0.25 < covered / ds.indexes[0].manifest["uncompressed_size"] < 0.42  # decoded: a third
    # fetched: a third, plus for gzip the read-ahead past the region's last seek point
    assert 0.25 < nbytes / size < 0.42, nbytes / size
    # 1-based inclusive region == pysam's 0-based half-open fetch(contig, start - 1, end); END-extended
    # deletions that begin before the region but reach into it are part of it, as with tabix
    rows, small = read(vcfs[codec], 1, region="chr2:200000-900000,chr3:5000000")
    want = pysam_keys(vcfs["bgzf"], ("chr2", 199_999, 900_000)) + pysam_keys(vcfs["bgzf"], ("chr3", 4_999_999,
                                                                                             100_000_000))
    assert [key(r) for r in rows] == want and want
    assert small < nbytes


def test_region_with_columns(vcfs: dict[str, str]) -> None:
    rows, _ = read(vcfs["plain"], 2, region="chr1:1-100000", columns="referenceAllele,start")
    want = pysam_keys(vcfs["bgzf"], ("chr1", 0, 100_000))
    assert [(r["referenceAllele"], r["start"]) for r in rows] == [(w[3], w[1]) for w in want]
    assert list(rows[0]) == ["referenceAllele", "start"]


def test_bad_region_is_an_option_error(vcfs: dict[str, str]) -> None:
    with pytest.raises(DataplugError, match="bad region 'chr2:9-3'"):
        read(vcfs["plain"], 1, region="chr2:9-3")


def test_pushed_filters_prune_points(vcfs: dict[str, str]) -> None:
    """What Spark's pushdown worker does: pushFilters, then partitions(); the plan covers about a third."""
    from pyspark.sql.datasource import EqualTo, GreaterThanOrEqual, In

    from pyspark_dataplug.datasource import DataplugPushdownReader, DataplugReader

    opts = {"path": vcfs["plain"], "format": "vcf", "partitions": "4"}
    full = sum(s.nbytes for p in DataplugReader(opts, {}).partitions() for s in p.slices)
    reader = DataplugPushdownReader(opts, {})
    filters = [EqualTo(("contigName",), "chr2"), GreaterThanOrEqual(("start",), 10)]
    assert reader.pushFilters(filters) == filters  # all handed back: Spark applies them to the rows
    pruned = sum(s.nbytes for p in reader.partitions() for s in p.slices)
    assert 0.25 < pruned / full < 0.42
    reader = DataplugPushdownReader(opts, {})
    reader.pushFilters([In(("contigName",), ("chr1", "chr3"))])
    assert 0.58 < sum(s.nbytes for p in reader.partitions() for s in p.slices) / full < 0.75


# -- bad input ------------------------------------------------------------------------------------------------
def test_not_a_vcf_fails_the_build(tmp_path: Path) -> None:
    path = tmp_path / "notes.vcf"
    path.write_bytes(b"these are my notes\nabout variants\n")
    with pytest.raises(FormatError, match=r"notes\.vcf at byte 0: not a VCF"):
        build(str(path))


def test_wrong_column_count_strict_fails_lenient_skips(tmp_path: Path) -> None:
    data = make_vcf(30, samples=2, seed=9)
    lines = data.split(b"\n")
    bad_at = next(i for i, ln in enumerate(lines) if ln and not ln.startswith(b"#")) + 5
    lines[bad_at] = b"\t".join(lines[bad_at].split(b"\t")[:6])  # six columns
    offset = len(b"\n".join(lines[:bad_at])) + 1
    path = tmp_path / "cols.vcf"
    path.write_bytes(b"\n".join(lines))
    build(str(path))
    with pytest.raises(FormatError, match=rf"cols\.vcf at byte {offset}"):
        read(str(path), 3)
    rows, _ = read(str(path), 3, validationStringency="LENIENT")
    assert len(rows) == 29


def test_truncated_object_fails(tmp_path: Path) -> None:
    data = make_vcf(30, samples=2, seed=3)
    path = tmp_path / "cut.vcf"
    path.write_bytes(data[: len(data) - 25])  # the last line loses its genotype columns
    build(str(path))
    with pytest.raises(FormatError, match=r"cut\.vcf at byte \d+"):
        read(str(path), 2)


def test_header_only_and_sites_only(tmp_path: Path) -> None:
    head = tmp_path / "empty.vcf"
    head.write_bytes(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    build(str(head))
    assert read(str(head), 3) == ([], 0)
    sites = tmp_path / "sites.vcf"
    sites.write_bytes(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                      b"1\t5\t.\tA\tG\t.\t.\t.\n1\t9\t.\tC\tT\t3\tPASS\t.\n")
    build(str(sites), indexSpacing="7")
    rows, _ = read(str(sites), 2)
    assert [(r["contigName"], r["start"], r["end"], r["qual"]) for r in rows] == [("1", 4, 5, None), ("1", 8, 9, 3.0)]


# -- Spark: the index job, SQL, pushdown on and off ------------------------------------------------------------
@pytest.mark.parametrize("pushdown", ["false", "true"])
def test_spark_sql_region_query(spark: Any, s3_store: Any, pushdown: str) -> None:
    from pyspark_dataplug import build_index

    data = make_vcf(1500, seed=17)
    uri = s3_store.put("calls/x.vcf", data)
    local = Path(s3_store.root.replace("s3://", "/tmp/vcf-oracle-")) / "x.vcf"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    build_index(spark, uri, format="vcf", indexSpacing="16k", **s3_store.options)
    spark.conf.set("spark.sql.python.filterPushdown.enabled", pushdown)
    try:
        df = read_dataplug(spark, uri, {"format": "vcf", "partitions": 5, **s3_store.options})
        assert df.count() == 1500
        df.createOrReplaceTempView("calls")
        got = spark.sql("SELECT contigName, start, end FROM calls WHERE contigName = 'chr2' AND start >= 100000 "
                        "AND start < 900000 ORDER BY start").collect()
        want = [(k[0], k[1], k[2]) for k in pysam_keys(str(local), ("chr2", 0, 100_000_000))
                if 100_000 <= k[1] < 900_000]
        assert [tuple(r) for r in got] == want and want
        opts = ", ".join(f"{k} '{v}'" for k, v in s3_store.options.items())
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW region USING dataplug OPTIONS (path '{uri}', format 'vcf', "
                  f"region 'chr3:1-500000', {opts})")
        got = spark.sql("SELECT contigName, start, end FROM region").collect()
        want = [(k[0], k[1], k[2]) for k in pysam_keys(str(local), ("chr3", 0, 500_000))]
        assert [tuple(r) for r in got] == want and want
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")


def test_region_is_genomic_for_vcf_and_the_s3_region_elsewhere(tmp_path: Path) -> None:
    from pyspark_dataplug.plan import parse_read_options, storage_options

    _, opts, _ = parse_read_options({"path": "s3://b/x.vcf", "region": "chr1:5-9", "awsRegion": "eu-west-3"})
    assert opts["region"] == "chr1:5-9" and storage_options(opts).region == "eu-west-3"
    _, opts, _ = parse_read_options({"path": "s3://b/x.csv", "region": "eu-west-3"})  # the name it had before
    assert storage_options(opts).region == "eu-west-3"
    _, opts, _ = parse_read_options({"path": "s3://b/x.fastq"}, defaults={"region": "ap-south-1"})
    assert storage_options(opts).region == "ap-south-1"


def damaged_vcf(path: Path, build_index: Any) -> list[tuple[Any, ...]]:
    """A VCF whose chr1 has a broken line that its index (built by ``build_index(path)`` first) cannot see.

    A read that prunes to chr2 never meets the damage; one that reads chr1 fails at its byte. Returns
    pysam's chr2 records (:func:`key` tuples), what a chr2 query must return.
    """
    import os

    data = make_vcf(6000, samples=2, seed=23)
    path.write_bytes(data)
    chr2 = [k for k in pysam_keys(str(path)) if k[0] == "chr2"]
    build_index(str(path))
    lines = data.split(b"\n")
    chr1 = [i for i, ln in enumerate(lines) if ln.startswith(b"chr1\t")]
    victim = chr1[len(chr1) // 2]
    lines[victim] = b"chr1\tXXXX" + lines[victim][9:]  # same length: POS is no number now
    st = path.stat()
    path.write_bytes(b"\n".join(lines))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the index still takes it for the indexed object
    return chr2


def test_spark_pushdown_really_prunes(spark: Any, tmp_path: Path) -> None:
    """With pushdown on, a chr2 query never reads chr1's bytes: damage them (keeping the index fresh) and see.

    With the conf off nothing is pruned, so the same query reads the damage and fails: that is what
    tells the two apart, since both return the same rows when the object is whole.
    """
    from pyspark_dataplug import build_index

    path = tmp_path / "damaged.vcf"
    chr2 = damaged_vcf(path, lambda p: build_index(spark, p, format="vcf", indexSpacing="8k"))
    query = "contigName = 'chr2'"
    try:
        spark.conf.set("spark.sql.python.filterPushdown.enabled", "true")
        got = read_dataplug(spark, str(path), {"partitions": 6}).where(query).select("start").collect()
        assert sorted(r[0] for r in got) == sorted(k[1] for k in chr2)
        spark.conf.set("spark.sql.python.filterPushdown.enabled", "false")
        with pytest.raises(Exception, match="damaged.vcf at byte"):
            read_dataplug(spark, str(path), {"partitions": 6}).where(query).collect()
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")
