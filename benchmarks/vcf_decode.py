"""VCF decoding speed, one process, no Spark: ``_vcfparse.decode_lines`` against pysam (htslib).

Generates VCFs with GT:AD:DP:GQ:PL genotypes (by default 20,000 rows x 100 samples and 2,000 rows x
1,000 samples), then times ``decode_lines`` over the whole data section (every column, best of 3) and
pysam iterating the records and reading every FORMAT value of every sample, plus ``positions``.

    .venv/bin/python benchmarks/vcf_decode.py [--shapes 20000x100,2000x1000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark_dataplug.formats._vcfparse import VCFHeader, decode_lines, positions  # noqa: E402

HEADER = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=20,length=64444167>",
    '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
    '##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">',
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
    '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred likelihoods">',
]


def generate(rows: int, samples: int, seed: int = 0) -> tuple[str, str]:
    """Header text and data text of a biallelic VCF with realistic-looking genotype values."""
    rng = np.random.default_rng(seed)
    head = "\n".join([*HEADER, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
                      + "\t".join(f"S{i}" for i in range(samples))]) + "\n"
    gts = np.array(["0/0", "0/1", "1/1", "./.", "0|1"])
    lines = []
    pos = 10000
    for r in range(rows):
        pos += int(rng.integers(1, 200))
        g = gts[rng.choice(5, samples, p=[0.6, 0.2, 0.1, 0.05, 0.05])]
        ad = rng.integers(0, 40, (samples, 2))
        dp = ad.sum(1)
        gq = rng.integers(0, 99, samples)
        pl = rng.integers(0, 500, (samples, 3))
        cells = [f"{g[i]}:{ad[i, 0]},{ad[i, 1]}:{dp[i]}:{gq[i]}:{pl[i, 0]},{pl[i, 1]},{pl[i, 2]}"
                 for i in range(samples)]
        lines.append(f"20\t{pos}\trs{r}\tA\tG\t{rng.integers(10, 999)}.5\tPASS\tAC=3;AF=0.25;AN={2 * samples};DP=300"
                     "\tGT:AD:DP:GQ:PL\t" + "\t".join(cells))
    return head, "\n".join(lines) + "\n"


def best_of(n: int, f) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    import pysam

    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="20000x100,2000x1000")
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for shape in args.shapes.split(","):
        rows, samples = (int(x) for x in shape.split("x"))
        head, data = generate(rows, samples)
        path = Path(args.dir) / f"vcf_decode_{rows}x{samples}.vcf"
        path.write_text(head + data)
        header = VCFHeader.parse(head)
        buf = np.frombuffer(data.encode(), np.uint8)
        assert decode_lines(buf, header).num_rows == rows
        ours = best_of(3, lambda: decode_lines(buf, header))  # noqa: B023
        pos = best_of(3, lambda: positions(buf))  # noqa: B023

        def with_pysam() -> None:
            with pysam.VariantFile(str(path)) as vf:  # noqa: B023
                for rec in vf:
                    for s in rec.samples.values():
                        s.values()

        theirs = best_of(1, with_pysam)
        mb = len(buf) / 1e6
        print(f"{rows} rows x {samples} samples ({mb:.1f} MB): decode_lines {ours:.2f} s "
              f"({rows / ours / 1e3:.1f}k variants/s, {rows * samples / ours / 1e6:.2f}M genotypes/s); "
              f"pysam {theirs:.2f} s ({rows / theirs / 1e3:.2f}k variants/s) -> {theirs / ours:.1f}x; "
              f"positions {pos:.3f} s ({mb / pos:.0f} MB/s)")
        path.unlink()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
