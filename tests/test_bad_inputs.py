"""Bad inputs, one table per format: every damaged object gives exact rows or a DataplugError naming it.

Each format's table (and its seeded fuzz) runs in a child process, so a native decoder (lazrs, imagecodecs,
casacore, isal) that crashes shows up as a child killed by a signal instead of taking pytest down, and each
case runs under a deadline, so a hang is reported with its case name. A case passes when either

* the read raises a ``DataplugError`` whose message names the object (its path), or
* the rows equal the format's reference reader on the damaged bytes (Biopython, laspy, tifffile, pyimzml,
  Python's own UTF-8 line splitting), or, for a format without an independent reader of damaged input, the
  rows of the undamaged object (damage outside the data), and the rows are the same at 1 and 5 partitions.

Anything else (a raw IndexError/struct.error escaping, fewer rows than the reference, a hang, a signal) fails.

``test_quick_fuzz`` runs many more mutated inputs the same way, cheaply: small objects, the index kept in
memory, and a second tier of same-length damage under the undamaged object's index (:func:`quick_main`).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
DEADLINE = 20.0  # seconds per case: a slower case is a hang
#: mutated inputs per format in CI (about a minute for the file on 2 cores); DATAPLUG_FUZZ_SCALE=10 for a long run
SCALE = float(os.environ.get("DATAPLUG_FUZZ_SCALE", "1"))
FUZZ = {k: int(v * SCALE) for k, v in {
    "text": 150, "csv": 100, "fastq": 150, "fasta": 60, "vcf": 80, "las": 120, "laz": 100, "copc": 30,
    "cog": 100, "imzml": 100, "ms": 6}.items()}


#: the quick fuzz per format (:func:`quick_main`): (mutated inputs through build + read, same-length damage under
#: the clean index); about a minute for all formats on 2 cores. MeasurementSet builds start casacore in a child
#: interpreter (~0.6 s each), so its build tier is small and its decode tier carries the count
QUICK = {k: (int(b * SCALE), int(d * SCALE)) for k, (b, d) in {
    "text": (300, 1700), "csv": (200, 1800), "fastq": (300, 1700), "fasta": (200, 1800), "vcf": (250, 1750),
    "las": (200, 1800), "laz": (250, 1750), "copc": (200, 1000), "cog": (300, 1700), "imzml": (200, 1800),
    "ms": (6, 500)}.items()}


class Case:
    """One damaged input: the bytes to write under ``name`` and what a correct reader may give."""

    def __init__(self, name: str, files: dict[str, bytes], same_as_clean: bool = False,
                 options: dict[str, str] | None = None) -> None:
        self.name = name
        self.options = options  # replaces the format's options (the huge cases keep the default index spacing)
        self.files = files  # relative path -> bytes (the first one is the object read)
        self.same_as_clean = same_as_clean  # damage outside the data: rows must equal the clean ones


# -- mutations -------------------------------------------------------------------------------------------------

def truncations(data: bytes, seed: int, header: int) -> list[tuple[str, bytes]]:
    """Ten cuts: three inside the header, six seeded elsewhere, and one byte short."""
    rng = random.Random(seed)
    n = len(data)
    cuts = {max(1, header // 3), max(1, header // 2), max(1, header - 1), n - 1}
    while len(cuts) < 10 and n > 12:
        cuts.add(rng.randrange(1, n))
    return [(f"truncated@{c}", data[:c]) for c in sorted(cuts)]


def flips(data: bytes, seed: int, lo: int = 0, hi: int | None = None, k: int = 10) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    hi = len(data) if hi is None else hi
    out = []
    for _ in range(k):
        p = rng.randrange(lo, hi)
        b = bytearray(data)
        b[p] ^= 1 << rng.randrange(8)
        out.append((f"flip@{p}", bytes(b)))
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One fuzz mutation: flip bits, truncate, insert random bytes, or duplicate a range."""
    b = bytearray(data)
    op = rng.randrange(4)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1:
        del b[rng.randrange(len(b)):]
    elif op == 2:
        p = rng.randrange(len(b) + 1)
        b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        a = rng.randrange(len(b))
        e = min(len(b), a + rng.randint(1, 64))
        p = rng.randrange(len(b) + 1)
        b[p:p] = b[a:e]
    return bytes(b)


def mutate_in_place(data: bytes, rng: random.Random) -> bytes:
    """A mutation that keeps the length: flip bits, overwrite a range with random bytes, or copy one range over
    another (for the decode tier, where the index of the undamaged object must still fit the damaged one)."""
    b = bytearray(data)
    op = rng.randrange(3)
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1:
        p = rng.randrange(len(b))
        n = min(len(b) - p, rng.randint(1, 16))
        b[p:p + n] = bytes(rng.randrange(256) for _ in range(n))
    else:
        a, p = rng.randrange(len(b)), rng.randrange(len(b))
        n = min(len(b) - a, len(b) - p, rng.randint(1, 64))
        b[p:p + n] = b[a:a + n]
    return bytes(b)


# -- per format: a clean object, its name, a reference reader and the table of cases -----------------------------

def _lines_reference(data: bytes) -> list[tuple]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8")  # invalid UTF-8 raises: then only an error is right
    parts = [p[:-1] if p.endswith("\r") else p for p in text.split("\n")]  # a lone CR is data (README)
    if parts and parts[-1] == "":
        parts.pop()
    return [(p,) for p in parts]


def _tuples(fn: Callable[[bytes, str], list[tuple]]) -> Callable[[bytes, str, Any], None]:
    """A reference giving rows as tuples, turned into a check of a table."""
    def check(data: bytes, path: str, table: Any) -> None:
        got = [tuple(r.values()) for r in table.to_pylist()]
        want = fn(data, path)
        assert got == want, f"{len(got)} rows, reference {len(want)}"
    return check


def _line_cases(clean: bytes, name: str, seed: int, header: int, wrong: bytes) -> list[Case]:
    ext = name.rsplit(".", 1)[1]
    cases = [Case("empty", {name: b""})]
    cases += [Case(n, {name: d}) for n, d in truncations(clean, seed, header)]
    cases += [Case(n, {name: d}) for n, d in flips(clean, seed)]
    cases.append(Case("wrong format for the name", {name: wrong}))
    cases.append(Case("gz name, plain bytes", {f"plain.{ext}.gz": clean}))
    cases.append(Case("gzip magic then garbage", {f"garbage.{ext}.gz": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4}))
    cases.append(Case("gzip cut short", {f"cut.{ext}.gz": gzip.compress(clean)[:-9]}))
    bad = bytearray(clean)
    p = len(bad) // 2
    bad[p:p] = b"\xff\xfe\xc3("
    cases.append(Case("non-UTF-8 bytes", {name: bytes(bad)}))
    return cases


def _fmt_text(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from data import make_text

    clean = make_text(30 if small else 300, seed=11)
    cases = _line_cases(clean, "t.txt", 1, 40, b"\x89PNG\r\n\x1a\n" + bytes(300))
    huge = b"a\n" + b"x" * (32 << 20) + b"\nb\n"
    cases.append(Case("huge line (32 MiB)", {"huge.txt": huge}, options={}))
    return "t.txt", clean, _tuples(lambda data, path: _lines_reference(data)), cases, {"indexSpacing": "256"}


def _fmt_fastq(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from data import fastq_reference, make_fastq

    clean = make_fastq(8 if small else 60, seed=3)

    def ref(data: bytes, path: str) -> Any:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return fastq_reference(data)

    cases = _line_cases(clean, "r.fastq", 2, 60, b"id,name\n1,x\n2,y\n")
    seq = b"@r1\n" + b"A" * (32 << 20) + b"\n+\n" + b"I" * (32 << 20) + b"\n"
    cases.append(Case("huge read (2 x 32 MiB lines)", {"huge.fastq": seq}, options={}))
    return "r.fastq", clean, _tuples(ref), cases, {"indexSpacing": "256"}


def _fmt_fasta(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from test_fasta import random_fasta, reference

    clean = random_fasta(random.Random(4), 3 if small else 12)
    cases = _line_cases(clean, "g.fasta", 3, 30, b"@r1\nACGT\n+\nIIII\n")
    cases.append(Case("huge line (32 MiB)", {"huge.fasta": b">a\n" + b"ACGT" * (8 << 20) + b"\n>b\nAC\n"}))
    seq = clean.index(b"\n") + 6  # inside the first sequence line: a 2-byte UTF-8 letter, not a residue
    cases.append(Case("non-ASCII letter in a sequence", {"g.fasta": clean[:seq] + "߲".encode() + clean[seq:]}))
    return "g.fasta", clean, _tuples(lambda data, path: reference(data, 50)), cases, {"sequenceChunkSize": "50"}


def _fmt_csv(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from data import make_csv

    clean = make_csv(20 if small else 200, seed=9)
    cases = _line_cases(clean, "c.csv", 4, 24, b"\x89PNG\r\n\x1a\n" + bytes(300))
    huge = b"id,name\n1,\"" + b"x" * (32 << 20) + b"\"\n2,y\n"
    cases.append(Case("huge field (32 MiB)", {"huge.csv": huge}, options={}))
    return "c.csv", clean, None, cases, {"indexSpacing": "256"}


def _fmt_vcf(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from test_vcf import make_vcf

    clean = make_vcf(8 if small else 60, samples=2)
    header_end = clean.index(b"\n#CHROM")
    cases = _line_cases(clean, "v.vcf", 5, header_end, b"id,name\n1,x\n")
    cases.append(Case("no #CHROM line", {"v.vcf": clean.replace(b"#CHROM", b"CHROMX", 1)}))
    cases.append(Case("bad meta line", {"v.vcf": clean.replace(b"##INFO=<ID=DP,", b"##INFO=<ID", 1)}))
    cases.append(Case("fewer header columns", {"v.vcf": clean.replace(b"\tFORMAT", b"", 1)}))
    return "v.vcf", clean, None, cases, {"indexSpacing": "256"}


def _las_ref(data: bytes, path: str, table: Any) -> None:
    """laspy's points, as ``test_las.assert_rows`` compares them, with a NaN (a flipped float) equal to itself."""
    import laspy
    import numpy as np
    from test_las import assert_rows

    points = laspy.read(path).points
    real = np.array_equal
    try:
        np.array_equal = lambda a, b, equal_nan=False: real(a, b, equal_nan=a.dtype.kind == "f")  # type: ignore
        assert_rows(table, points)
    finally:
        np.array_equal = real


def _fmt_las(compress: bool, small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case],
                                                         dict[str, str]]:
    import struct

    from pointcloud_data import chunk_table_offset_at, las_bytes, make_las

    points = make_las(6 if compress else 1, "1.4" if compress else "1.2", 40 if small else 400, seed=2)
    clean = las_bytes(points, compress)
    name = "p.laz" if compress else "p.las"
    header = struct.unpack_from("<H", clean, 94)[0]
    cases = [Case("empty", {name: b""}), Case("wrong format for the name", {name: b"id,x\n1,2\n"})]
    cases += [Case(n, {name: d}) for n, d in truncations(clean, 6, header)]
    cases += [Case(n, {name: d}) for n, d in flips(clean, 7, 0, header, 5)]  # header fields
    cases += [Case(n, {name: d}) for n, d in flips(clean, 8, header, len(clean), 5)]  # points
    for field, fmt, value in (("point data offset", "<I", len(clean) + 10), ("point count", "<I", 10**9),
                              ("record length", "<H", 3), ("header size", "<H", 5)):
        pos = {"point data offset": 96, "point count": 107, "record length": 105, "header size": 94}[field]
        b = bytearray(clean)
        struct.pack_into(fmt, b, pos, value)
        cases.append(Case(f"header {field} = {value}", {name: bytes(b)}))
    b = bytearray(clean)
    struct.pack_into("<I", b, 100, 654311424)  # laspy loops over that many empty VLRs (the quick fuzz found it)
    cases.append(Case("VLR count 654311424", {name: bytes(b)}))
    if compress:
        at, _ = chunk_table_offset_at(clean)
        b = bytearray(clean)
        struct.pack_into("<q", b, at, len(clean) + 1000)
        cases.append(Case("chunk table past the end", {name: bytes(b)}))
        b = bytearray(clean)
        struct.pack_into("<H", b, 105, struct.unpack_from("<H", clean, 105)[0] + 1024)
        cases.append(Case("record length 1 KiB more than the LASzip VLR's", {name: bytes(b)}))
        vlr = clean.index(b"laszip encoded") - 2 + 54  # the LASzip VLR's data: compressor (u16) first
        b = bytearray(clean)
        struct.pack_into("<H", b, vlr, 2051)
        cases.append(Case("LASzip compressor 2051", {name: bytes(b)}))
    return name, clean, _las_ref, cases, {}


def _fmt_copc(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import struct
    import tempfile

    from pointcloud_data import write_copc

    with tempfile.TemporaryDirectory() as d:
        write_copc(f"{d}/c.copc.laz", 6, 200 if small else 2000, depth=2 if small else 3)
        clean = Path(f"{d}/c.copc.laz").read_bytes()
    name = "c.copc.laz"
    cases = [Case("empty", {name: b""})]
    cases += [Case(n, {name: d}) for n, d in truncations(clean, 9, 589)]
    cases += [Case(n, {name: d}) for n, d in flips(clean, 10, 375, 589, 5)]  # the copc info VLR
    root = struct.unpack_from("<Q", clean, 375 + 54 + 40)[0]  # the info VLR's root hierarchy page offset
    b = bytearray(clean)
    struct.pack_into("<i", b, root, 2**31 - 1)  # the first entry's depth: 1 << depth would be a 256 MiB int
    cases.append(Case("hierarchy depth 2**31-1", {name: bytes(b)}))
    return name, clean, None, cases, {}


def _fmt_cog(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import struct
    import tempfile

    from test_cog import as_tuples, reference, write_cog

    with tempfile.TemporaryDirectory() as d:
        shape = (1, 40, 56) if small else (1, 200, 300)
        write_cog(Path(d) / "i.tif", shape, "uint8", COMPRESS="DEFLATE", BLOCKSIZE=16 if small else 64,
                  overviews=False)
        clean = (Path(d) / "i.tif").read_bytes()
    name = "i.tif"
    ifd = struct.unpack_from("<I", clean, 4)[0]
    cases = [Case("empty", {name: b""}), Case("PNG named .tif", {name: b"\x89PNG\r\n\x1a\n" + bytes(400)})]
    cases += [Case(n, {name: d}) for n, d in truncations(clean, 11, ifd + 12)]
    cases += [Case(n, {name: d}) for n, d in flips(clean, 12, ifd, ifd + 200, 6)]  # the IFD
    cases += [Case(n, {name: d}) for n, d in flips(clean, 13, ifd + 400, len(clean), 4)]  # tiles
    b = bytearray(clean)
    struct.pack_into("<I", b, 4, len(clean) + 100)
    cases.append(Case("IFD offset past the end", {name: bytes(b)}))
    b = bytearray(clean)
    struct.pack_into("<H", b, ifd, 60000)
    cases.append(Case("IFD entry count 60000", {name: bytes(b)}))
    entries = struct.unpack_from("<H", clean, ifd)[0]
    for i in range(entries):
        tag, typ, count, val = struct.unpack_from("<HHII", clean, ifd + 2 + 12 * i)
        if tag == 324:  # TileOffsets: point the first tile past the end
            off = val if count > 1 else ifd + 2 + 12 * i + 8
            b = bytearray(clean)
            struct.pack_into("<I", b, off, len(clean) + 5000)
            cases.append(Case("tile offset past the end", {name: bytes(b)}))
        if tag == 325:  # TileByteCounts: a huge count
            off = val if count > 1 else ifd + 2 + 12 * i + 8
            b = bytearray(clean)
            struct.pack_into("<I", b, off, 1 << 31)
            cases.append(Case("tile byte count past the end", {name: bytes(b)}))

    def ref(data: bytes, path: str, table: Any) -> None:
        want = reference(path)
        assert as_tuples(table.to_pylist()) == want

    return name, clean, ref, cases, {}


def _fmt_imzml(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import tempfile

    from test_imzml import grid_spectra, write

    with tempfile.TemporaryDirectory() as d:
        write(Path(d) / "s.imzML", grid_spectra(2 if small else 4, 2 if small else 3, points=5 if small else 10, seed=1,
                                                   processed=True), mode="processed")
        xml, ibd = (Path(d) / "s.imzML").read_bytes(), (Path(d) / "s.ibd").read_bytes()
    cases = [Case("empty xml", {"s.imzML": b"", "s.ibd": ibd}), Case("empty ibd", {"s.imzML": xml, "s.ibd": b""})]
    cases += [Case("xml " + n, {"s.imzML": d, "s.ibd": ibd}) for n, d in truncations(xml, 14, 300)]
    cases += [Case("ibd " + n, {"s.imzML": xml, "s.ibd": d}) for n, d in truncations(ibd, 15, 16)]
    cases += [Case("xml " + n, {"s.imzML": d, "s.ibd": ibd}) for n, d in flips(xml, 16)]
    cases += [Case("ibd " + n, {"s.imzML": xml, "s.ibd": d}) for n, d in flips(ibd, 17, 16)]
    cases.append(Case("not XML", {"s.imzML": b"id,x\n1,2\n", "s.ibd": ibd}))
    off = re.search(rb'accession="IMS:1000102"[^>]*value="(\d+)"', xml)
    if off:
        bad = xml[:off.start(1)] + str(len(ibd) + 999).encode() + xml[off.end(1):]
        cases.append(Case("offset past the ibd", {"s.imzML": bad, "s.ibd": ibd}))
    offsets = [int(v) for v in re.findall(rb'accession="IMS:1000102"[^>]*value="(\d+)"', xml)]
    if len(offsets) >= 2:  # the first spectrum's m/z (float64) and intensity (float32) arrays start with NaN
        import struct

        b = bytearray(ibd)
        struct.pack_into("<d", b, offsets[0], float("nan"))
        struct.pack_into("<f", b, offsets[1], float("nan"))
        cases.append(Case("NaN floats in the ibd", {"s.imzML": xml, "s.ibd": bytes(b)}))

    def ref(data: bytes, path: str, table: Any) -> None:
        from test_imzml import assert_rows, pyimzml_rows

        # NaN equals NaN: flipped .ibd bytes are often NaN floats, which pyimzML and we both return as stored
        assert_rows(table.to_pylist(), pyimzml_rows(Path(path)), equal_nan=True)

    return "s.imzML", xml, ref, cases, {"_files": {"s.imzML": xml, "s.ibd": ibd}, "_fuzz": ["s.imzML", "s.ibd"]}


def _fmt_ms(small: bool = False) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import tempfile

    from test_ms import write_ms

    with tempfile.TemporaryDirectory() as d:
        write_ms(Path(d) / "m.ms", "ssm", nslots=2 if small else 4)
        root = Path(d) / "m.ms"
        files = {str(p.relative_to(d)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    dat, f0 = files["m.ms/table.dat"], files["m.ms/table.f0"]

    def with_(**changed: bytes | None) -> dict[str, bytes]:
        out = dict(files)
        for k, v in changed.items():
            key = f"m.ms/{k.replace('_', '.')}"
            if v is None:
                del out[key]
            else:
                out[key] = v
        return {"m.ms": b"", **out}  # the first key names the object (a directory)

    cases = [Case("empty table.dat", with_(table_dat=b"")), Case("empty table.f0", with_(table_f0=b"")),
             Case("missing table.f0", with_(table_f0=None)), Case("table.dat is CSV", with_(table_dat=b"a,b\n"))]
    # each build starts casacore in a child interpreter (~0.6 s): fewer cases than the other formats
    cases += [Case("table.dat " + n, with_(table_dat=d)) for n, d in truncations(dat, 18, 64)[::4]]
    cases += [Case("table.f0 " + n, with_(table_f0=d)) for n, d in truncations(f0, 19, 512)[::4]]
    cases += [Case("table.dat " + n, with_(table_dat=d), same_as_clean=True) for n, d in flips(dat, 20, k=2)]
    cases += [Case("table.f0 header " + n, with_(table_f0=d), same_as_clean=True)
              for n, d in flips(f0, 21, 0, 256, k=2)]
    return "m.ms", b"", None, cases, {"_files": {"m.ms": b"", **files}, "_fuzz": ["m.ms/table.f0", "m.ms/table.dat"],
                                      "format": "ms"}


#: format -> its table; ``small=True`` gives a smaller clean object (a tenth of the records) for the quick fuzz
FORMATS: dict[str, Callable[..., tuple[str, bytes, Any, list[Case], dict[str, Any]]]] = {
    "text": _fmt_text, "csv": _fmt_csv, "fastq": _fmt_fastq, "fasta": _fmt_fasta, "vcf": _fmt_vcf,
    "las": lambda small=False: _fmt_las(False, small), "laz": lambda small=False: _fmt_las(True, small),
    "copc": _fmt_copc, "cog": _fmt_cog, "imzml": _fmt_imzml, "ms": _fmt_ms,
}


# -- running a case, in the child process ------------------------------------------------------------------------

def _write(root: Path, files: dict[str, bytes]) -> str:
    """Write a case's files; returns the object's path (the first file, or the directory it names)."""
    first = None
    for rel, data in files.items():
        p = root / rel
        if first is None:
            first = p
            if rel.endswith(".ms"):
                p.mkdir(parents=True, exist_ok=True)
                continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return str(first)


def _read(path: str, options: dict[str, str], build: bool = True) -> tuple[Any, Any]:
    """Build the index, then read every slice at 1 and at 5 partitions: the two tables."""
    import pyarrow as pa

    from pyspark_dataplug.index.build import plan_build, run_tasks_locally
    from pyspark_dataplug.plan import open_dataset

    rest = {k: v for k, v in options.items() if k != "format"}
    if build:
        plan_build(path, options.get("format"), **rest).run(run_tasks_locally, force=True)
    out = []
    for n in (1, 5):
        tables = [s.get() for part in open_dataset({"path": path, **options}).plan(partitions=n) for s in part]
        out.append(pa.concat_tables(tables) if tables else pa.table({}))
    return out[0], out[1]


def _build_in_memory(path: str, options: dict[str, str]) -> tuple[Any, list[Any], list[Any], Any]:
    """The index job of :func:`_read` run into memory instead of storage: ``(format, objects, indexes, storage)``.

    Writing and loading the manifest and Parquet tables is most of a small case's time and sees none of the
    damaged bytes (a damaged stored index is the security tests' matter), so the quick fuzz tiers skip it and
    run many more inputs through what does parse them: the index job's map and reduce, planning, decoding.
    """
    from pyspark_dataplug.formats import get_format
    from pyspark_dataplug.index.build import build_indexes, plan_build, run_tasks_locally
    from pyspark_dataplug.index.store import IndexStore

    class Kept(IndexStore):
        def __init__(self) -> None:
            super().__init__()
            self.kept: dict[str, Any] = {}

        def save(self, info: Any, fmt: str, index: Any) -> str:
            index.location = self.dir(info.uri, fmt)  # blobs the map tasks wrote (gzip windows) are there
            self.kept[info.uri] = index
            return index.location

    rest = {k: v for k, v in options.items() if k != "format"}
    build = plan_build(path, options.get("format"), **rest)
    store = Kept()
    build_indexes(run_tasks_locally, build.fmt, build.objects, store, build.storage, force=True)
    indexes = [store.kept[o.uri] for o in build.objects]
    fmt = get_format(build.fmt.name, {**build.fmt.params, **build.fmt.resolve(indexes[0], None)})
    return fmt, build.objects, indexes, build.storage


def _get_all(parts: list[list[Any]]) -> Any:
    import pyarrow as pa

    tables = [s.get() for part in parts for s in part]
    return pa.concat_tables(tables) if tables else pa.table({})


def _read_in_memory(path: str, options: dict[str, str], partitions: int) -> tuple[Any, Any]:
    """:func:`_read` with the index in memory (:func:`_build_in_memory`), at 1 partition and ``partitions``."""
    from pyspark_dataplug.plan import plan_partitions

    fmt, objects, indexes, storage = _build_in_memory(path, options)
    one, other = (_get_all(plan_partitions(fmt, objects, indexes, storage, partitions=n)) for n in (1, partitions))
    return one, other


def _key(table: Any) -> list[str]:
    return sorted(repr(r) for r in table.to_pylist())


class Outcome(Exception):
    pass


def _judge(path: str, data: bytes, ref: Any, clean: Any, same_as_clean: bool, run: Callable[[], tuple[Any, Any]],
           names: list[str]) -> str:
    """'exact' or 'error'; raises Outcome with the reason for anything else."""
    from pyspark_dataplug.errors import DataplugError

    try:
        one, five = run()
    except DataplugError as e:
        msg = str(e)
        if not any(n in msg for n in names):
            raise Outcome(f"error does not name the object: {type(e).__name__}: {msg[:300]}") from e
        return "error"
    except Exception as e:  # noqa: BLE001 - anything else is the bug this file looks for
        raise Outcome(f"raw {type(e).__name__} escaped: {str(e)[:300]}") from e
    if _key(one) != _key(five):
        raise Outcome(f"rows differ between 1 and 5 partitions ({one.num_rows} vs {five.num_rows})")
    if clean is not None and _key(one) == clean:
        return "exact"
    if same_as_clean:
        raise Outcome(f"{one.num_rows} rows that are not the undamaged object's ({len(clean or [])})")
    if ref is None:  # no reader of damaged input but Spark's own (CSV, VCF): the split must not change the rows
        return "consistent"
    try:
        ref(data, path, one)
    except AssertionError as e:
        raise Outcome(f"rows differ from the reference reader: {str(e)[:300]}") from e
    except Exception as e:  # noqa: BLE001 - the reference cannot read it either: only an error was right
        raise Outcome(f"{one.num_rows} rows where the reference fails ({type(e).__name__}: {str(e)[:200]})") from e
    return "exact"


def _with_deadline(label: str, fn: Callable[[], str]) -> str:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - carried to the caller's thread
            box["e"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(DEADLINE)
    if t.is_alive():
        print(json.dumps({"hang": label}), flush=True)
        os._exit(3)
    if "e" in box:
        raise box["e"]
    return box["v"]


def _names(path: str, files: dict[str, bytes], root: Path) -> list[str]:
    return [path] + [str(root / rel) for rel in files]


def main(fmt: str, root: str, fuzz: int) -> None:
    """Run one format's table (and ``fuzz`` mutated inputs) under ``root``; prints one JSON summary line."""
    base = Path(root)
    name, clean_bytes, ref, cases, options = FORMATS[fmt]()
    files0 = options.pop("_files", None)
    targets = options.pop("_fuzz", [name])
    clean_dir = base / "clean"
    path = _write(clean_dir, files0 if files0 else {name: clean_bytes})
    one, five = _read(path, options)
    clean = _key(one)
    assert clean == _key(five) and one.num_rows > 0, "the undamaged object must read"
    if ref is not None:
        ref(clean_bytes, path, one)
    counts: Counter = Counter()
    failures: list[str] = []
    # an index of another object, and one of another version, at this object's index location
    other = next((c for c in cases if c.name.startswith("truncated@") or "truncated@" in c.name), None)
    extra: list[tuple[str, Case, Callable[[Path, str], None]]] = []
    if other is not None:
        def copy_index(d: Path, p: str) -> None:
            shutil.copytree(path + ".dataplug", p + ".dataplug")

        def edit_version(d: Path, p: str) -> None:
            shutil.copytree(path + ".dataplug", p + ".dataplug")
            edited = 0
            for m in Path(p + ".dataplug").rglob("manifest.json"):
                doc = json.loads(m.read_text())
                doc["dataplug_index_version"] = doc["dataplug_index_version"] + 1
                m.write_text(json.dumps(doc))
                edited += 1
            assert edited, "no manifest to edit"
        extra.append(("index of another object", other, copy_index))
        extra.append(("index of another version", Case("clean", files0 or {name: clean_bytes}, True), edit_version))
    rng = random.Random(fmt)
    fuzzed = []
    source = files0 or {name: clean_bytes}
    for i in range(fuzz):
        target = targets[i % len(targets)]
        fuzzed.append(Case(f"fuzz#{i}", {**source, target: mutate(source[target], rng)}))
    plan = [(c.name, c, None) for c in cases] + extra + [(c.name, c, None) for c in fuzzed]
    for i, (label, case, prepare) in enumerate(plan):
        d = base / f"c{i}"
        p = _write(d, case.files)
        data = next(iter(case.files.values()))
        opts = options if case.options is None else case.options
        if prepare is None:
            run = (lambda p=p, opts=opts: _read(p, opts))  # noqa: E731
        else:
            prepare(d, p)
            run = (lambda p=p: _read(p, options, build=False))  # noqa: E731
        kind = "fuzz" if label.startswith("fuzz#") else "matrix"
        print(json.dumps({"case": label}), flush=True)  # names the case if the process dies in it
        try:
            strict = case.same_as_clean or prepare is not None
            judge = functools.partial(_judge, p, data, ref, clean, strict, run, _names(p, case.files, d))
            verdict = _with_deadline(label, judge)
            counts[f"{kind}:{verdict}"] += 1
        except Outcome as e:
            counts[f"{kind}:bad"] += 1
            failures.append(f"{fmt} {label}: {e}")
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps({"counts": counts, "failures": failures}), flush=True)


#: partition counts a quick build case reads at besides 1: a few, a prime, more than the small objects' records
QUICK_PARTITIONS = (2, 3, 7, 1000)
#: and a decode case (its plans are fixed; more partitions than records mostly re-decode one LAZ chunk per row)
DECODE_PARTITIONS = (1, 2, 3, 7)


def _judge_decode(parts: list[list[Any]], names: list[str]) -> str:
    """A decode-tier verdict: the rows the index promises ('rows') or an error naming the object ('error')."""
    from pyspark_dataplug.errors import DataplugError

    try:
        table = _get_all(parts)
    except DataplugError as e:
        if not any(n in str(e) for n in names):
            raise Outcome(f"error does not name the object: {type(e).__name__}: {str(e)[:300]}") from e
        return "error"
    except Exception as e:  # noqa: BLE001 - anything else is the bug this looks for
        raise Outcome(f"raw {type(e).__name__} escaped: {str(e)[:300]}") from e
    promised = [s.rows for part in parts for s in part]
    if None not in promised and table.num_rows != sum(promised):
        raise Outcome(f"{table.num_rows} rows where the index promises {sum(promised)}")
    return "rows"


def quick_main(fmt: str, root: str, n_build: int, n_decode: int, part: int = 0, parts: int = 1) -> None:
    """The quick fuzz of one format (cases ``i`` with ``i % parts == part``); prints one JSON summary line.

    Two tiers, both on a small clean object (mutations of a small input reach a parser's states far more
    often than those of a large one, where nearly every flip lands in record data):

    * build: ``n_build`` mutated inputs (:func:`mutate`) through the index job, planning and decoding with the
      index kept in memory (:func:`_build_in_memory`), read at 1 partition and at one of
      :data:`QUICK_PARTITIONS`, judged as the full table is (:func:`_judge`: the reference reader's rows or an
      error naming the object);
    * decode: ``n_decode`` same-length mutations (:func:`mutate_in_place`) of the files slices read, under the
      undamaged object's index (the file's mtime put back, so the version check passes: bytes damaged
      without the version changing, the one way damage reaches a decoder past the stale-index check), each
      read once at one of :data:`DECODE_PARTITIONS`: the rows the index promises, or an error naming the object.
    """
    from pyspark_dataplug.plan import plan_partitions

    started = time.monotonic()
    base = Path(root)
    name, clean_bytes, ref, _, options = FORMATS[fmt](small=True)
    files0 = options.pop("_files", None)
    targets = options.pop("_fuzz", [name])
    source = files0 or {name: clean_bytes}
    clean_path = _write(base / "clean", source)
    one, other = _read_in_memory(clean_path, options, 7)
    clean = _key(one)
    assert clean == _key(other) and one.num_rows > 0, "the undamaged object must read"
    counts: Counter = Counter()
    failures: list[str] = []

    def run(kind: str, label: str, judge: Callable[[], str]) -> None:
        print(json.dumps({"case": label}), flush=True)  # names the case if the process dies in it
        try:
            counts[f"{kind}:{_with_deadline(label, judge)}"] += 1
        except Outcome as e:
            counts[f"{kind}:bad"] += 1
            failures.append(f"{fmt} {label}: {e}")

    seconds = {}
    t0 = time.monotonic()
    rng = random.Random(f"{fmt}-build")
    for i in range(n_build):
        target = targets[i % len(targets)]
        files = {**source, target: mutate(source[target], rng)}
        n = rng.choice(QUICK_PARTITIONS)
        if i % parts != part:  # every child draws the whole sequence, so a case is the same whoever runs it
            continue
        d = base / f"b{i}"
        p = _write(d, files)
        data = next(iter(files.values()))
        run("build", f"build#{i}", functools.partial(_judge, p, data, ref, clean, False,
                                                     functools.partial(_read_in_memory, p, options, n),
                                                     _names(p, files, d)))
        shutil.rmtree(d, ignore_errors=True)

    seconds["build"] = time.monotonic() - t0
    t0 = time.monotonic()
    fmt_obj, objects, indexes, storage = _build_in_memory(clean_path, options)
    plans = {n: plan_partitions(fmt_obj, objects, indexes, storage, partitions=n) for n in DECODE_PARTITIONS}
    read = {r.uri for part in plans[1] for s in part for r in s.ranges}
    clean_dir = base / "clean"
    decoded = [rel for rel in source if str(clean_dir / rel) in read]
    assert decoded, f"no file of {sorted(source)} is read by the slices ({sorted(read)})"
    names = _names(clean_path, source, clean_dir)
    rng = random.Random(f"{fmt}-decode")
    for i in range(n_decode):
        target = decoded[i % len(decoded)]
        damaged = mutate_in_place(source[target], rng)
        n = rng.choice(DECODE_PARTITIONS)
        if i % parts != part:
            continue
        f = clean_dir / target
        st = f.stat()
        f.write_bytes(damaged)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the same version
        run("decode", f"decode#{i}", functools.partial(_judge_decode, plans[n], names))
    seconds["decode"] = time.monotonic() - t0
    seconds["all"] = time.monotonic() - started
    print(json.dumps({"format": fmt, "counts": counts, "failures": failures, "seconds": seconds}), flush=True)


def quick_all(root: str, part: int, parts: int) -> None:
    """:func:`quick_main` for every format in :data:`QUICK`, one after the other, in this process."""
    for fmt, (n_build, n_decode) in QUICK.items():
        quick_main(fmt, str(Path(root) / fmt), n_build, n_decode, part, parts)


# -- the tests: one child process per format --------------------------------------------------------------------

def _start(code: str, log: Path) -> subprocess.Popen:
    """A child running ``code``, its output into files next to ``log`` (a pipe read only at the end fills up and
    blocks the child: two children at once would take turns)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err, env=env)


def _finish(fmt: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> list[dict[str, Any]]:
    """The child's summaries, after checking it was not killed (a crash) and ran no case over the deadline."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{fmt}: the child ran over {timeout} s\n{Path(f'{log}.err').read_text()[-3000:]}") \
            from None
    out, err = Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    last = next((x["case"] for x in reversed(lines) if "case" in x), None)
    assert proc.returncode >= 0, f"{fmt}: the reading process was killed by signal {-proc.returncode} (a crash) " \
                                 f"in case {last!r}\n{err[-3000:]}"
    lines = [x for x in lines if "case" not in x]
    assert lines, f"{fmt}: no summary (exit {proc.returncode})\n{err[-3000:]}"
    assert "hang" not in lines[-1], f"{fmt}: case {lines[-1]['hang']!r} ran over {DEADLINE} s (a hang)"
    assert proc.returncode == 0, err[-3000:]
    return lines


def _report(fmt: str, counts: dict[str, int], kinds: tuple[str, ...], wall: float, unit: str = "s") -> None:
    for kind in kinds:
        n = sum(v for k, v in counts.items() if k.startswith(kind + ":"))
        fine = " ".join(f"{v} {counts.get(kind + ':' + v, 0):5}" for v in ("exact", "consistent", "rows")
                        if counts.get(kind + ":" + v))
        print(f"{fmt:6} {kind:6} cases {n:5} {fine} clear errors {counts.get(kind + ':error', 0):5} "
              f"wrong {counts.get(kind + ':bad', 0):3} hangs 0 crashes 0 ({wall:.1f} {unit})")


def run_child(fmt: str, root: Path, fuzz: int) -> dict[str, Any]:
    t0 = time.monotonic()
    log = root / "child"
    code = f"import test_bad_inputs as t; t.main({fmt!r}, {str(root)!r}, {fuzz})"
    summary = _finish(fmt, _start(code, log), log)[-1]
    _report(fmt, summary["counts"], ("matrix", "fuzz"), time.monotonic() - t0)
    return summary


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_bad_inputs(fmt: str, tmp_path: Path) -> None:
    summary = run_child(fmt, tmp_path, FUZZ[fmt])
    assert not summary["failures"], "\n".join(summary["failures"][:40])


def test_quick_fuzz(tmp_path: Path) -> None:
    """Thousands of mutated inputs per format (:func:`quick_main`, counts in :data:`QUICK`), in two children at
    once (one per core), each running every other case of every format."""
    t0 = time.monotonic()
    logs = [tmp_path / f"child{k}" for k in range(2)]
    procs = [_start(f"import test_bad_inputs as t; t.quick_all({str(tmp_path / str(k))!r}, {k}, 2)", log)
             for k, log in enumerate(logs)]
    summaries = [x for p, log in zip(procs, logs, strict=True) for x in _finish("quick fuzz", p, log, timeout=900)]
    failures = []
    for fmt, (n_build, n_decode) in QUICK.items():
        counts: Counter = Counter()
        for x in summaries:
            if x["format"] == fmt:
                counts.update(x["counts"])
        _report(fmt, counts, ("build", "decode"), sum(x["seconds"]["all"] for x in summaries if x["format"] == fmt),
                "s in the two children")
        assert sum(v for k, v in counts.items() if k.startswith("build:")) == n_build, fmt
        assert sum(v for k, v in counts.items() if k.startswith("decode:")) == n_decode, fmt
        failures += [f for x in summaries if x["format"] == fmt for f in x["failures"]]
    print(f"quick fuzz: {sum(b + d for b, d in QUICK.values())} inputs in {time.monotonic() - t0:.1f} s")
    assert not failures, "\n".join(failures[:40])
