"""Benchmark sections for FASTA and VCF: dataplug vs ``spark.read.text`` on the same file, and the
reference readers (pysam, Biopython) in one process, in bases/s and variants/s.

Imported by ``run.py`` (sections ``fasta`` and ``vcf``); the files are generated once into ``bench-data/``
with a fixed seed and reused while their size matches.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from run import Ctx, Section

#: the FORMAT every generated sample carries: the fields a joint-called cohort VCF has
VCF_FORMAT = "GT:AD:DP:GQ:PL"


def ensure_fasta(folder: Path, size_mb: float, seed: int) -> tuple[Path, int]:
    """A reference-like FASTA: five chromosomes, 60 bases per line, soft-masked runs and N runs."""
    path = folder / f"bench-{int(size_mb)}mb.fa"
    bases_total = int(size_mb * 1e6 * 60 / 61)
    if path.exists():
        return path, bases_total
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTacgtNN", np.uint8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        per = bases_total // 5
        for c in range(5):
            n = per if c < 4 else bases_total - 4 * per
            seq = alphabet[rng.integers(0, 8, n)]
            seq[: min(n, 10_000)] = ord("N")  # telomere-like N runs
            f.write(f">chr{c + 1} generated chromosome {c + 1}\n".encode())
            full = n // 60 * 60
            lines = np.empty((n // 60, 61), dtype=np.uint8)
            lines[:, :60] = seq[:full].reshape(-1, 60)
            lines[:, 60] = ord("\n")
            out = lines.reshape(-1)
            if n > full:  # the ragged last line
                out = np.concatenate((out, seq[full:], np.array([10], np.uint8)))
            f.write(out.tobytes())
    tmp.rename(path)
    return path, bases_total


def ensure_vcf(folder: Path, size_mb: float, seed: int, samples: int = 100) -> tuple[Path, int]:
    """A cohort VCF: ``samples`` samples with GT:AD:DP:GQ:PL on three contigs, some multi-allelic sites."""
    path = folder / f"bench-{int(size_mb)}mb-{samples}s.vcf"
    count_path = path.with_suffix(".count")
    if path.exists() and count_path.exists():
        return path, int(count_path.read_text())
    rng = random.Random(seed)
    pool = []
    for _ in range(997):
        gt = rng.choice(["0/0", "0/0", "0/1", "1/1", "0|1", "./."])
        ref, alt = rng.randint(0, 40), rng.randint(0, 40)
        pool.append(f"{gt}:{ref},{alt}:{ref + alt}:{rng.randint(0, 99)}:{rng.randint(0, 255)},"
                    f"{rng.randint(0, 255)},{rng.randint(0, 255)}")
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID=chr{c},length=250000000>" for c in (1, 2, 3)),
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="allele count">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="allele frequency">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">',
        '##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="allele depths">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="genotype quality">',
        '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="phred likelihoods">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(samples)),
    ]
    target = int(size_mb * 1e6)
    tmp = path.with_suffix(".tmp")
    n = 0
    with tmp.open("w") as f:
        f.write("\n".join(header) + "\n")
        written = 0
        per_line = 60 + samples * 20
        lines_total = max(3, target // per_line)
        for c in (1, 2, 3):
            pos = 1
            for _ in range(lines_total // 3):
                pos += rng.randint(1, 400)
                gts = "\t".join(pool[rng.randrange(997)] for _ in range(samples))
                line = (f"chr{c}\t{pos}\trs{n}\t{rng.choice('ACGT')}\t{rng.choice('ACGT')}\t{rng.randint(10, 99)}\t"
                        f"PASS\tAC={rng.randint(1, 9)};AF=0.{rng.randint(1, 9)};DP={rng.randint(50, 900)}"
                        f"{';DB' if rng.random() < 0.3 else ''}\t{VCF_FORMAT}\t{gts}\n")
                f.write(line)
                written += len(line)
                n += 1
    tmp.rename(path)
    count_path.write_text(str(n))
    return path, n


def section_fasta(ctx: Ctx) -> Section:
    """9. FASTA -> Spark rows of 1 Mbp: dataplug vs ``spark.read.text``; pysam and Biopython single-process."""
    from run import DATA, SEED, Check, Section, Series, check_count, interleave, noop, progress, ratio

    size_mb = min(ctx.data.info.get("size_mb", 300), 300)
    path, bases = ensure_fasta(DATA, size_mb, SEED)
    size = path.stat().st_size
    sec = Section("fasta", f"9. FASTA ({size / 1e6:.0f} MB, 5 chromosomes) -> Spark rows (noop write)")
    ctx.ensure_index(path, "fasta")
    dp = Series("dataplug fasta (1 Mbp rows, default partitions)", size)
    sp = Series("spark.read.text (lines)", size)
    got = ctx.dataplug(path).selectExpr("sum(length(sequence))").collect()[0][0]
    check_count("dataplug fasta bases", int(got), bases)
    progress("fasta: warm-up done (bases checked)")
    interleave([(dp, lambda: noop(ctx.dataplug(path))),
                (sp, lambda: noop(ctx.spark.read.text(str(path))))], ctx.runs, "fasta")
    # the reference readers, one process
    import pysam
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    ps = Series("pysam.FastxFile, one process", size)
    bp = Series("Biopython SimpleFastaParser, one process", size)

    def run_pysam() -> None:
        with pysam.FastxFile(str(path)) as f:
            check_count("pysam bases", sum(len(r.sequence) for r in f), bases)

    def run_bio() -> None:
        with path.open() as f:
            check_count("biopython bases", sum(len(s) for _, s in SimpleFastaParser(f)), bases)

    interleave([(ps, run_pysam), (bp, run_bio)], max(1, ctx.runs // 2), "fasta-ref")
    sec.series = [dp, sp, ps, bp]
    sec.checks = [
        Check("dataplug fasta vs spark.read.text on the same file", ratio(dp, sp), None, None, "x"),
        Check("dataplug fasta (local[2]) vs pysam one process", ratio(dp, ps), None, None, "x"),
        Check("dataplug fasta bases/s (median)", bases / dp.median / 1e6, None, None, " Mbp/s"),
    ]
    sec.notes.append(f"{bases / 1e6:.0f} Mbp; MB/s are of the file's bytes (61 per 60 bases).")
    return sec


def section_vcf(ctx: Ctx) -> Section:
    """10. VCF, 100 samples -> Glow-schema rows: dataplug vs ``spark.read.text``; pysam single-process."""
    from run import DATA, SEED, Check, Section, Series, check_count, interleave, noop, progress, ratio

    size_mb = min(ctx.data.info.get("size_mb", 300), 100)
    path, variants = ensure_vcf(DATA, size_mb, SEED)
    size = path.stat().st_size
    sec = Section("vcf", f"10. VCF ({size / 1e6:.0f} MB, {variants} variants x 100 samples, {VCF_FORMAT}) -> "
                         "Spark rows (noop write)")
    ctx.ensure_index(path, "vcf")
    dp = Series("dataplug vcf (all columns)", size)
    sp = Series("spark.read.text (lines)", size)
    check_count("dataplug vcf", ctx.dataplug(path).count(), variants)
    progress("vcf: warm-up done (rows checked)")
    interleave([(dp, lambda: noop(ctx.dataplug(path))),
                (sp, lambda: noop(ctx.spark.read.text(str(path))))], ctx.runs, "vcf")
    # one process: our decoder (the slices of a 1-partition plan) vs pysam reading every field
    import pysam

    from pyspark_dataplug.plan import open_dataset

    ours = Series("dataplug vcf decode, one process (slices, no Spark)", size)
    ps = Series("pysam VariantFile, all INFO and FORMAT values, one process", size)

    def run_ours() -> None:
        n = 0
        for part in open_dataset({"path": str(path), "format": "vcf"}).plan(partitions=1):
            for s in part:
                for b in s.batches():
                    n += b.num_rows
        check_count("dataplug one process", n, variants)

    def run_pysam() -> None:
        n = 0
        with pysam.VariantFile(str(path)) as vf:
            for rec in vf:
                dict(rec.info)
                for smp in rec.samples.values():
                    smp.values()
                n += 1
        check_count("pysam", n, variants)

    interleave([(ours, run_ours), (ps, run_pysam)], max(1, ctx.runs // 2), "vcf-ref")
    sec.series = [dp, sp, ours, ps]
    sec.checks = [
        Check("dataplug vcf vs spark.read.text on the same file", ratio(dp, sp), None, None, "x"),
        Check("variants/s, dataplug decode one process", variants / ours.median, None, None, ""),
        Check("variants/s, pysam one process", variants / ps.median, None, None, ""),
        Check("dataplug decode vs pysam, one process each", ratio(ours, ps), 1.0, ">=", "x"),
    ]
    return sec
