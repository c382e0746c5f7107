"""The seed Dataplug example on a ``multiprocessing`` pool: nothing to install beyond the base package.

    python examples/fastq_gzip_pool.py s3://genomics/SRR6052133_1.fastq.gz --endpoint-url http://127.0.0.1:9000

The index tasks run in joblib's default (loky) worker processes, then the slices travel to a pool of
``spawn``ed processes by plain pickling: a slice holds byte ranges, decoding context and the endpoint, never
a client or a credential.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from fastq_seed import arguments, gc_content, seed_slices, summarize


def run(uri: str, num_batches: int = 8, s3_config: dict[str, Any] | None = None,
        workers: int = 2) -> dict[str, float]:
    data_slices = seed_slices(uri, num_batches, s3_config, parallel_config={"backend": "loky", "n_jobs": workers})
    # spawn, not fork: a forked child would inherit the parent's threads' locks (boto3's connection pools)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return summarize(len(data_slices), pool.map(gc_content, data_slices))


if __name__ == "__main__":
    args = arguments(__doc__)
    run(args.uri, args.batches, args.s3_config, args.workers)
