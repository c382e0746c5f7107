"""`dataplug inspect` shows the index, the seek points and the plan; errors exit 2 with the message."""

from __future__ import annotations

import gzip

from data import make_fastq

from pyspark_dataplug import CloudObject
from pyspark_dataplug.cli import main


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


def test_an_empty_folder_names_itself_and_what_is_skipped(local_store, capsys):
    uri = local_store.put("empty/_SUCCESS", b"")
    local_store.put("empty/.hidden", b"x\n")
    folder = uri.rsplit("/", 1)[0]
    assert main(["inspect", folder, "--format", "text"]) == 2
    err = capsys.readouterr().err
    assert f"no objects to read in {folder}:" in err
    assert "'_' or '.'" in err and "'*.dataplug' index folders" in err
