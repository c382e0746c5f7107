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


def test_smallest_gzip_spacing_indexed_gzip_accepts_builds_and_reads(local_store):
    data = make_fastq(400, seed=61)
    uri = local_store.put("min.fastq.gz", gzip.compress(data))
    co = CloudObject("fastq", uri, {"gzipSpacing": str(gz.MIN_SPACING)})
    assert co.preprocess().records == 400
    assert len(co.dataset().indexes[0].tables["seeks"]) > 1
    assert _rows(co) == fastq_reference(data)


@pytest.mark.parametrize("spacing", ["0", "100", "2g"])
def test_index_spacing_out_of_range_states_the_range(local_store, spacing):
    uri = local_store.put("r.fastq", make_fastq(5, seed=62))
    with pytest.raises(OptionError, match=r"indexSpacing.*must be from 1k to 1g"):
        CloudObject("fastq", uri, {"indexSpacing": spacing}).preprocess()


def test_seek_points_checks_spacing_that_bypassed_option_parsing(local_store):
    uri = local_store.put("r.fastq.gz", gzip.compress(make_fastq(5, seed=63)))
    info = LocalStorage().info(uri)
    with pytest.raises(OptionError, match="r.fastq.gz: gzipSpacing 32768 is out of range"):
        gz.seek_points(LocalStorage(), info, gz.WINDOW)


def test_indexed_gzip_errors_at_open_name_the_object(local_store, monkeypatch):
    import indexed_gzip

    def refuse(*args, **kwargs):
        raise indexed_gzip.ZranError("zran_init returned error (file: n/a)")

    monkeypatch.setattr(indexed_gzip, "IndexedGzipFile", refuse)
    uri = local_store.put("r.fastq.gz", gzip.compress(make_fastq(5, seed=64)))
    with pytest.raises(FormatError, match=r"r\.fastq\.gz at byte \d+: .*ZranError") as info:
        gz.seek_points(LocalStorage(), LocalStorage().info(uri), 1 << 20)
    assert info.value.uri == uri
