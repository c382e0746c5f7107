"""``dataplug index|inspect|read``: the index job on a local Spark, an index's contents and plan, a peek at rows.

Errors print one line that says what to do and exit with status 2; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from .errors import DataplugError, OptionError


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionError(f"--option takes KEY=VALUE, got {item!r} (example: -o header=true)")
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
    try:
        spark = SparkSession.builder.master(master).appName("dataplug").getOrCreate()
    except Exception as e:  # most often no Java, or a wrong one: Spark's own message says neither plainly
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataplugError(f"Spark could not start a {master} session ({first}); Spark 4 needs Java 17 or 21 on "
                            "the PATH or in JAVA_HOME (java -version shows which one runs)") from e
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
    from .progress import ProgressPrinter, summary_table

    # options, the format and the objects are resolved first: a mistake fails in a second, with no JVM
    build = plan_build(args.paths, format=args.format, **_options(args))
    progress = None if args.no_progress else ProgressPrinter(sys.stderr)
    with _spark(args.master, args.log_level) as spark:
        summary = build.run(spark_runner(spark), force=args.force, progress=progress)
    print(summary)
    print(summary_table(summary, limit=args.show))
    shown = list(summary.locations.items())[: args.show]
    for uri, location in shown:
        print(f"  {uri} -> {location}")
    if len(summary.locations) > len(shown):
        print(f"  ... {len(summary.locations) - len(shown)} more index location(s)")
    return 0


def _brief(value: Any, limit: int = 60) -> str:
    """A context value short enough for one line of the plan (tile lists and packed spectra are long)."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else f"{text[: limit - 12]}...({len(text)} chars)"


def _stats(values: list[int]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return f"{v[0]:,} / {v[len(v) // 2]:,} / {v[-1]:,}"


def cmd_inspect(args: argparse.Namespace) -> int:
    from .plan import open_dataset
    from .plot import draw_plan, plan_layout
    from .progress import human_bytes

    opts = _options(args)
    if args.format:
        opts["format"] = args.format
    dataset = open_dataset(opts, paths=args.paths)
    for info, index in zip(dataset.objects[: args.show], dataset.indexes, strict=False):
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
    if len(dataset.objects) > args.show:
        print(f"... {len(dataset.objects) - args.show} more object(s) (--show N prints more)")
    indexed = [(o, i) for o, i in zip(dataset.objects, dataset.indexes, strict=True) if i is not None]
    index_bytes = sum(int(i.manifest.get("index_bytes", 0)) for _, i in indexed)
    size = sum(o.size for o, _ in indexed)
    records = sum(i.records for _, i in indexed)
    print(f"index statistics: {len(indexed)} of {len(dataset.objects)} object(s) indexed, {records:,} records, "
          f"{human_bytes(size)} of data, index {human_bytes(index_bytes)} "
          f"({index_bytes / max(1, size):.3%} of the data)")
    print(f"schema: {dataset.schema}")
    plan = dataset.plan(partitions=args.partitions)
    layout = plan_layout(dataset, plan)
    per = layout.partition_bytes()
    rows = [s.rows for s in layout.slices]
    print(f"plan: {len(plan)} partition(s), {len(layout.slices)} slice(s), strategy "
          f"{dataset.options.get('strategy') or 'default'}; per partition (min / median / max): data bytes "
          f"{_stats([d for d, _ in per])}, index bytes {_stats([i for _, i in per])}"
          + (f", rows {_stats(_per_partition_rows(layout))}" if None not in rows else ", rows known after reading"))
    views = iter(layout.slices)  # in plan order, one per slice
    for i, part in enumerate(plan[: args.show]):
        print(f"  {i}: " + "; ".join(_describe_slice(s, next(views)) for s in part))
    if len(plan) > args.show:
        print(f"  ... {len(plan) - args.show} more")
    if args.plot:
        draw_plan(dataset, plan, args.plot)
        boxes = sum(s.box is not None for s in layout.slices)
        print(f"plot: {args.plot} ({len(layout.slices)} slice(s)" + (f", {boxes} on the map)" if boxes else ")"))
    return 0


def _describe_slice(s: Any, view: Any) -> str:
    """Which bytes of which file a slice reads, what else (index bytes), its rows and its decoding context."""
    files = sorted({uri.rsplit("/", 1)[-1] for uri, _, _ in view.ranges})
    span = (f" [{min(a for _, a, _ in view.ranges)}, {max(e for _, _, e in view.ranges)})" if view.ranges else "")
    rows = f", {s.rows} rows" if s.rows is not None else ""
    context = ", ".join(f"{k}: {_brief(v)}" for k, v in s.context.items() if k != "desc")
    return (f"{', '.join(files) or s.uri.rsplit('/', 1)[-1]}{span}: {len(view.ranges)} range(s), "
            f"{view.data_bytes} bytes + {view.index_bytes} index bytes{rows} {{{context}}}")


def _per_partition_rows(layout: Any) -> list[int]:
    out = [0] * layout.partitions
    for s in layout.slices:
        out[s.partition] += s.rows or 0
    return out


def cmd_read(args: argparse.Namespace) -> int:
    from .plan import open_dataset

    opts = _options(args)
    if args.format:
        opts["format"] = args.format
    if args.partitions:
        opts["partitions"] = str(args.partitions)
    # planned here first, as Spark will plan it: a missing index, an unknown option or a missing object is
    # one line before a JVM starts, not a Java stack trace after it; the plan also gives the partitions and,
    # when every slice knows its rows, the row count (no RDD API: the same on Spark Connect)
    plan = open_dataset(opts, paths=args.paths).plan()
    rows = [s.rows for part in plan for s in part]
    with _spark(args.master, args.log_level) as spark:
        reader = spark.read.format("dataplug")
        for k, v in opts.items():
            reader = reader.option(k, v)
        df = reader.load(args.paths)
        df.show(args.limit, truncate=80)
        if args.count:
            print(f"{df.count()} rows in {len(plan)} partition(s)")
        elif None not in rows:
            print(f"{sum(rows)} rows in {len(plan)} partition(s) (from the index)")
        else:
            print(f"{len(plan)} partition(s); rows are known after reading them all (--count)")
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's parser must not reset a --debug given before the subcommand
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the traceback of an error (and Spark's warnings)")
    parser = argparse.ArgumentParser(prog="dataplug", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (
        ("index", cmd_index, "build indexes with a Spark job (skips up-to-date ones), with live progress"),
        ("inspect", cmd_inspect, "show the manifest, index statistics and the partition plan a read would use"),
        ("read", cmd_read, "read through Spark and show the first rows"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext, parents=[common])
        p.set_defaults(fn=fn)
        p.add_argument("paths", nargs="+", help="objects, globs or prefixes (s3://, local, file://)")
        p.add_argument("--format", help="data format (default: from the names of the objects)")
        p.add_argument("--option", "-o", action="append", help="any read option, KEY=VALUE (repeatable)")
        p.add_argument("--endpoint-url", help="S3-compatible endpoint")
        p.add_argument("--region", help="S3 region")
        p.add_argument("--index-location", help="where indexes live (default: next to each object)")
        if name == "index":
            p.add_argument("--force", action="store_true", help="rebuild even up-to-date indexes")
            p.add_argument("--no-progress", action="store_true", help="no progress line (the summary is printed)")
            p.add_argument("--show", type=int, default=20, help="objects to list in the summary table")
        else:
            p.add_argument("--partitions", type=int, help="partitions to plan")
        if name == "inspect":
            p.add_argument("--show", type=int, default=10, help="objects and partitions to print")
            p.add_argument("--plot", metavar="FILE.png",
                           help="draw the plan: slice sizes along the objects, and for point clouds, rasters "
                                "and imzML the slices' boxes on a map (needs pyspark-dataplug[plot])")
        if name == "read":
            p.add_argument("--limit", "--show", dest="limit", type=int, default=10, help="rows to show (default 10)")
            p.add_argument("--count", action="store_true", help="count the rows with Spark (reads everything)")
        if name != "inspect":
            p.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
            p.add_argument("--log-level", type=str.upper,
                           help="Spark's log level (default FATAL: errors are printed as one line; WARN with --debug)")
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    if getattr(args, "log_level", "unset") is None:
        args.log_level = "WARN" if args.debug else "FATAL"
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("dataplug: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure is one line (what to do), the traceback only on request
        if args.debug:
            traceback.print_exc()
        if isinstance(e, DataplugError):
            message = _one_line(str(e))
        else:
            lines = str(e).strip().splitlines()
            message = (f"unexpected error: {type(e).__name__}: {_one_line(lines[0]) if lines else ''} "
                       "(run again with --debug for the traceback, and report it if it looks like a bug)")
        print(f"dataplug: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
