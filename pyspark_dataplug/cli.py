"""``dataplug index|inspect|read``: the index job on a local Spark, an index's contents and plan, a peek at rows."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from .errors import DataplugError


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"dataplug: --option takes KEY=VALUE, got {item!r}")
        opts[key] = value
    for name in ("endpoint_url", "index_location", "region"):
        value = getattr(args, name, None)
        if value:
            key = {"endpoint_url": "endpointUrl", "index_location": "indexLocation", "region": "awsRegion"}[name]
            opts[key] = value
    return opts


def spark_error_message(e: BaseException) -> str | None:
    """Our error's message inside an exception Spark raised for it, or None if it holds none.

    Spark hands a Python worker's failure back as text (an AnalysisException, PythonException or
    Py4JJavaError whose message embeds the worker's traceback): the line naming one of our error classes is
    the one a user needs, not the Java and Python stacks around it.
    """
    if not type(e).__module__.startswith(("pyspark", "py4j")):
        return None
    from . import errors

    names = sorted(n for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, DataplugError))
    found = re.findall(rf"\b(?:pyspark_dataplug\.errors\.)?(?:{'|'.join(names)}): (.+)", str(e))
    return found[-1].strip() if found else None


@contextlib.contextmanager
def _spark(master: str, log_level: str = "FATAL") -> Iterator[Any]:
    """A local session for one command; our errors from inside Spark come out as a DataplugError.

    The message is extracted here, while the JVM that holds a Py4JJavaError's text is still up. A session
    that was already running (the caller's) is left running. Spark's own logs default to FATAL: a failed
    task is logged with its whole stack before the driver sees the error that this command prints anyway.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    spark = SparkSession.builder.master(master).appName("dataplug").getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    try:
        yield spark
    except Exception as e:
        message = spark_error_message(e)
        if message is None:
            raise
        raise DataplugError(message) from e
    finally:
        if running is None:
            spark.stop()


def cmd_index(args: argparse.Namespace) -> int:
    from .index.build import plan_build, spark_runner

    # options, the format and the objects are resolved first: a mistake fails in a second, with no JVM
    build = plan_build(args.paths, format=args.format, **_options(args))
    with _spark(args.master, args.log_level) as spark:
        summary = build.run(spark_runner(spark), force=args.force)
    print(summary)
    for uri, location in summary.locations.items():
        print(f"  {uri} -> {location}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .plan import open_dataset

    opts = _options(args)
    if args.format:
        opts["format"] = args.format
    dataset = open_dataset(opts, paths=args.paths)
    for info, index in zip(dataset.objects, dataset.indexes, strict=True):
        print(f"{info.uri}  ({info.size} bytes, ETag {info.etag})")
        if index is None:
            print("  no index")
            continue
        manifest = {k: v for k, v in index.manifest.items() if k != "attrs"}
        print(f"  index: {index.location}")
        print("  " + json.dumps(manifest, indent=1, sort_keys=True).replace("\n", "\n  "))
        if manifest.get("compression") == "gzip":
            seeks = index.tables["seeks"].num_rows
            blob = int(manifest.get("blob_sizes", {}).get("windows", 0))
            print(f"  gzip: {seeks} seek points, windows blob {blob} bytes "
                  f"({blob / max(1, info.size):.2%} of the object), {index.records} records, "
                  f"{manifest.get('uncompressed_size')} bytes uncompressed")
        for name, table in index.tables.items():
            print(f"  table {name}: {table.num_rows} rows, columns {', '.join(table.column_names)}")
            print("  " + table.slice(0, 5).to_pandas().to_string().replace("\n", "\n  "))
    print(f"schema: {dataset.schema}")
    plan = dataset.plan(partitions=args.partitions)
    print(f"plan: {len(plan)} partition(s), strategy {dataset.options.get('strategy') or 'default'}")
    for i, part in enumerate(plan[: args.show]):
        desc = "; ".join(f"{s.uri.rsplit('/', 1)[-1]} bytes [{s.ranges[-1].start}, {s.ranges[-1].end}) "
                         f"+{s.nbytes - s.ranges[-1].size} index bytes {dict(s.context)}" for s in part)
        print(f"  {i}: {desc}")
    if len(plan) > args.show:
        print(f"  ... {len(plan) - args.show} more")
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    from .plan import open_dataset

    opts = _options(args)
    if args.format:
        opts["format"] = args.format
    if args.partitions:
        opts["partitions"] = str(args.partitions)
    # planned here first, as Spark will plan it: a missing index, an unknown option or a missing object is
    # one line before a JVM starts, not a Java stack trace after it
    open_dataset(opts, paths=args.paths)
    with _spark(args.master, args.log_level) as spark:
        reader = spark.read.format("dataplug")
        for k, v in opts.items():
            reader = reader.option(k, v)
        df = reader.load(args.paths)
        df.show(args.show, truncate=80)
        print(f"{df.count()} rows in {df.rdd.getNumPartitions()} partition(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataplug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (
        ("index", cmd_index, "build indexes with a Spark job (skips up-to-date ones)"),
        ("inspect", cmd_inspect, "show an index and the partition plan a read would use"),
        ("read", cmd_read, "read through Spark and show rows"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.set_defaults(fn=fn)
        p.add_argument("paths", nargs="+", help="objects, globs or prefixes (s3://, local, file://)")
        p.add_argument("--format", help="data format (default: from the names of the objects)")
        p.add_argument("--option", "-o", action="append", help="any read option, KEY=VALUE (repeatable)")
        p.add_argument("--endpoint-url", help="S3-compatible endpoint")
        p.add_argument("--region", help="S3 region")
        p.add_argument("--index-location", help="where indexes live (default: next to each object)")
        if name == "index":
            p.add_argument("--force", action="store_true", help="rebuild even up-to-date indexes")
        else:
            p.add_argument("--partitions", type=int, help="partitions to plan")
            p.add_argument("--show", type=int, default=10, help="rows or partitions to print")
        if name != "inspect":
            p.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
            p.add_argument("--log-level", default="FATAL", type=str.upper,
                           help="Spark's log level (default FATAL: errors are printed as one line; WARN to debug)")
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except DataplugError as e:
        print(f"dataplug: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
