"""One SQL question per format, as a user of that field would ask it, with its answer computed without dataplug.

Each case writes its file with the generators the format's own tests use (Biopython, pysam, laspy, copclib,
rasterio, pyImzML and python-casacore write or read the data; our code never computes an expected value), and
gives the ``CREATE TEMPORARY VIEW ... USING dataplug`` options, the ``SELECT`` and the rows it must return.
``test_sql_formats.py`` runs them on a classic session and ``test_connect.py`` through Spark Connect.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data import fastq_reference, make_csv, make_fastq, make_text
from pointcloud_data import EXTENT, las_bytes, make_las, write_copc


@dataclass(frozen=True)
class SqlCase:
    """A file, the view over it, one query and its answer (``rel``: tolerance for floating-point columns)."""

    name: str
    path: str
    format: str
    sql: str  # selects FROM the view named as the case
    want: list[tuple[Any, ...]]
    view: dict[str, str] = field(default_factory=dict)  # view options besides path and format
    build: dict[str, str] = field(default_factory=dict)  # build_index options (spacings)
    rel: float = 1e-12

    def create_view(self, extra: dict[str, str] | None = None) -> str:
        opts = {"path": self.path, "format": self.format, **self.view, **(extra or {})}
        return (f"CREATE OR REPLACE TEMPORARY VIEW {self.name} USING dataplug OPTIONS ("
                + ", ".join(f"{k} '{v}'" for k, v in opts.items()) + ")")


def assert_rows(case: SqlCase, got: Sequence[Sequence[Any]]) -> None:
    """Exactly the wanted rows in order; floats within ``case.rel`` (sums over partitions add in another order)."""
    got = [tuple(r) for r in got]
    assert len(got) == len(case.want), (case.name, len(got), len(case.want))
    assert case.want, f"{case.name}: a query that selects nothing proves nothing"
    for g, w in zip(got, case.want, strict=True):
        assert len(g) == len(w), (case.name, g, w)
        for a, b in zip(g, w, strict=True):
            if isinstance(b, float):
                assert a == pytest.approx(b, rel=case.rel, abs=1e-9), (case.name, g, w)
            else:
                assert a == b, (case.name, g, w)


def _text(root: Path) -> SqlCase:
    data = make_text(4000, seed=21)
    path = root / "log.txt"
    path.write_bytes(data)
    lines = data.decode().split("\n")[:-1]  # the trailing line break ends the last line
    want = [(len(lines), sum(len(s) for s in lines), sum("日本語" in s for s in lines), max(len(s) for s in lines))]
    return SqlCase("text", str(path), "text",
                   "SELECT count(*) AS lines, sum(length(value)) AS chars, "
                   "count_if(value LIKE '%日本語%') AS japanese, max(length(value)) AS longest FROM text",
                   want, build={"indexSpacing": "8k"})


def _csv(root: Path) -> SqlCase:
    data = make_csv(3000, seed=22)
    path = root / "table.csv"
    path.write_bytes(data)
    reader = csv.reader(io.StringIO(data.decode(), newline=""), escapechar="\\", doublequote=False)
    next(reader)
    groups: dict[Any, list[float]] = defaultdict(list)
    count: dict[Any, int] = defaultdict(int)
    for rec in reader:
        if not rec:
            continue  # blank lines are skipped
        name = rec[1] or None  # an empty field is null
        count[name] += 1
        if rec[2]:
            groups[name].append(float(rec[2]))
    keys = sorted(count, key=lambda k: (k is not None, k or ""))  # NULLS FIRST, as Spark orders ascending
    want = [(k, count[k], float(sum(groups[k])) if groups[k] else None) for k in keys]
    return SqlCase("csv", str(path), "csv",
                   "SELECT name, count(*) AS n, sum(CAST(score AS DOUBLE)) AS total FROM csv GROUP BY name "
                   "ORDER BY name", want, view={"header": "true"}, build={"indexSpacing": "8k"}, rel=1e-9)


def _fastq_gz(root: Path) -> SqlCase:
    data = make_fastq(4000, seed=23)
    path = root / "run.fastq.gz"
    path.write_bytes(gzip.compress(data))
    long = [r for r in fastq_reference(data) if len(r[2]) > 100]
    want = [(len(long), sum(len(r[2]) for r in long), min(r[0] for r in long))]
    return SqlCase("fastq", str(path), "fastq",
                   "SELECT count(*) AS reads, sum(length(sequence)) AS bases, min(id) AS first_id FROM fastq "
                   "WHERE length(sequence) > 100", want, build={"gzipSpacing": "40000"})


def _fasta(root: Path) -> SqlCase:
    from Bio.SeqIO.FastaIO import SimpleFastaParser
    from test_fasta import random_fasta

    data = random_fasta(random.Random(24), 60, regular=True)
    path = root / "ref.fa"
    path.write_bytes(data)
    contigs = [(t.split(None, 1)[0], s) for t, s in SimpleFastaParser(io.StringIO(data.decode()))]
    rows = [(name, len(s), sum(s.upper().count(b) for b in "GC")) for name, s in contigs]
    want = sorted(rows, key=lambda r: (-r[1], r[0]))
    return SqlCase("fasta", str(path), "fasta",
                   "SELECT id, sum(length(sequence)) AS length, "
                   "sum(length(sequence) - length(translate(upper(sequence), 'GC', ''))) AS gc "
                   "FROM fasta GROUP BY id ORDER BY length DESC, id", want,
                   view={"sequenceChunkSize": "500"}, build={"indexSpacing": "4k"})


def _vcf(root: Path) -> SqlCase:
    import pysam
    from test_vcf import make_vcf

    plain = root / "calls.vcf"
    plain.write_bytes(make_vcf(3000, samples=3, seed=25))
    path = str(root / "calls.vcf.gz")
    pysam.tabix_compress(str(plain), path)  # bgzip, as variant calls are shipped
    lo, hi = 200_000, 800_000
    with pysam.VariantFile(str(plain)) as vf:
        want = [(r.chrom, r.pos, r.ref, list(r.alts or ()), r.qual) for r in vf
                if r.chrom == "chr2" and lo <= r.pos <= hi]
    return SqlCase("vcf", path, "vcf",
                   "SELECT contigName, start + 1 AS pos, referenceAllele, alternateAlleles, qual FROM vcf "
                   f"WHERE contigName = 'chr2' AND start + 1 BETWEEN {lo} AND {hi} ORDER BY pos", want,
                   build={"gzipSpacing": "40000"})


def _box_query(name: str) -> tuple[str, tuple[float, float, float, float]]:
    x0, y0, _, x1, y1, _ = EXTENT
    box = (x0 + 0.2 * (x1 - x0), y0 + 0.35 * (y1 - y0), x0 + 0.45 * (x1 - x0), y0 + 0.6 * (y1 - y0))
    sql = (f"SELECT classification, count(*) AS points, avg(z) AS mean_z, max(intensity) AS max_intensity FROM {name} "
           f"WHERE x BETWEEN {box[0]} AND {box[2]} AND y BETWEEN {box[1]} AND {box[3]} "
           "GROUP BY classification ORDER BY classification")
    return sql, box


def _box_answer(points: Any, box: tuple[float, float, float, float]) -> list[tuple[Any, ...]]:
    x, y, z = (np.asarray(points[c], np.float64) for c in ("x", "y", "z"))
    cls, inten = np.asarray(points["classification"]), np.asarray(points["intensity"])
    inside = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
    assert 0 < inside.sum() < len(x)
    return [(int(c), int((inside & (cls == c)).sum()), float(z[inside & (cls == c)].mean()),
             int(inten[inside & (cls == c)].max())) for c in sorted(set(cls[inside].tolist()))]


def _pointcloud(fmt: str, pf: int, version: str, compress: bool) -> Callable[[Path], SqlCase]:
    def make(root: Path) -> SqlCase:
        las = make_las(pf, version, 30_000, seed=26)
        path = root / f"tile.{fmt}"
        path.write_bytes(las_bytes(las, compress=compress))
        sql, box = _box_query(fmt)
        return SqlCase(fmt, str(path), fmt, sql, _box_answer(las.points, box), rel=1e-9,
                       build={} if compress else {"chunkPoints": "4000"})

    return make


def _copc(root: Path) -> SqlCase:
    import laspy

    path = root / "tile.copc.laz"
    write_copc(str(path), 6, 30_000, seed=27)
    with laspy.CopcReader(open(path, "rb")) as reader:  # noqa: SIM115 - the reader closes it
        points = reader.query()
    sql, box = _box_query("copc")
    return SqlCase("copc", str(path), "copc", sql, _box_answer(points, box), rel=1e-9)


def _cog(root: Path) -> SqlCase:
    from test_cog import reference, write_cog

    path = root / "scene.tif"
    write_cog(path, (3, 700, 900), "uint16", seed=28, COMPRESS="DEFLATE", PREDICTOR="2", BLOCKSIZE=256)
    tiles = reference(str(path), levels=[1])  # tifffile decodes the whole overview, cut into tiles
    want = [(r[1], r[2], r[5], r[6], hashlib.sha256(r[9]).hexdigest())
            for r in sorted(tiles, key=lambda r: (r[2], r[1]))]
    return SqlCase("cog", str(path), "cog",
                   "SELECT tile_col, tile_row, width, height, sha2(data, 256) AS sha256 FROM cog WHERE level = 1 "
                   "ORDER BY tile_row, tile_col", want, view={"level": "all"})


def _imzml(root: Path) -> SqlCase:
    from test_imzml import grid_spectra, write

    path = root / "img.imzML"
    rows = write(path, grid_spectra(14, 9, points=60, seed=29))
    lo, hi = 400.0, 600.0
    want = sorted((r["y"], r["x"], float(r["intensity"][(r["mz"] >= lo) & (r["mz"] <= hi)].astype(np.float64).sum()))
                  for r in rows)
    return SqlCase("imzml", str(path), "imzml",
                   "SELECT y, x, aggregate(zip_with(mz, intensity, (m, i) -> IF(m BETWEEN "
                   f"{lo} AND {hi}, i, 0)), 0D, (a, v) -> a + v) AS ion FROM imzml ORDER BY y, x", want, rel=1e-6)


def _ms(root: Path) -> SqlCase:
    import casacore.tables as ct
    from test_ms import write_ms

    path = root / "obs.ms"
    write_ms(path, "tiled", seed=30, nslots=3)
    with ct.table(str(path), ack=False) as t:
        a1, a2, data, flag = (t.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "DATA", "FLAG"))
    amp = np.abs(data.astype(np.complex128))
    want = []
    for p, q in sorted(set(zip(a1.tolist(), a2.tolist(), strict=True))):
        sel = (a1 == p) & (a2 == q)
        good = ~flag[sel]
        if good.any():
            want.append((p, q, float(amp[sel][good].mean()), int(good.sum())))
    return SqlCase("ms", str(path), "ms",
                   "SELECT ANTENNA1, ANTENNA2, avg(sqrt(v.DATA_real * v.DATA_real + v.DATA_imag * v.DATA_imag)) "
                   "AS mean_amp, count(*) AS samples FROM ms "
                   "LATERAL VIEW explode(arrays_zip(DATA_real, DATA_imag, FLAG)) c AS v WHERE NOT v.FLAG "
                   "GROUP BY ANTENNA1, ANTENNA2 ORDER BY ANTENNA1, ANTENNA2", want,
                   view={"columns": "ANTENNA1,ANTENNA2,FLAG,DATA_real,DATA_imag"}, rel=1e-6)


CASES: dict[str, Callable[[Path], SqlCase]] = {
    "text": _text,
    "csv": _csv,
    "fastq": _fastq_gz,
    "fasta": _fasta,
    "vcf": _vcf,
    "las": _pointcloud("las", 3, "1.2", compress=False),
    "laz": _pointcloud("laz", 6, "1.4", compress=True),
    "copc": _copc,
    "cog": _cog,
    "imzml": _imzml,
    "ms": _ms,
}
