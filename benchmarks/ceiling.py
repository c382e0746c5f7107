"""The ceiling of any Python data source here: how fast Spark ingests Arrow batches that cost nothing to make.

A source whose tasks yield one pre-built FASTQ (or text) batch over and over, so the time is Spark's own
Python -> JVM path (Arrow IPC, conversion to rows) and nothing of ours. dataplug cannot be faster than
this; comparing with it says how much of a read is our decoding and how much is the transfer.

    .venv/bin/python benchmarks/ceiling.py [--mb 1024] [--partitions 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    sample = ROOT / "bench-data" / "bench-1024mb.fastq"
    if not sample.exists():
        sample = next((ROOT / "bench-data").glob("*.fastq"))

    class Ceiling(DataSource):
        @classmethod
        def name(cls) -> str:
            return "ceiling"

        def schema(self) -> str:
            if self.options.get("kind") == "text":
                return "value string"
            return "id string, description string, sequence string, quality string"

        def reader(self, schema):  # noqa: ANN001, ANN202
            return CeilingReader(self.options)

    class CeilingReader(DataSourceReader):
        def __init__(self, options) -> None:  # noqa: ANN001
            self.options = dict(options)

        def partitions(self):  # noqa: ANN202
            return [InputPartition(i) for i in range(int(self.options["partitions"]))]

        def read(self, partition):  # noqa: ANN001, ANN202
            import numpy as np

            from pyspark_dataplug.formats.fastq import FASTQ
            from pyspark_dataplug.formats.text import Text

            raw = open(self.options["sample"], "rb").read(8 << 20)
            raw = raw[: raw.rindex(b"\n@") + 1]
            buf = np.frombuffer(raw, np.uint8)
            lines = int((buf == 10).sum())

            class S:
                uri = "sample"
                context: dict = {}

            if self.options.get("kind") == "text":
                batch = Text({}).decode_records(S, buf, 0, lines)
            else:
                batch = FASTQ({}).decode_records(S, buf, 0, lines // 4)
            per_task = int(self.options["mb"]) * 1_000_000 // int(self.options["partitions"])
            for _ in range(max(1, per_task // len(raw))):
                yield batch

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.dataSource.register(Ceiling)
    for kind in ("fastq", "text"):
        reader = (spark.read.format("ceiling").option("kind", kind).option("sample", str(sample))
                  .option("mb", args.mb).option("partitions", args.partitions))
        reader.load().write.format("noop").mode("overwrite").save()  # warm-up
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            reader.load().write.format("noop").mode("overwrite").save()
            best = min(best, time.perf_counter() - t)
        print(f"ceiling {kind}: {args.mb / best:.0f} MB/s ({args.mb} MB of pre-built batches, "
              f"{args.partitions} partitions, best of 3)")
    spark.stop()


if __name__ == "__main__":
    main()
