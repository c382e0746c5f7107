"""Index build options (spacings): valid ranges fail early and say so; they never change rows. No Spark."""

from __future__ import annotations

import gzip

import pytest
from data import fastq_reference, make_fastq

from pyspark_dataplug import CloudObject, gz
from pyspark_dataplug.errors import FormatError, OptionError
from pyspark_dataplug.storage import LocalStorage


def _rows(co: CloudObject) -> list[tuple]:
    return [tuple(r.values()) for s in co.slices(num_slices=4) for r in s.get().to_pylist()]


@pytest.mark.parametrize("spacing", ["32k", "1", "1g"])
def test_gzip_spacing_out_of_range_is_an_option_error_with_the_range(local_store, spacing):
    uri = local_store.put("r.fastq.gz", gzip.compress(make_fastq(50, seed=60)))
    with pytest.raises(OptionError, match=r"gzipSpacing.*must be from 32769 to 256m.*32 KiB window"):
        CloudObject("fastq", uri, {"gzipSpacing": spacing}).preprocess()


def test_smallest_gzip_spacing_builds_and_reads(local_store):
    data = make_fastq(400, seed=61)
    uri = local_store.put("min.fastq.gz", gzip.compress(data))
    co = CloudObject("fastq", uri, {"gzipSpacing": str(gz.MIN_SPACING)})
    assert co.preprocess().records == 400
    assert len(co.dataset().indexes[0].tables["seeks"]) > 1
    assert _rows(co) == fastq_reference(data)


@pytest.mark.parametrize("spacing", ["0", "2g"])
def test_index_spacing_out_of_range_states_the_range(local_store, spacing):
    # tiny spacings are legal (tests and the fuzz cut every few bytes); zero and absurd ones are not
    uri = local_store.put("r.fastq", make_fastq(5, seed=62))
    with pytest.raises(OptionError, match=r"indexSpacing.*must be from 1 to 1g"):
        CloudObject("fastq", uri, {"indexSpacing": spacing}).preprocess()


def test_gzip_pass_checks_spacing_that_bypassed_option_parsing(local_store):
    uri = local_store.put("r.fastq.gz", gzip.compress(make_fastq(5, seed=63)))
    info = LocalStorage().info(uri)
    with pytest.raises(OptionError, match="r.fastq.gz: gzipSpacing 32768 is out of range"):
        gz.GzipPass(LocalStorage(), info, gz.WINDOW)


@pytest.mark.parametrize("damage", ["flip", "truncate", "crc"])
def test_a_damaged_gzip_fails_its_build_naming_the_object(local_store, damage):
    packed = bytearray(gzip.compress(make_fastq(3000, seed=64)))
    if damage == "flip":
        packed[len(packed) // 2] ^= 0x55
    elif damage == "truncate":
        packed = packed[: len(packed) * 2 // 3]
    else:
        packed[-6] ^= 1  # the member's CRC32
    uri = local_store.put("r.fastq.gz", bytes(packed))
    with pytest.raises(FormatError, match=r"r\.fastq\.gz at byte \d+: .*(corrupt or truncated gzip|FASTQ)") as info:
        CloudObject("fastq", uri).preprocess()
    assert info.value.uri == uri


def test_a_storage_error_during_the_gzip_pass_is_raised_as_itself(local_store):
    import os
    import random

    from pyspark_dataplug.errors import StorageError

    rnd = random.Random(7)
    uri = local_store.put("r.txt.gz", gzip.compress(bytes(rnd.getrandbits(8) for _ in range(1 << 20)), 1))
    info = LocalStorage().info(uri)
    gp = gz.GzipPass(LocalStorage(), info, 1 << 16, piece=4096)
    gp.raw.block = 4096  # small ranged reads, so the object is still being read when it disappears
    with pytest.raises(StorageError, match="r.txt.gz"), gp:
        pieces = gp.pieces()
        next(pieces)
        os.remove(uri)
        for _ in pieces:
            pass


def test_a_build_naming_another_spacing_rebuilds_a_plain_build_reuses(local_store):
    data = make_fastq(3000, seed=65)
    uri = local_store.put("s.fastq", data)
    first = CloudObject("fastq", uri, {"indexSpacing": "1m"}).preprocess()
    assert first.indexed == [uri]
    co = CloudObject("fastq", uri, {"indexSpacing": "64k"})
    assert co.preprocess().indexed == [uri]  # was: "1 up to date", and the 1m index kept
    index = co.dataset().indexes[0]
    assert index.manifest["build_params"]["indexSpacing"] == 64 << 10
    assert len(index.tables["points"]) > 1
    assert co.preprocess().skipped == [uri]  # same spacing named again: up to date
    assert CloudObject("fastq", uri).preprocess().skipped == [uri]  # none named: any index will do
    # a read never rejects an index for its spacing, whatever spacing it names
    assert _rows(CloudObject("fastq", uri, {"indexSpacing": "1m"})) == fastq_reference(data)


def test_gzip_spacing_named_at_build_rebuilds(local_store):
    uri = local_store.put("s.fastq.gz", gzip.compress(make_fastq(2000, seed=66)))
    co = CloudObject("fastq", uri, {"gzipSpacing": "64k"})
    co.preprocess()
    fine = len(co.dataset().indexes[0].tables["seeks"])
    co = CloudObject("fastq", uri, {"gzipSpacing": "256k"})
    assert co.preprocess().indexed == [uri]
    assert len(co.dataset().indexes[0].tables["seeks"]) < fine


def test_an_index_without_recorded_build_params_is_rebuilt_only_when_one_is_named(local_store):
    import json
    from pathlib import Path

    uri = local_store.put("old.fastq", make_fastq(100, seed=67))
    summary = CloudObject("fastq", uri).preprocess()
    manifest = Path(summary.locations[uri]) / "manifest.json"
    m = json.loads(manifest.read_text())
    del m["build_params"]  # as written before build options were recorded
    manifest.write_text(json.dumps(m))
    assert CloudObject("fastq", uri).preprocess().skipped == [uri]
    assert CloudObject("fastq", uri, {"indexSpacing": "1m"}).preprocess().indexed == [uri]
