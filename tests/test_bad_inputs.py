"""Bad inputs, one table per format: every damaged object gives exact rows or a DataplugError naming it.

Each format's table (and its seeded fuzz) runs in a child process, so a native decoder (lazrs, imagecodecs,
casacore, isal) that crashes shows up as a child killed by a signal instead of taking pytest down, and each
case runs under a deadline, so a hang is reported with its case name. A case passes when either

* the read raises a ``DataplugError`` whose message names the object (its path), or
* the rows equal the format's reference reader on the damaged bytes (Biopython, laspy, tifffile, pyimzml,
  Python's own UTF-8 line splitting), or, for a format without an independent reader of damaged input, the
  rows of the undamaged object (damage outside the data), and the rows are the same at 1 and 5 partitions.

Anything else (a raw IndexError/struct.error escaping, fewer rows than the reference, a hang, a signal) fails.
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
FUZZ = {k: int(v * float(os.environ.get("DATAPLUG_FUZZ_SCALE", "1"))) for k, v in {
    "text": 150, "csv": 100, "fastq": 150, "fasta": 60, "vcf": 80, "las": 120, "laz": 100, "copc": 30,
    "cog": 100, "imzml": 100, "ms": 6}.items()}


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


def _fmt_text() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from data import make_text

    clean = make_text(300, seed=11)
    cases = _line_cases(clean, "t.txt", 1, 40, b"\x89PNG\r\n\x1a\n" + bytes(300))
    huge = b"a\n" + b"x" * (32 << 20) + b"\nb\n"
    cases.append(Case("huge line (32 MiB)", {"huge.txt": huge}, options={}))
    return "t.txt", clean, _tuples(lambda data, path: _lines_reference(data)), cases, {"indexSpacing": "256"}


def _fmt_fastq() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from data import fastq_reference, make_fastq

    clean = make_fastq(60, seed=3)

    def ref(data: bytes, path: str) -> Any:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return fastq_reference(data)

    cases = _line_cases(clean, "r.fastq", 2, 60, b"id,name\n1,x\n2,y\n")
    seq = b"@r1\n" + b"A" * (32 << 20) + b"\n+\n" + b"I" * (32 << 20) + b"\n"
    cases.append(Case("huge read (2 x 32 MiB lines)", {"huge.fastq": seq}, options={}))
    return "r.fastq", clean, _tuples(ref), cases, {"indexSpacing": "256"}


def _fmt_fasta() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from test_fasta import random_fasta, reference

    clean = random_fasta(random.Random(4), 12)
    cases = _line_cases(clean, "g.fasta", 3, 30, b"@r1\nACGT\n+\nIIII\n")
    cases.append(Case("huge line (32 MiB)", {"huge.fasta": b">a\n" + b"ACGT" * (8 << 20) + b"\n>b\nAC\n"}))
    return "g.fasta", clean, _tuples(lambda data, path: reference(data, 50)), cases, {"sequenceChunkSize": "50"}


def _fmt_csv() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from data import make_csv

    clean = make_csv(200, seed=9)
    cases = _line_cases(clean, "c.csv", 4, 24, b"\x89PNG\r\n\x1a\n" + bytes(300))
    huge = b"id,name\n1,\"" + b"x" * (32 << 20) + b"\"\n2,y\n"
    cases.append(Case("huge field (32 MiB)", {"huge.csv": huge}, options={}))
    return "c.csv", clean, None, cases, {"indexSpacing": "256"}


def _fmt_vcf() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    from test_vcf import make_vcf

    clean = make_vcf(60, samples=2)
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


def _fmt_las(compress: bool) -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import struct

    from pointcloud_data import chunk_table_offset_at, las_bytes, make_las

    clean = las_bytes(make_las(6 if compress else 1, "1.4" if compress else "1.2", 400, seed=2), compress)
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
    if compress:
        at, _ = chunk_table_offset_at(clean)
        b = bytearray(clean)
        struct.pack_into("<q", b, at, len(clean) + 1000)
        cases.append(Case("chunk table past the end", {name: bytes(b)}))
    return name, clean, _las_ref, cases, {}


def _fmt_copc() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import tempfile

    from pointcloud_data import write_copc

    with tempfile.TemporaryDirectory() as d:
        write_copc(f"{d}/c.copc.laz", 6, 2000, depth=3)
        clean = Path(f"{d}/c.copc.laz").read_bytes()
    name = "c.copc.laz"
    cases = [Case("empty", {name: b""})]
    cases += [Case(n, {name: d}) for n, d in truncations(clean, 9, 589)]
    cases += [Case(n, {name: d}) for n, d in flips(clean, 10, 375, 589, 5)]  # the copc info VLR
    return name, clean, None, cases, {}


def _fmt_cog() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import struct
    import tempfile

    from test_cog import as_tuples, reference, write_cog

    with tempfile.TemporaryDirectory() as d:
        write_cog(Path(d) / "i.tif", (1, 200, 300), "uint8", COMPRESS="DEFLATE", BLOCKSIZE=64, overviews=False)
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


def _fmt_imzml() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import tempfile

    from test_imzml import grid_spectra, write

    with tempfile.TemporaryDirectory() as d:
        write(Path(d) / "s.imzML", grid_spectra(4, 3, points=10, seed=1, processed=True), mode="processed")
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


def _fmt_ms() -> tuple[str, bytes, Callable[[bytes, str], Any], list[Case], dict[str, str]]:
    import tempfile

    from test_ms import write_ms

    with tempfile.TemporaryDirectory() as d:
        write_ms(Path(d) / "m.ms", "ssm", nslots=4)
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


FORMATS: dict[str, Callable[[], tuple[str, bytes, Any, list[Case], dict[str, Any]]]] = {
    "text": _fmt_text, "csv": _fmt_csv, "fastq": _fmt_fastq, "fasta": _fmt_fasta, "vcf": _fmt_vcf,
    "las": lambda: _fmt_las(False), "laz": lambda: _fmt_las(True), "copc": _fmt_copc, "cog": _fmt_cog,
    "imzml": _fmt_imzml, "ms": _fmt_ms,
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


# -- the tests: one child process per format --------------------------------------------------------------------

def run_child(fmt: str, root: Path, fuzz: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    code = f"import test_bad_inputs as t; t.main({fmt!r}, {str(root)!r}, {fuzz})"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    wall = time.monotonic() - t0
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    last = next((x["case"] for x in reversed(lines) if "case" in x), None)
    assert proc.returncode >= 0, f"{fmt}: the reading process was killed by signal {-proc.returncode} (a crash) " \
                                 f"in case {last!r}\n{proc.stderr[-3000:]}"
    lines = [x for x in lines if "case" not in x]
    assert lines, f"{fmt}: no summary (exit {proc.returncode})\n{proc.stderr[-3000:]}"
    assert "hang" not in lines[-1], f"{fmt}: case {lines[-1]['hang']!r} ran over {DEADLINE} s (a hang)"
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = lines[-1]
    c = summary["counts"]
    for kind in ("matrix", "fuzz"):
        n = sum(v for k, v in c.items() if k.startswith(kind))
        print(f"{fmt:6} {kind:6} cases {n:5} exact {c.get(kind + ':exact', 0):5} "
              f"consistent {c.get(kind + ':consistent', 0):4} "
              f"clear errors {c.get(kind + ':error', 0):5} wrong {c.get(kind + ':bad', 0):3} hangs 0 crashes 0 "
              f"({wall:.1f} s)")
    return summary


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_bad_inputs(fmt: str, tmp_path: Path) -> None:
    summary = run_child(fmt, tmp_path, FUZZ[fmt])
    assert not summary["failures"], "\n".join(summary["failures"][:40])
