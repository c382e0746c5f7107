"""`dataplug inspect` shows the index, the seek points and the plan; `index` shows progress and a table; `read`
previews rows; errors exit 2 with the message. (tests/test_cli_display.py: the same without Spark.)"""

from __future__ import annotations

import gzip

from data import make_fastq

from pyspark_dataplug import CloudObject
from pyspark_dataplug.cli import main, spark_error_message
from pyspark_dataplug.plan import parse_read_options


def test_inspect_shows_seek_points_and_plan(local_store, capsys):
    uri = local_store.put("cli.fastq.gz", gzip.compress(make_fastq(3000, seed=50)))
    CloudObject("fastq", uri, {"gzipSpacing": "64k"}).preprocess()
    assert main(["inspect", uri, "--partitions", "3"]) == 0
    out = capsys.readouterr().out
    assert "gzip:" in out and "seek points, windows blob" in out
    assert "3000 records" in out
    assert "plan: 3 partition(s)" in out


def test_errors_exit_2_with_the_message(local_store, capsys):
    uri = local_store.put("cli2.fastq", make_fastq(10, seed=51))
    assert main(["inspect", uri]) == 2  # no index yet: the message says which command builds it
    assert "dataplug index --format fastq" in capsys.readouterr().err
    assert main(["inspect", uri.replace("cli2", "absent")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_folder_format_is_guessed_from_its_objects_not_its_name(local_store, capsys):
    uris = [local_store.put("run1/a.fastq", make_fastq(20, seed=52)),
            local_store.put("run1/b.fq.gz", gzip.compress(make_fastq(30, seed=53)))]
    for uri in uris:
        CloudObject("fastq", uri).preprocess()
    folder = uris[0].rsplit("/", 1)[0]
    assert main(["inspect", folder + "/"]) == 0  # was: cannot guess the format of '.../run1/'
    assert "plan: " in capsys.readouterr().out
    assert parse_read_options({}, paths=[folder])[0] == "fastq"


def test_a_prefix_format_is_guessed_from_its_objects_on_s3(s3_store):
    s3_store.put("run1/a.fastq", make_fastq(5, seed=54))
    s3_store.put("run1/_SUCCESS", b"")
    assert parse_read_options(s3_store.options, paths=[f"{s3_store.root}/run1/"])[0] == "fastq"


def test_a_folder_of_mixed_formats_lists_them_and_asks_for_format(local_store, capsys):
    uri = local_store.put("mixed/a.fastq", make_fastq(5, seed=55))
    local_store.put("mixed/b.csv", b"x,y\n1,2\n")
    local_store.put("mixed/NOTES", b"hello\n")
    assert main(["inspect", uri.rsplit("/", 1)[0]]) == 2
    err = capsys.readouterr().err
    assert "csv by name: b.csv; fastq by name: a.fastq; no known extension: NOTES" in err
    assert "--format" in err and "/mixed/*.csv" in err


def test_a_missing_index_for_objects_named_unlike_the_format_suggests_a_glob(local_store, capsys):
    uri = local_store.put("docs/README.md", b"# notes\n")
    local_store.put("docs/x.csv", b"a,b\n1,2\n")
    folder = uri.rsplit("/", 1)[0]
    assert main(["inspect", folder, "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "README.md is not named like csv" in err  # was: "Build it once with: dataplug index --format csv docs"
    assert f"dataplug index --format csv '{folder}/*.csv'" in err
    assert "Build it once" not in err


def test_an_empty_folder_names_itself_and_what_is_skipped(local_store, capsys):
    uri = local_store.put("empty/_SUCCESS", b"")
    local_store.put("empty/.hidden", b"x\n")
    folder = uri.rsplit("/", 1)[0]
    assert main(["inspect", folder, "--format", "text"]) == 2
    err = capsys.readouterr().err
    assert f"no objects to read in {folder}:" in err
    assert "'_' or '.'" in err and "'*.dataplug' index folders" in err


SPARK_TEXT = """[PYTHON_DATA_SOURCE_ERROR] Failed to create Python data source instance: Traceback (most recent call
  File "/x/pyspark_dataplug/plan.py", line 118, in open_dataset
    raise IndexMissingError(
pyspark_dataplug.errors.IndexMissingError: no fastq index for /d/a.fastq. Build it once with: dataplug index x
 SQLSTATE: 38000"""


def test_our_message_is_found_inside_a_spark_exception():
    captured = type("AnalysisException", (Exception,), {"__module__": "pyspark.errors.exceptions.captured"})
    expected = "no fastq index for /d/a.fastq. Build it once with: dataplug index x"
    assert spark_error_message(captured(SPARK_TEXT)) == expected
    assert spark_error_message(captured("[PATH_NOT_FOUND] something else")) is None
    assert spark_error_message(RuntimeError(SPARK_TEXT)) is None  # not from Spark: not ours to reword


def test_read_without_an_index_fails_in_one_line_before_spark_starts(local_store, capsys, monkeypatch):
    import pyspark_dataplug.cli as cli

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark started for a read that cannot be planned")

    monkeypatch.setattr(cli, "_spark", no_spark)
    uri = local_store.put("noindex.fastq", make_fastq(10, seed=56))
    assert main(["read", uri, "--master", "local[1]", "--count"]) == 2  # --count reads every slice
    err = capsys.readouterr().err
    assert err.startswith("dataplug: no fastq index for") and err.count("\n") == 1
    assert f"dataplug index --format fastq {uri}" in err
    assert main(["read", uri, "-o", "bogus=1"]) == 2
    assert "unknown option(s) bogus" in capsys.readouterr().err


def test_index_command_builds_a_folder_and_prints_the_summary(local_store, capsys):
    local_store.put("idx/a.fastq", make_fastq(300, seed=57))
    uri = local_store.put("idx/b.fq.gz", gzip.compress(make_fastq(200, seed=58)))
    folder = uri.rsplit("/", 1)[0]
    args = ["index", folder, "--master", "local[1]", "-o", "indexSpacing=4k"]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "dataplug index [fastq]: 2 object(s) indexed, 0 up to date" in out and "; 500 records;" in out
    assert f"{uri} -> {uri}.dataplug/fastq" in out
    assert f"in {folder}/" in out and "2 object(s)  2 indexed" in out and "\nb.fq.gz " in out  # the table
    # progress goes to stderr, as plain lines (not a terminal): the Spark stages, the write and the end
    stages = [line.split()[0] for line in captured.err.splitlines()]
    # (a .gz is indexed in one pass: no follow-up stage)
    assert stages[0] == "map" and "follow-up" not in stages and stages[-1] == "done", captured.err
    assert "2/2 objects" in captured.err and "\r" not in captured.err
    assert main(args) == 0
    assert "0 object(s) indexed, 2 up to date" in capsys.readouterr().out


def test_the_build_watches_spark_tasks_and_restores_the_callers_job_group(spark):
    """The progress hook of the Spark runner: counts of finished tasks while the job runs, read from the status
    tracker under a job group of its own; the caller's job group is put back."""
    import time

    from pyspark_dataplug.index.build import watch_tasks

    def slow(batches):
        for b in batches:
            time.sleep(0.6)
            yield b

    sc = spark.sparkContext
    sc.setJobGroup("callers-group", "theirs")
    seen: list[int] = []
    with watch_tasks(spark, seen.append, 6, interval=0.1):
        spark.range(0, 6, 1, numPartitions=6).mapInArrow(slow, "id long").collect()
    assert seen == sorted(seen) and max(seen) <= 6
    assert any(0 < n < 6 for n in seen), seen  # seen while it ran (2 cores: 2 tasks per 0.6 s)
    assert sc.getLocalProperty("spark.jobGroup.id") == "callers-group"
    sc.setLocalProperty("spark.jobGroup.id", None)


def test_read_command_shows_rows_and_turns_task_errors_into_one_line(local_store, capsys):
    import os

    data = make_fastq(200, seed=59)
    uri = local_store.put("read.fastq", data)
    CloudObject("fastq", uri, {"indexSpacing": "4k"}).preprocess()
    assert main(["read", uri, "--master", "local[1]", "--limit", "2", "--partitions", "2"]) == 0
    out = capsys.readouterr().out
    assert "description|" in out and "quality|" in out
    assert "|SRR59.0|" in out and "|SRR59.1|" in out and "SRR59.2" not in out
    assert "200 rows in 2 partition(s) (from the index)" in out  # a preview does not read everything
    # the same bytes changed in place (same size and mtime, so the index still looks fresh): the slice's
    # fingerprint check fails in a Spark task, wrapped in Spark's exception, and still prints as our one line
    st = os.stat(uri)
    bad = data[:-1000] + data[-1000:].replace(b"\n+\n", b"\n-\n")
    with open(uri, "wb") as f:
        f.write(bad)
    os.utime(uri, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert main(["read", uri, "--master", "local[1]", "--count"]) == 2  # --count reads every slice
    err = capsys.readouterr().err
    assert err.startswith(f"dataplug: {uri}: the bytes at offset ") and "differ from those indexed" in err
    assert "Traceback" not in err and "SQLSTATE" not in err
