"""The examples run as documented, and give the numbers an independent parse gives."""

from __future__ import annotations

import gzip
import importlib
import sys
from pathlib import Path

from data import fastq_reference, make_fastq

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    # importable by name (and so by Dask's worker processes, which inherit sys.path) like a user's script
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def test_dask_example_over_s3(s3_store):
    data = make_fastq(3000, seed=40)
    uri = s3_store.put("dask/SRR1.fastq.gz", gzip.compress(data))
    example = _load("fastq_gzip_dask")
    result = example.run(uri, 6, {"endpoint_url": s3_store.options["endpointUrl"]}, scheduler="processes")
    ref = fastq_reference(data)
    bases = sum(len(r[2]) for r in ref)
    assert result["slices"] == 6 and result["reads"] == len(ref) and result["bases"] == bases
    assert result["gc"] == sum(r[2].count("G") + r[2].count("C") for r in ref) / bases


def test_spark_example(spark, tmp_path):
    example = _load("fastq_gzip_spark")
    uri = example.sample(tmp_path / "s.fastq.gz", reads=2000)
    result = example.run(spark, uri, partitions=5)
    ref = fastq_reference(gzip.decompress(Path(uri).read_bytes()))
    assert result["partitions"] == 5 and result["reads"] == len(ref)
    assert result["long_reads"] == sum(len(r[2]) >= 100 for r in ref)
