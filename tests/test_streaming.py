"""Streamed slices: a task decodes piece by piece, exact at any piece size, in memory bounded by the piece."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap

import pytest
from data import fastq_reference, make_fastq
from fuzz_data import DIALECTS, make_csv

import pyspark_dataplug.slices
from pyspark_dataplug import CloudObject


def _rows(co: CloudObject, n: int, strategy: str = "records") -> list[tuple]:
    return [tuple(r.values()) for s in co.slices(strategy=strategy, num_slices=n) for r in s.get().to_pylist()]


@pytest.mark.parametrize("piece", [13, 257, 4096])
def test_any_piece_size_gives_the_same_rows(local_store, monkeypatch, piece):
    fq = make_fastq(400, seed=80)
    csv = make_csv(81, DIALECTS[2], rows=300, width=3)  # CRLF, quoted line breaks, ragged rows
    cases = [("fastq", "p.fastq", fq, {}), ("fastq", "p.fastq.gz", gzip.compress(fq), {"gzipSpacing": "40k"}),
             ("csv", "p.csv", csv, DIALECTS[2].options()), ("csv", "p.csv.gz", gzip.compress(csv),
                                                             DIALECTS[2].options())]
    expected = {}
    for fmt, name, blob, opts in cases:
        uri = local_store.put(name, blob)
        co = CloudObject(fmt, uri, {**opts, "indexSpacing": "2k"})
        co.preprocess()
        expected[name] = _rows(co, 1)  # one whole-object slice, decoded with the default 8 MiB pieces
    assert expected["p.fastq"] == fastq_reference(fq) == expected["p.fastq.gz"]
    monkeypatch.setattr(pyspark_dataplug.slices, "PIECE_BYTES", piece)  # inflated pieces (gzip)
    for fmt, name, _, opts in cases:
        # ranged reads of `piece` bytes, several in flight
        co = CloudObject(fmt, local_store.root + "/" + name, {**opts, "indexSpacing": "2k", "partSize": str(piece)})
        for n, strategy in ((1, "records"), (5, "records"), (50, "bytes")):
            assert _rows(co, n, strategy) == expected[name], f"{name} piece={piece} {strategy} x{n}"


PROBE = textwrap.dedent("""
    import json, sys
    import pyarrow, pyspark_dataplug
    from pyspark_dataplug import CloudObject
    def hwm():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    co = CloudObject(sys.argv[1], sys.argv[2], {"partsInFlight": sys.argv[3]})
    s = co.slices(num_slices=1)[0]
    before = hwm()
    rows = sum(b.num_rows for b in s.batches())
    print(json.dumps({"rows": rows, "before_kib": before, "after_kib": hwm()}))
""")


def _peak_growth_mib(fmt: str, uri: str, rows: int, in_flight: int) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, fmt, uri, str(in_flight)], capture_output=True, text=True,
                         check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["rows"] == rows
    return (probe["after_kib"] - probe["before_kib"]) / 1024


def test_peak_memory_follows_the_piece_not_the_slice(local_store):
    # one slice of 24 MB and one of 96 MB: holding a slice whole would grow the peak with it
    line = b"x" * 95 + b"\n"
    for suffix, pack in (("", lambda b: b), (".gz", lambda b: gzip.compress(b, compresslevel=1))):
        growth = []
        for lines in (250_000, 1_000_000):
            uri = local_store.put(f"big{lines}.txt{suffix}", pack(line * lines))
            CloudObject("text", uri).preprocess()
            growth.append(_peak_growth_mib("text", uri, lines, in_flight=1))
        # loose bounds (allocators keep pages): 4x the slice must not cost more than a piece or two more
        assert growth[1] < growth[0] + 20, f"text{suffix}: peak grew {growth} MiB for 24 and 96 MB slices"
        # with parts in flight (4 x 8 MiB by default) it holds those too, and still far less than the slice
        in_flight = _peak_growth_mib("text", uri, 1_000_000, in_flight=4)
        assert in_flight < growth[1] + 4 * 8 + 16, f"text{suffix}: {in_flight:.0f} MiB with 4 parts in flight"


def test_parts_in_flight_over_s3_with_faults(s3_store):
    from flaky_proxy import FlakyProxy

    data = make_fastq(6000, seed=82)
    uri = s3_store.put("parts.fastq.gz", gzip.compress(data))
    CloudObject("fastq", uri, {**s3_store.options, "gzipSpacing": "64k"}).preprocess()
    with FlakyProxy(s3_store.options["endpointUrl"]) as proxy:
        opts = {"endpointUrl": proxy.endpoint, "partSize": "64k", "partsInFlight": "4"}
        slices = CloudObject("fastq", uri, opts).slices(num_slices=3, strategy="records")
        proxy.faults = ["slowdown", "cut", "error500", "cut"]
        rows = [tuple(r.values()) for s in slices for r in s.get().to_pylist()]
        assert rows == fastq_reference(data)
        gets = [(r, h) for (m, path, r), h in zip(proxy.requests, proxy.headers, strict=True)
                if m == "GET" and r and "parts.fastq.gz" in path and ".dataplug" not in path]
    assert not proxy.faults  # every fault was met, and retried
    sizes = [int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) + 1 for r, _ in gets]
    assert len(gets) > 8 and max(sizes) <= 64 * 1024
    assert all(h.get("If-Match") for _, h in gets)  # every part is checked against the indexed version


def test_small_slices_are_fetched_ahead_and_errors_arrive_in_turn(s3_store):
    """A task's small slices come with their bytes fetched ahead; rows as without, an error at its own slice."""
    from pyspark_dataplug.errors import ObjectNotFoundError
    from pyspark_dataplug.slices import prefetched

    data = {f"o{i:02d}.fastq": make_fastq(6, seed=300 + i) for i in range(12)}
    for name, blob in data.items():
        s3_store.put(name, blob)
    from pyspark_dataplug import CloudDataset

    co = CloudDataset("fastq", [f"{s3_store.root}/{n}" for n in data], {**s3_store.options, "partsInFlight": "4"})
    co.preprocess()
    slices = co.slices(num_slices=1)
    assert len(slices) == 12
    want = [r for blob in data.values() for r in fastq_reference(blob)]
    pairs = list(prefetched(slices))
    assert all(r.buffers is not None for _, r in pairs[:4])  # the first ones came with their bytes
    got = [tuple(r.values()) for s, reader in pairs for b in s.batches(reader) for r in b.to_pylist()]
    assert got == want
    s3_store.delete(f"{s3_store.root}/o07.fastq")
    seen = []
    with pytest.raises(ObjectNotFoundError, match=r"o07\.fastq"):
        for s, reader in prefetched(slices):
            seen.extend(tuple(r.values()) for b in s.batches(reader) for r in b.to_pylist())
    assert seen == [r for n in sorted(data)[:7] for r in fastq_reference(data[n])]  # every slice before it, whole
