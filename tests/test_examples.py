"""The examples run as documented, and give the numbers an independent parse gives."""

from __future__ import annotations

import gzip
import importlib
import os
import sys
from pathlib import Path

import pytest
from data import fastq_reference, make_fastq

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    # importable by name (and so by Dask's worker processes, which inherit sys.path) like a user's script
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def _engine_example(name: str, s3_store, **kwargs) -> None:
    """One seed-example engine over the S3 endpoint: its counts equal Biopython's, and its index was built."""
    data = make_fastq(3000, seed=40)
    uri = s3_store.put(f"{name}/SRR1.fastq.gz", gzip.compress(data))
    example = _load(name)
    result = example.run(uri, 6, {"endpoint_url": s3_store.options["endpointUrl"]}, **kwargs)
    ref = fastq_reference(data)
    bases = sum(len(r[2]) for r in ref)
    assert result["slices"] == 6 and result["reads"] == len(ref) and result["bases"] == bases
    assert result["gc"] == sum(r[2].count("G") + r[2].count("C") for r in ref) / bases


def test_dask_example_over_s3(s3_store):
    """Index tasks on the dask.distributed workers (joblib's dask backend), then the bag on the same cluster."""
    _engine_example("fastq_gzip_dask", s3_store, workers=2, processes=True)


def test_pool_example_over_s3(s3_store):
    """Index tasks in loky's processes, slices in a spawned multiprocessing pool."""
    _engine_example("fastq_gzip_pool", s3_store, workers=2)


def test_ray_example_over_s3(s3_store, monkeypatch):
    """Index tasks through joblib's ray backend, slices as Ray tasks, on a local Ray instance of 2 CPUs."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    # Ray workers find the example's modules as a script's directory would be found: on their PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLES), *sys.path]))
    _engine_example("fastq_gzip_ray", s3_store, workers=2)


def test_spark_example(spark, tmp_path):
    example = _load("fastq_gzip_spark")
    uri = example.sample(tmp_path / "s.fastq.gz", reads=2000)
    result = example.run(spark, uri, partitions=5)
    ref = fastq_reference(gzip.decompress(Path(uri).read_bytes()))
    assert result["partitions"] == 5 and result["reads"] == len(ref)
    assert result["long_reads"] == sum(len(r[2]) >= 100 for r in ref)


def test_fasta_reference_example_reads_with_its_fai(spark, tmp_path):
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    example = _load("fasta_reference_spark")
    uri = example.sample(tmp_path / "ref.fa", chromosomes=2, bases=1_500_000)
    result = example.run(spark, uri, partitions=3)
    assert not Path(uri + ".dataplug").exists()  # the .fai was the index
    want = []
    with open(uri) as f:
        for title, seq in SimpleFastaParser(f):
            for w in range(0, len(seq), 1_000_000):
                window = seq[w: w + 1_000_000]
                want.append((title.split()[0], w // 1_000_000, (window.count("G") + window.count("C")) / len(window)))
    assert [(r["id"], r["window_mbp"]) for r in result] == [(w[0], w[1]) for w in want]
    assert all(abs(r["gc"] - w[2]) < 1e-12 for r, w in zip(result, want, strict=True))


def test_vcf_region_example(spark, tmp_path):
    import pysam

    example = _load("vcf_region_spark")
    uri = example.sample(tmp_path / "cohort.vcf", per_contig=1500, samples=6)
    result = example.run(spark, uri, "chr2:200000-600000")
    with pysam.VariantFile(uri) as vf:
        recs = [r for r in vf if r.chrom == "chr2" and r.start < 600_000 and r.stop > 199_999]
    afs = []
    for r in recs:
        alleles = [a for s in r.samples.values() for a in s["GT"] if a is not None]
        afs.append(sum(alleles) / len(alleles))
    assert result["variants"] == len(recs) > 0
    assert result["first_start"] == recs[0].start and result["last_start"] == recs[-1].start
    assert abs(result["mean_af"] - sum(afs) / len(afs)) < 1e-12


def test_cog_bbox_example_with_slices(tmp_path):
    """The slice (no Spark) path of the COG example; its Spark path shares ``tile_stats``."""
    import numpy as np
    import rasterio

    example = _load("cog_bbox_stats")
    uri = example.sample(tmp_path / "scene.tif")
    result = example.run_slices(uri, "503000,4590000,510000,4597000", workers=2)
    with rasterio.open(uri) as src:
        pixels = src.read()
    # tiles of 256 pixels (2.56 km) meeting x 503000-510000, y 4590000-4597000: columns 1-3, rows 1-3 (cropped)
    want = pixels[:, 256: 1024, 256: 1024]
    assert sorted(result) == [0, 1, 2]
    for b, r in result.items():
        assert r["pixels"] == want[b].size
        assert abs(r["mean"] - want[b].mean(dtype=np.float64)) < 1e-9
        assert (r["min"], r["max"]) == (want[b].min(), want[b].max())


def test_cog_bbox_example_with_spark(spark, tmp_path):
    example = _load("cog_bbox_stats")
    uri = example.sample(tmp_path / "scene.tif")
    box = "503000,4590000,510000,4597000"
    assert example.run_spark(spark, uri, box) == example.run_slices(uri, box, workers=1)


def test_lidar_box_sql_example(spark, tmp_path):
    import laspy
    import numpy as np

    example = _load("lidar_box_sql")
    uri = example.sample(tmp_path / "tile.laz", points=200_000)
    result = example.run(spark, uri, "500100,4600100,500300,4600300")
    las = laspy.read(uri)
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    inside = (x >= 500100) & (x <= 500300) & (y >= 4600100) & (y <= 4600300)
    cls = np.asarray(las.classification)
    want = [(int(c), int((inside & (cls == c)).sum())) for c in sorted(set(cls[inside].tolist()))]
    assert [(r["classification"], r["points"]) for r in result] == want and want
    for r in result:
        sel = inside & (cls == r["classification"])
        assert abs(r["mean_z"] - z[sel].mean()) < 1e-9 and r["max_z"] == z[sel].max()


def test_cog_ndvi_over_tiles(spark, tmp_path):
    import numpy as np
    import rasterio

    example = _load("cog_bbox_stats")
    uri = example.sample(tmp_path / "scene.tif")
    rows = example.ndvi(spark, uri, "503000,4590000,510000,4597000", red=0, nir=2)
    with rasterio.open(uri) as src:
        px = src.read().astype(np.float64)
    assert [(r["tile_col"], r["tile_row"]) for r in rows] == [(c, r) for r in (1, 2, 3) for c in (1, 2, 3)]
    for r in rows:
        t = px[:, r["tile_row"] * 256:(r["tile_row"] + 1) * 256, r["tile_col"] * 256:(r["tile_col"] + 1) * 256]
        want = ((t[2] - t[0]) / (t[2] + t[0])).mean()
        assert r["pixels"] == t[0].size and abs(r["ndvi"] - want) < 1e-12


def test_ms_baselines_example(spark, tmp_path):
    import casacore.tables as ct
    import numpy as np

    example = _load("ms_baselines_spark")
    uri = example.sample(tmp_path / "obs.ms", antennas=6, slots=8)
    rows = example.run(spark, uri)
    with ct.table(uri, ack=False) as t:
        a1, a2, data, flag = (t.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "DATA", "FLAG"))
    pairs = sorted(set(zip(a1.tolist(), a2.tolist(), strict=True)))
    assert [(r["a1"], r["a2"]) for r in rows] == pairs and len(pairs) == 15
    amp = np.abs(data.astype(np.complex128))
    for r in rows:
        sel = (a1 == r["a1"]) & (a2 == r["a2"])
        good = ~flag[sel]
        assert abs(r["mean_amp"] - amp[sel][good].mean()) < 1e-6
        assert abs(r["unflagged"] - good.mean()) < 1e-12


def test_imzml_ion_image_example(spark, tmp_path):
    import numpy as np
    from pyimzml.ImzMLParser import ImzMLParser

    example = _load("imzml_ion_image_spark")
    uri = example.sample(tmp_path / "image.imzML", width=12, height=8, points=120)
    rows = example.run(spark, uri, 415.0, 435.0)
    p = ImzMLParser(uri)
    want = {}
    for i, (x, y, _z) in enumerate(p.coordinates):
        mz, inten = p.getspectrum(i)
        want[(x, y)] = float(np.asarray(inten, np.float64)[(mz >= 415.0) & (mz <= 435.0)].sum())
    assert [(r["x"], r["y"]) for r in rows] == sorted(want, key=lambda k: (k[1], k[0]))
    for r in rows:
        assert abs(r["ion"] - want[(r["x"], r["y"])]) < 1e-6 * max(1.0, want[(r["x"], r["y"])])
    assert rows[-1]["ion"] > rows[0]["ion"]  # the peak grows to the right


def test_demo_reads_one_gz_as_many_tasks(spark, tmp_path, capsys):
    """`make demo`'s first step: spark.read.text reads the .gz as 1 task, dataplug as 8, with the same reads."""
    demo = _load("demo")
    path = demo.write_fastq_gz(tmp_path / "reads_1.fastq.gz", reads=20_000, seed=3)
    # 6.5 MB of FASTQ: a seek point every 512 KiB gives 12 points, room for 8 slices cut at points
    result = demo.gzip_split(spark, path, partitions=8, runs=1, gzipSpacing="512k")
    ref = fastq_reference(gzip.decompress(path.read_bytes()))
    assert len(ref) == 20_000 and all(len(r[2]) == len(r[3]) == demo.READ_LENGTH for r in ref)
    assert ref[0][:2] == ("DEMO.00000000", "length=150") and ref[-1][0] == "DEMO.00019999"
    assert result["text_tasks"] == 1 and result["text_lines"] == 4 * len(ref)
    assert result["dataplug_tasks"] == 8 and result["reads"] == len(ref)
    assert result["text_seconds"] > 0 and result["dataplug_seconds"] > 0
    assert len(result["summary"].indexed) == 1 and result["summary"].records == len(ref)
    demo.show_split(result)
    out = capsys.readouterr().out
    assert " 1 task(s)" in out and " 8 task(s)" in out and "80,000 lines = 20,000 reads" in out
    assert out.splitlines()[2].count("|") == 7  # the dataplug bar: 8 cells
