"""The seed Dataplug example's first lines, shared by the engine examples (Dask, a process pool, Ray).

Each engine example makes its slices here, exactly as the seed does, and maps :func:`gc_content` over them::

    co = CloudObject.from_s3(FASTQGZip, "s3://genomics/SRR6052133_1.fastq.gz")
    co.preprocess(parallel_config={"backend": "dask"})        # joblib's parallel_config
    data_slices = co.partition(partition_reads_batches, num_batches=200)

Slices are plain picklable recipes (no clients, no credentials), so any Python engine can run them: each
process builds its own S3 client from the slice's endpoint and the standard AWS credential chain.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any


def seed_slices(uri: str, num_batches: int, s3_config: dict[str, Any] | None = None,
                parallel_config: dict[str, Any] | None = None) -> list[Any]:
    """The seed's three calls: the object, its index (built once, through joblib), and its slices."""
    from pyspark_dataplug import CloudObject
    from pyspark_dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches

    if uri.startswith("s3://"):
        co = CloudObject.from_s3(FASTQGZip, uri, s3_config=s3_config)
    else:
        co = CloudObject.from_path(FASTQGZip, uri)
    co.preprocess(parallel_config=parallel_config)                         # once; reused afterwards
    return co.partition(partition_reads_batches, num_batches=num_batches)  # reads only the index


def gc_content(slice_: Any) -> tuple[int, int, int]:
    """(reads, bases, G+C bases) of one slice, computed with Arrow kernels on the slice's table."""
    import pyarrow.compute as pc

    seq = slice_.get().column("sequence")
    bases = pc.sum(pc.binary_length(seq)).as_py() or 0
    gc = sum(pc.sum(pc.count_substring(seq, b)).as_py() or 0 for b in ("G", "C"))
    return len(seq), bases, gc


def summarize(slices: int, parts: Iterable[tuple[int, int, int]]) -> dict[str, float]:
    """The per-slice counts added up, printed, and returned (the tests compare them with Biopython's)."""
    reads = bases = gc = 0
    for r, b, g in parts:
        reads, bases, gc = reads + r, bases + b, gc + g
    result = {"slices": slices, "reads": reads, "bases": bases, "gc": gc / bases if bases else 0.0}
    print(result)
    return result


def arguments(doc: str | None) -> argparse.Namespace:
    """The engine examples' command line: an object, how many batches, and the S3 endpoint if not AWS."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--endpoint-url", help="an S3-compatible endpoint (or set AWS_ENDPOINT_URL_S3)")
    args = parser.parse_args()
    args.s3_config = {"endpoint_url": args.endpoint_url} if args.endpoint_url else None
    return args
