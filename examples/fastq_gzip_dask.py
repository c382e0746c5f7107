"""The seed Dataplug example on Dask: the index built on a Dask cluster, slices of a gzip FASTQ as a Dask bag.

    pip install 'pyspark-dataplug[dask]'
    python examples/fastq_gzip_dask.py s3://genomics/SRR6052133_1.fastq.gz --endpoint-url http://127.0.0.1:9000

``preprocess(parallel_config={"backend": "dask"})`` runs the index tasks through joblib on the running
``dask.distributed`` client, and the bag of slices is computed on the same client. No Spark involved.
"""

from __future__ import annotations

from typing import Any

from fastq_seed import arguments, gc_content, seed_slices, summarize


def run(uri: str, num_batches: int = 8, s3_config: dict[str, Any] | None = None, workers: int = 2,
        processes: bool = True) -> dict[str, float]:
    """``processes=False`` runs the workers as threads of this process (quicker to start, for small data)."""
    import dask.bag as db
    from dask.distributed import Client

    with Client(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None):
        data_slices = seed_slices(uri, num_batches, s3_config, parallel_config={"backend": "dask"})
        bag = db.from_sequence(data_slices, npartitions=len(data_slices)).map(gc_content)
        return summarize(len(data_slices), bag.compute())


if __name__ == "__main__":
    args = arguments(__doc__)
    run(args.uri, args.batches, args.s3_config, args.workers)
