"""The seed Dataplug example on Ray: the index built by Ray tasks (joblib's ray backend), slices as Ray tasks.

    pip install 'pyspark-dataplug[ray]'
    python examples/fastq_gzip_ray.py s3://genomics/SRR6052133_1.fastq.gz --endpoint-url http://127.0.0.1:9000

Starts a local Ray instance unless one is running (or ``RAY_ADDRESS`` names a cluster); each Ray worker builds
its own S3 client from the slice's endpoint and the standard AWS credential chain.
"""

from __future__ import annotations

from typing import Any

from fastq_seed import arguments, gc_content, seed_slices, summarize


def run(uri: str, num_batches: int = 8, s3_config: dict[str, Any] | None = None,
        workers: int = 2) -> dict[str, float]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        data_slices = seed_slices(uri, num_batches, s3_config, parallel_config={"backend": "ray", "n_jobs": workers})
        remote_gc = ray.remote(gc_content)
        return summarize(len(data_slices), ray.get([remote_gc.remote(s) for s in data_slices]))
    finally:
        if started:
            ray.shutdown()


if __name__ == "__main__":
    args = arguments(__doc__)
    run(args.uri, args.batches, args.s3_config, args.workers)
