"""The seed Dataplug example on Dask: slices of a gzip FASTQ evaluated as a Dask bag, no Spark involved.

    pip install 'pyspark-dataplug[dask]'
    python examples/fastq_gzip_dask.py s3://genomics/SRR6052133_1.fastq.gz --endpoint-url http://127.0.0.1:9000

Slices are plain picklable recipes (no clients, no credentials), so any Python engine can run them.
"""

from __future__ import annotations

import argparse
from typing import Any


def gc_content(slice_: Any) -> tuple[int, int, int]:
    """(reads, bases, G+C bases) of one slice, computed with Arrow kernels on the slice's table."""
    import pyarrow.compute as pc

    seq = slice_.get().column("sequence")
    bases = pc.sum(pc.binary_length(seq)).as_py() or 0
    gc = sum(pc.sum(pc.count_substring(seq, b)).as_py() or 0 for b in ("G", "C"))
    return len(seq), bases, gc


def run(uri: str, num_batches: int = 8, s3_config: dict[str, Any] | None = None,
        scheduler: str = "processes") -> dict[str, float]:
    import dask.bag as db

    from pyspark_dataplug import CloudObject
    from pyspark_dataplug.formats.fastq import FASTQGZip, partition_reads_batches

    if uri.startswith("s3://"):
        co = CloudObject.from_s3(FASTQGZip, uri, s3_config=s3_config)
    else:
        co = CloudObject.from_path(FASTQGZip, uri)
    co.preprocess()                                                        # once; reused afterwards
    data_slices = co.partition(partition_reads_batches, num_batches=num_batches)  # reads only the index
    bag = db.from_sequence(data_slices, npartitions=len(data_slices)).map(gc_content)
    parts = bag.compute(scheduler=scheduler)
    reads, bases, gc = (sum(p[i] for p in parts) for i in range(3))
    result = {"slices": len(data_slices), "reads": reads, "bases": bases, "gc": gc / bases if bases else 0.0}
    print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--endpoint-url")
    args = parser.parse_args()
    run(args.uri, args.batches, {"endpoint_url": args.endpoint_url} if args.endpoint_url else None)


if __name__ == "__main__":
    main()
