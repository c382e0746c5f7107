"""VCF decoding (``formats/_vcfparse.py``) against pysam (htslib), with pysam's known differences mapped.

Pure Python, no Spark. Every decoded row is compared with what pysam reads from the same text, after
:func:`glow_from_pysam` turns pysam's view into the Glow view this module promises. The differences it
maps, each a documented decision of ``_vcfparse`` (Glow's behaviour) rather than a pysam bug:

- ID ``rs1;rs2``: pysam keeps one string; we split on ``;``. FILTER ``.``: pysam ``[]``, we null.
- A string ``.``: pysam keeps ``'.'``; we null. Missing array elements: pysam ``None`` elements; we apply
  Glow's rule (one missing element -> null list, several -> ``[]``).
- Floats: htslib stores float32, so both sides are compared after rounding to float32.
- GT: pysam ``None`` alleles are ``-1``; pysam calls a haploid or lone ``.`` call phased, we do not
  (phased only when the first separator is ``|``).
- A sample with fewer ``:`` fields than its FORMAT: the missing trailing fields are null (pysam fills GT
  with ``(None,)``, so that mapping reads the raw field count).
- GT with mixed separators (``0|1/2``): pysam is phased only if all are ``|``, Glow if the first is.
- GT not the first FORMAT key (against the spec): htslib drops it, Glow reads it; the raw text is used.
- FT: pysam splits a Number=. string on ``,`` (and keeps Number=1 whole); we split FT on ``;``.
- INFO END: pysam hides END from ``info`` and exposes it as ``stop``; a repeated INFO key: pysam keeps the
  first value, Glow the last; Number=G INFO: pysam raises. Those three read the raw INFO text instead.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pysam
import pytest

from pyspark_dataplug.errors import FormatError, OptionError
from pyspark_dataplug.formats._vcfparse import (
    GENOTYPE_ALIASES,
    FieldDef,
    VCFHeader,
    decode_lines,
    positions,
    vcf_schema,
)

# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def split_vcf(text: str) -> tuple[str, bytes]:
    """Header text and data bytes of a VCF text (header lines are those starting with '#')."""
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    return "".join(lines[:n]), "".join(lines[n:]).encode()


def as_buf(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)


def decode(text: str, **kw: Any) -> tuple[VCFHeader, pa.RecordBatch]:
    head, data = split_vcf(text)
    h = VCFHeader.parse(head)
    return h, decode_lines(as_buf(data), h, **kw)


def f32(x: Any) -> Any:
    """Round every float in a nested value to float32 (htslib's precision)."""
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"  # NaN != NaN: compare a stand-in
        return x if math.isinf(x) else float(np.float32(x))
    if isinstance(x, list | tuple):
        return [f32(v) for v in x]
    if isinstance(x, dict):
        return {k: f32(v) for k, v in x.items()}
    return x


def glow_list(vals: Any) -> Any:
    """Glow's rule for arrays: '.' elements null; all missing -> null (one element) or [] (several)."""
    if vals is None:
        return None
    vals = [None if v == "." else v for v in vals]
    if all(v is None for v in vals):
        return None if len(vals) == 1 else []
    return vals


def norm(v: Any, fd: FieldDef) -> Any:
    """A pysam value -> the Glow value for this header field."""
    if fd.scalar or fd.type == "Flag":
        if isinstance(v, tuple):  # pysam gives a 1-tuple for some scalar declarations
            v = v[0] if len(v) == 1 else v
        return None if v == "." else v
    if v is None:
        return None
    return glow_list(list(v) if isinstance(v, tuple) else [v])


def typed_raw(text: str, fd: FieldDef) -> Any:
    """Parse a raw INFO value as Glow would (for the cases pysam cannot give us)."""
    conv = {"Integer": int, "Float": float}.get(fd.type, str)

    def one(t: str) -> Any:
        return None if t in (".", "") else conv(t)

    if fd.scalar:
        return one(text)
    return glow_list([one(t) for t in text.split(",")])


RAISES = object()


def pysam_rows(text: str, tmp_path: Path, info_ids: list[str]) -> list[dict]:
    """Plain-Python copies of what pysam reads from ``text``."""
    p = tmp_path / f"oracle{random.random()}.vcf"
    p.write_bytes(text.encode())
    out = []
    raws = data_lines(text)
    with pysam.VariantFile(str(p)) as vf:
        for rec, raw in zip(vf, raws, strict=True):
            info = {}
            for k in info_ids:
                try:
                    info[k] = rec.info.get(k)
                except ValueError:  # Number=G INFO
                    info[k] = RAISES
            cols = raw.rstrip("\r\n").split("\t")
            samples = []
            for j, (name, s) in enumerate(rec.samples.items()):
                # only the sub-fields the sample has: pysam kills the process when asked for some missing
                # trailing ones (htslib "Unexpected type 0"); those are null by the documented rule anyway
                have = cols[8].split(":")[: len(cols[9 + j].split(":"))]
                samples.append((name, s.phased, {k: s.get(k) for k in s.keys() if k in have}))
            out.append({"chrom": rec.chrom, "start": rec.start, "stop": rec.stop, "id": rec.id, "ref": rec.ref,
                        "alts": rec.alts, "qual": rec.qual, "filter": list(rec.filter.keys()), "info": info,
                        "info_keys": list(rec.info.keys()),
                        "format": list(rec.format.keys()), "samples": samples})
    return out


def glow_from_pysam(p: dict, h: VCFHeader, raw: str, include_sample_ids: bool = True) -> dict:
    """The row this module should produce, from pysam's reading plus the documented mappings."""
    cols = raw.rstrip("\r\n").split("\t")
    raw_info = [] if cols[7] == "." else [kv.partition("=") for kv in cols[7].split(";") if kv]
    row: dict[str, Any] = {
        "contigName": p["chrom"], "start": p["start"], "end": p["stop"],
        "names": p["id"].split(";") if p["id"] else None,
        "referenceAllele": p["ref"], "alternateAlleles": list(p["alts"]) if p["alts"] else None,
        "qual": p["qual"], "filters": p["filter"] or None, "splitFromMultiAllelic": False,
    }
    for fd in h.info:
        occ = [v for k, _, v in raw_info if k == fd.id]
        got = p["info"][fd.id]
        if fd.type == "Flag":
            val = bool(got)
        elif fd.id == "END":
            val = p["stop"] if occ else None  # pysam hides END; it is the record's stop
        elif got is RAISES or len(occ) > 1:
            if len(occ) > 1 and got is not RAISES:
                assert norm(got, fd) == typed_raw(occ[0], fd)  # pysam keeps the first ...
            val = typed_raw(occ[-1], fd) if occ else None  # ... Glow the last
        else:
            val = norm(got, fd)
        row["INFO_" + fd.id] = val
    if not h.samples:
        row["genotypes"] = None
        return row
    fmt = cols[8].split(":")
    gts = []
    for j, (name, phased, vals) in enumerate(p["samples"]):
        nsub = len(cols[9 + j].split(":"))
        g: dict[str, Any] = {"sampleId": name} if include_sample_ids else {}
        for fd in h.format:
            k = max((i for i, key in enumerate(fmt) if key == fd.id), default=-1)
            present = 0 <= k < nsub
            if fd.id == "GT":
                if present and k > 0:  # htslib drops a GT that is not the first key (the spec wants it first)
                    raw_gt = cols[9 + j].split(":")[k]
                    alleles = re.split(r"[/|]", raw_gt)
                    g["phased"] = len(alleles) > 1 and raw_gt[len(alleles[0])] == "|"
                    g["calls"] = [-1 if a in (".", "") else int(a) for a in alleles]
                elif present:
                    calls = [-1 if a is None else a for a in vals["GT"]]
                    seps = re.findall(r"[/|]", cols[9 + j].split(":")[k])
                    if len(set(seps)) > 1:  # mixed ('0|1/2'): pysam wants all '|', Glow the first
                        g["phased"] = seps[0] == "|"
                    else:
                        g["phased"] = bool(phased) and len(calls) > 1  # pysam: haploid / '.' phased
                    g["calls"] = calls
                else:
                    g["phased"] = g["calls"] = None
                continue
            name_ = GENOTYPE_ALIASES.get(fd.id, fd.id)
            if not present:
                g[name_] = None
            elif fd.id == "FT":
                v = vals["FT"]
                text = v if isinstance(v, str) else ",".join(x or "." for x in v)
                g[name_] = None if text == "." else text.split(";")
            else:
                g[name_] = norm(vals[fd.id], fd)
        gts.append(g)
    row["genotypes"] = gts
    return row


def data_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines(keepends=True) if not ln.startswith("#")]


def check_against_pysam(text: str, tmp_path: Path, include_sample_ids: bool = True) -> pa.RecordBatch:
    h, batch = decode(text, include_sample_ids=include_sample_ids)
    assert batch.schema == vcf_schema(h, include_sample_ids)
    got = batch.to_pylist()
    oracle = pysam_rows(text, tmp_path, [fd.id for fd in h.info])
    raws = data_lines(text)
    assert len(got) == len(oracle) == len(raws)
    for i, (g, p, raw) in enumerate(zip(got, oracle, raws, strict=True)):
        want = glow_from_pysam(p, h, raw, include_sample_ids)
        assert f32(g) == f32(want), f"row {i}: {raw!r}\n got  {g}\n want {want}"
    return batch


# ---------------------------------------------------------------------------------------------------
# a hand-written VCF with every case
# ---------------------------------------------------------------------------------------------------

HEADER = """##fileformat=VCFv4.2
##FILTER=<ID=PASS,Description="All filters passed">
##FILTER=<ID=q10,Description="Quality below 10">
##FILTER=<ID=s50,Description="Less than 50% of samples">
##contig=<ID=1,length=100000>
##contig=<ID=chrX,length=100000>
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=RC,Number=R,Type=Integer,Description="Per-allele counts">
##INFO=<ID=GC,Number=G,Type=Integer,Description="Per-genotype counts">
##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP membership">
##INFO=<ID=END,Number=1,Type=Integer,Description="End position">
##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type, e.g. \\"DEL\\"">
##INFO=<ID=NOTE,Number=1,Type=String,Description="Free text">
##INFO=<ID=CH,Number=1,Type=Character,Description="One character">
##INFO=<ID=MQ,Number=1,Type=Float,Description="Mapping quality">
##INFO=<ID=TAGS,Number=.,Type=String,Description="Tags">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred likelihoods">
##FORMAT=<ID=GL,Number=G,Type=Float,Description="Log10 likelihoods">
##FORMAT=<ID=HQ,Number=2,Type=Integer,Description="Haplotype qualities">
##FORMAT=<ID=FT,Number=1,Type=String,Description="Sample filter">
##FORMAT=<ID=XS,Number=1,Type=String,Description="Custom string">
"""
CHROM3 = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\n"

ROWS = [
    # multi-allelic with A/R/G INFO and R/G FORMAT; a Flag; ID and FILTER lists; INFO value with '='
    "1\t100\trs1;rs2\tA\tC,G\t50\tq10;s50\tAC=1,2;AF=0.25,0.5;RC=5,3,2;GC=1,2,3,4,5,6;DB;NOTE=k=v=w;CH=x"
    "\tGT:AD:DP:GQ:PL:GL\t0/1:10,5,0:15:99:0,10,100,20,200,300:-0.5,-1,-2,-3,-4,-5"
    "\t1|2:.,.,.:.:.:.:.\t./.:3,.,1:7:20:0,.,1,2,3,4:.",
    # './.', '0|.', haploid '0', '.', truncated FORMAT columns; a repeated INFO key (Glow keeps the last)
    "1\t200\t.\tG\tT\t.\tPASS\tAC=1;AC=2;MQ=30.5;TAGS=a,.,b\tGT:DP:FT:XS\t0|.:8:q1;q2:hello\t0\t.",
    # END with <DEL>; undeclared INFO and FORMAT keys are ignored; FORMAT without GT
    "chrX\t300\tsv1\tN\t<DEL>\t12.5\t.\tSVTYPE=DEL;END=450;UNDECL=3;DB\tDP:ZZ:HQ\t4:x:10,20\t5:y:.,30\t.:z:.",
    # ALT '.', sites with a different FORMAT string (GT last), FT missing
    "chrX\t400\t.\tT\t.\t.\t.\t.\tDP:FT:GT\t1:.:0/0\t2:PASS:0|0\t3:q5:.|.",
    # triploid calls, alleles > 1 digit, HQ Number=2, all missing arrays
    "1\t500\trs9\tC\tA,G,T,CA,CG,CT,GA,GT,TA,TC,TT\t99.5\tPASS\tAC=.;AF=.,.,.,.,.,.,.,.,.,.,."
    "\tGT:HQ:AD\t0/5/11:.,.:.\t10|11:1,2:1,2,3,4,5,6,7,8,9,10,11,12\t.:.:.",
]
VCF = HEADER + CHROM3 + "\n".join(ROWS) + "\n"


def test_handwritten_vcf_matches_pysam(tmp_path: Path) -> None:
    check_against_pysam(VCF, tmp_path)


def test_handwritten_vcf_glow_values() -> None:
    """The Glow-specific values, spelled out (the pysam comparison maps them; here they are asserted)."""
    _, b = decode(VCF)
    r = b.to_pylist()
    assert r[0]["names"] == ["rs1", "rs2"] and r[0]["filters"] == ["q10", "s50"]
    assert r[0]["INFO_NOTE"] == "k=v=w" and r[0]["INFO_CH"] == "x" and r[0]["INFO_DB"] is True
    assert r[0]["INFO_GC"] == [1, 2, 3, 4, 5, 6] and r[0]["INFO_RC"] == [5, 3, 2] and r[0]["INFO_AF"] == [0.25, 0.5]
    g = r[0]["genotypes"]
    assert g[0] == {"sampleId": "S1", "phased": False, "calls": [0, 1], "alleleDepths": [10, 5, 0], "depth": 15,
                    "conditionalQuality": 99, "phredLikelihoods": [0, 10, 100, 20, 200, 300],
                    "genotypeLikelihoods": [-0.5, -1.0, -2.0, -3.0, -4.0, -5.0], "haplotypeQualities": None,
                    "filters": None, "XS": None}
    assert g[1]["phased"] is True and g[1]["calls"] == [1, 2]
    assert g[1]["alleleDepths"] == [] and g[1]["depth"] is None and g[1]["phredLikelihoods"] is None
    assert g[2]["calls"] == [-1, -1] and g[2]["phased"] is False and g[2]["alleleDepths"] == [3, None, 1]
    assert g[2]["phredLikelihoods"] == [0, None, 1, 2, 3, 4] and g[2]["genotypeLikelihoods"] is None

    assert r[1]["names"] is None and r[1]["qual"] is None and r[1]["filters"] == ["PASS"]
    assert r[1]["INFO_AC"] == [2] and r[1]["INFO_MQ"] == 30.5 and r[1]["INFO_TAGS"] == ["a", None, "b"]
    assert r[1]["INFO_DB"] is False and r[1]["INFO_END"] is None and r[1]["end"] == 200
    g = r[1]["genotypes"]
    assert (g[0]["phased"], g[0]["calls"], g[0]["depth"], g[0]["filters"], g[0]["XS"]) == (
        True, [0, -1], 8, ["q1", "q2"], "hello")
    assert (g[1]["phased"], g[1]["calls"], g[1]["depth"], g[1]["filters"]) == (False, [0], None, None)
    assert (g[2]["phased"], g[2]["calls"], g[2]["depth"]) == (False, [-1], None)

    assert (r[2]["start"], r[2]["end"], r[2]["INFO_END"], r[2]["INFO_SVTYPE"]) == (299, 450, 450, "DEL")
    assert r[2]["alternateAlleles"] == ["<DEL>"] and r[2]["names"] == ["sv1"] and r[2]["qual"] == 12.5
    g = r[2]["genotypes"]
    assert [x["phased"] for x in g] == [None] * 3 and [x["calls"] for x in g] == [None] * 3
    assert [x["haplotypeQualities"] for x in g] == [[10, 20], [None, 30], None]
    assert [x["depth"] for x in g] == [4, 5, None]
    assert "ZZ" not in g[0] and "INFO_UNDECL" not in r[2]

    assert r[3]["alternateAlleles"] is None and r[3]["filters"] is None and r[3]["end"] == 400
    g = r[3]["genotypes"]
    assert [x["calls"] for x in g] == [[0, 0], [0, 0], [-1, -1]]
    assert [x["phased"] for x in g] == [False, True, True]
    assert [x["filters"] for x in g] == [None, ["PASS"], ["q5"]]

    assert r[4]["INFO_AC"] is None and r[4]["INFO_AF"] == []
    g = r[4]["genotypes"]
    assert [x["calls"] for x in g] == [[0, 5, 11], [10, 11], [-1]]
    assert [x["haplotypeQualities"] for x in g] == [[], [1, 2], None]
    assert g[1]["alleleDepths"] == list(range(1, 13))


def test_crlf_and_missing_last_newline_decode_the_same() -> None:
    _, lf = decode(VCF)
    _, crlf = decode(VCF.replace("\n", "\r\n"))
    _, unterminated = decode(VCF.rstrip("\n"))
    _, unterminated_crlf = decode(VCF.replace("\n", "\r\n").rstrip("\r\n"))
    assert crlf.equals(lf) and unterminated.equals(lf) and unterminated_crlf.equals(lf)
    assert lf.num_rows == len(ROWS)


def test_sites_only(tmp_path: Path) -> None:
    """No samples: 8 columns, or 9 with a FORMAT column; ``genotypes`` exists and is null."""
    head = HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    rows = ["1\t10\t.\tA\tG\t3\tPASS\tAC=1;AF=0.5;DB", "1\t20\trs7\tAT\t<DEL>\t.\t.\tEND=40;SVTYPE=DEL"]
    text = head + "\n".join(rows) + "\n"
    b = check_against_pysam(text, tmp_path)
    assert b.column("genotypes").to_pylist() == [None, None]
    assert b.column("end").to_pylist() == [10, 40]
    assert b.schema.field("genotypes").type.value_type.names[:3] == ["sampleId", "phased", "calls"]
    _, b9 = decode(head + "1\t10\t.\tA\tG\t3\tPASS\tAC=1;AF=0.5;DB\tGT\n")
    assert b9.column("genotypes").to_pylist() == [None] and b9.column("INFO_AC").to_pylist() == [[1]]


def test_header_only() -> None:
    h = VCFHeader.parse(HEADER + CHROM3)
    b = decode_lines(np.zeros(0, np.uint8), h)
    assert b.num_rows == 0 and b.schema == vcf_schema(h)
    contigs, start, end = positions(np.zeros(0, np.uint8))
    assert len(contigs) == 0 and len(start) == 0 and len(end) == 0


def test_attributes_map(tmp_path: Path) -> None:
    """flatten_info=False: every INFO key, declared or not, raw value; Glow's htsjdk-reader rules."""
    h, b = decode(VCF, flatten_info=False)
    assert "attributes" in b.schema.names and not any(n.startswith("INFO_") for n in b.schema.names)
    assert b.schema.field("attributes").type == pa.map_(pa.string(), pa.string())
    maps = [dict(m) for m in b.column("attributes").to_pylist()]
    assert maps[0] == {"AC": "1,2", "AF": "0.25,0.5", "RC": "5,3,2", "GC": "1,2,3,4,5,6", "DB": "", "NOTE": "k=v=w",
                       "CH": "x"}
    assert maps[1] == {"AC": "2", "MQ": "30.5", "TAGS": "a,.,b"}
    assert maps[2] == {"SVTYPE": "DEL", "END": "450", "UNDECL": "3", "DB": ""}
    assert maps[3] == {} and maps[4] == {"AC": ".", "AF": ".,.,.,.,.,.,.,.,.,.,."}
    # the keys pysam sees, plus END (which pysam turns into the record's stop)
    oracle = pysam_rows(VCF, tmp_path, [])
    for m, p in zip(maps, oracle, strict=True):
        assert set(m) == set(p["info_keys"]) | ({"END"} if p["stop"] != p["start"] + len(p["ref"]) else set())
        assert p["stop"] == (int(m["END"]) if "END" in m else p["start"] + len(p["ref"]))
    # Glow's special cases: a key without '=' (declared non-Flag -> '.', undeclared -> ''), 'key=' -> '.',
    # a declared Flag '=0' is left out
    text = HEADER + CHROM3 + "1\t5\t.\tA\tC\t.\t.\tNOTE;FREE;MQ=;DB=0;AC=1\tGT\t0\t0\t0\n"
    _, b = decode(text, flatten_info=False)
    assert dict(b.column("attributes")[0].as_py()) == {"NOTE": ".", "FREE": "", "MQ": ".", "AC": "1"}
    _, b = decode(text)
    assert b.column("INFO_NOTE").to_pylist() == [None] and b.column("INFO_DB").to_pylist() == [True]


def test_annotations_csq_ann() -> None:
    head = ("##fileformat=VCFv4.2\n"
            '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
            'Format: Allele|Consequence|IMPACT|EXON|Amino_acids|DISTANCE|FLAGS">\n'
            "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
            "Rank | cDNA.pos / cDNA.length | Distance | ERRORS / WARNINGS / INFO'\">\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    rows = ["1\t5\t.\tA\tC\t.\t.\tCSQ=C|missense_variant&splice_region_variant|HIGH|3/7|A/V||,C|intron_variant"
            "|LOW|||12|cds_start_NF&;ANN=C|missense|2/5|100/2000|5|W1",
            "1\t6\t.\tA\tC\t.\t.\tCSQ=.;ANN=C|||||x|"]
    h, b = decode(head + "\n".join(rows) + "\n")
    csq = b.schema.field("INFO_CSQ").type.value_type
    assert [(f.name, str(f.type)) for f in csq] == [
        ("Allele", "string"), ("Consequence", "list<item: string>"), ("IMPACT", "string"),
        ("EXON", "struct<rank: string, total: string>"), ("Amino_acids", "struct<reference: string, variant: string>"),
        ("DISTANCE", "string"), ("FLAGS", "list<item: string>")]
    ann = b.schema.field("INFO_ANN").type.value_type
    assert [(f.name, str(f.type)) for f in ann] == [
        ("Allele", "string"), ("Annotation", "list<item: string>"), ("Rank", "struct<rank: string, total: string>"),
        ("cDNA_pos/cDNA_length", "struct<pos: string, length: string>"), ("Distance", "int32"),
        ("ERRORS/WARNINGS/INFO", "string")]
    r = b.to_pylist()
    assert r[0]["INFO_CSQ"] == [
        {"Allele": "C", "Consequence": ["missense_variant", "splice_region_variant"], "IMPACT": "HIGH",
         "EXON": {"rank": "3", "total": "7"}, "Amino_acids": {"reference": "A", "variant": "V"}, "DISTANCE": None,
         "FLAGS": None},
        {"Allele": "C", "Consequence": ["intron_variant"], "IMPACT": "LOW", "EXON": None, "Amino_acids": None,
         "DISTANCE": "12", "FLAGS": ["cds_start_NF"]}]
    assert r[0]["INFO_ANN"] == [{"Allele": "C", "Annotation": ["missense"], "Rank": {"rank": "2", "total": "5"},
                                 "cDNA_pos/cDNA_length": {"pos": "100", "length": "2000"}, "Distance": 5,
                                 "ERRORS/WARNINGS/INFO": "W1"}]
    assert r[1]["INFO_CSQ"] is None
    assert r[1]["INFO_ANN"] == [{"Allele": "C", "Annotation": None, "Rank": None, "cDNA_pos/cDNA_length": None,
                                 "Distance": None, "ERRORS/WARNINGS/INFO": "x|"}]


# Glow's own expectations (VCFDatasourceSuite "Parse VEP" / "Parse SnpEff", on Glow's test-data
# vcf/loftee.vcf and vcf/snpeff.vcf): the CSQ header line and first annotation of loftee.vcf, and snpeff.vcf's
# ANN header line and row
LOFTEE_CSQ_HEADER = (
    '##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. Format: '
    "Allele|Consequence|IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|EXON|INTRON|HGVSc|HGVSp|cDNA_position|"
    "CDS_position|Protein_position|Amino_acids|Codons|Existing_variation|DISTANCE|STRAND|FLAGS|SYMBOL_SOURCE|"
    'HGNC_ID|LoF|LoF_filter|LoF_flags|LoF_info">\n')
LOFTEE_CSQ = (
    "T|missense_variant&splice_region_variant|MODERATE|CHEK2|ENSG00000183765|Transcript|ENST00000328354|"
    "protein_coding|11/15||||1341|1259|420|C/Y|tGc/tAc|||-1||HGNC|16627||||EXON_START:29091698&DONOR_GERP_DIFF:0&"
    "DONOR_MES_DIFF:4.2436768980804&BRANCHPOINT_DISTANCE:NA&DONOR_ISS:4&INTRON_END:29091697&"
    "DONOR_DISRUPTION_PROB:0.892289929287647&DONOR_ESE:27&MUTANT_DONOR_MES:5.20491527083293&DONOR_ISE:7&"
    "EXON_END:29091861&DONOR_ESS:34&INTRON_START:29091231")
SNPEFF_ANN_HEADER = (
    "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
    "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | "
    "HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | "
    "ERRORS / WARNINGS / INFO' \">\n")
SNPEFF_ANN = (
    "T|splice_region_variant&synonymous_variant|LOW|GAB4|ENSG00000215568|transcript|ENST00000400588|"
    "protein_coding|6/10|c.1287G>A|p.Lys429Lys|1395|1287/1725|429/574||,T|splice_region_variant&"
    "non_coding_exon_variant|LOW|GAB4|ENSG00000215568|transcript|ENST00000465611|nonsense_mediated_decay|5/9|"
    "n.*1412G>A||||||,T|splice_region_variant&non_coding_exon_variant|LOW|GAB4|ENSG00000215568|transcript|"
    "ENST00000520505|processed_transcript|2/2|n.169G>A||||||,T|3_prime_UTR_variant|MODIFIER|GAB4|ENSG00000215568|"
    "transcript|ENST00000465611|nonsense_mediated_decay|5/9|n.*1412G>A|||||2228|,T|downstream_gene_variant|"
    "MODIFIER|GAB4|ENSG00000215568|transcript|ENST00000523144|processed_transcript||n.*594G>A|||||1200|")


def test_annotations_as_glows_own_tests() -> None:
    text = ("##fileformat=VCFv4.1\n" + LOFTEE_CSQ_HEADER + SNPEFF_ANN_HEADER
            + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
            + f"22\t17446991\t.\tC\tT\t.\t.\tCSQ={LOFTEE_CSQ};ANN={SNPEFF_ANN}\n")
    _, b = decode(text)
    csq = b.column("INFO_CSQ")[0].as_py()
    assert len(csq) == 1 and list(csq[0].values()) == [
        "T", ["missense_variant", "splice_region_variant"], "MODERATE", "CHEK2", "ENSG00000183765", "Transcript",
        "ENST00000328354", "protein_coding", {"rank": "11", "total": "15"}, None, None, None, "1341", "1259",
        "420", {"reference": "C", "variant": "Y"}, {"reference": "tGc", "variant": "tAc"}, None, None, "-1", None,
        "HGNC", "16627", None, None, None,
        ["EXON_START:29091698", "DONOR_GERP_DIFF:0", "DONOR_MES_DIFF:4.2436768980804", "BRANCHPOINT_DISTANCE:NA",
         "DONOR_ISS:4", "INTRON_END:29091697", "DONOR_DISRUPTION_PROB:0.892289929287647", "DONOR_ESE:27",
         "MUTANT_DONOR_MES:5.20491527083293", "DONOR_ISE:7", "EXON_END:29091861", "DONOR_ESS:34",
         "INTRON_START:29091231"]]
    ann = b.column("INFO_ANN")[0].as_py()
    assert len(ann) == 5
    assert list(ann[0].values()) == [
        "T", ["splice_region_variant", "synonymous_variant"], "LOW", "GAB4", "ENSG00000215568", "transcript",
        "ENST00000400588", "protein_coding", {"rank": "6", "total": "10"}, "c.1287G>A", "p.Lys429Lys",
        {"pos": "1395", "length": None}, {"pos": "1287", "length": "1725"}, {"pos": "429", "length": "574"},
        None, None]
    assert list(ann[1].values()) == [
        "T", ["splice_region_variant", "non_coding_exon_variant"], "LOW", "GAB4", "ENSG00000215568", "transcript",
        "ENST00000465611", "nonsense_mediated_decay", {"rank": "5", "total": "9"}, "n.*1412G>A", None, None, None,
        None, None, None]
    assert [a["Distance"] for a in ann] == [None, None, None, 2228, 1200]


def test_nan_and_inf(tmp_path: Path) -> None:
    """Glow's "Tolerate lower-case nan's" / "Tolerate inf": any case and sign of nan/inf/infinity."""
    head = ('##fileformat=VCFv4.2\n##INFO=<ID=X,Number=.,Type=Float,Description="">\n'
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="">\n'
            '##FORMAT=<ID=GP,Number=G,Type=Float,Description="">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\n")
    rows = ["1\t1\t.\tC\tT\tNaN\t.\tX=inf,-Infinity,+nan\tGT:GP\t./.:Nan",
            "1\t2\t.\tC\tT\t-inf\t.\tX=INF,1e3,.5\tGT:GP\t0/1:nan,-INF,1.25"]
    _, b = decode(head + "\n".join(rows) + "\n")
    r = b.to_pylist()
    assert math.isnan(r[0]["qual"]) and r[1]["qual"] == -math.inf
    x0 = r[0]["INFO_X"]
    assert x0[:2] == [math.inf, -math.inf] and math.isnan(x0[2]) and r[1]["INFO_X"] == [math.inf, 1000.0, 0.5]
    gp0, gp1 = (row["genotypes"][0]["posteriorProbabilities"] for row in r)
    assert len(gp0) == 1 and math.isnan(gp0[0])
    assert math.isnan(gp1[0]) and gp1[1:] == [-math.inf, 1.25]


def test_trailing_tabs() -> None:
    """Files in Glow's test data (bcftools output) end header lines, the #CHROM line and every data line with a
    tab; htslib rejects them, htsjdk/Glow read them: so do we, when the tab is the only surplus column."""
    head = ('##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\t\n'
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\t\n")
    h = VCFHeader.parse(head)
    assert h.format[0] == FieldDef("AD", "R", "Integer", "Allelic depths") and h.samples == ("A", "B")
    data = "chr20\t269\t.\tA\tAT\t30\t.\tAC=1\tGT:AD\t1/1:3,4\t./.\t\nchr20\t300\t.\tA\tC\t30\t.\t.\tGT\t0/1\t\n"
    b = decode_lines(as_buf(data.encode()), h)
    assert [[(g["calls"], g["alleleDepths"]) for g in r] for r in b.column("genotypes").to_pylist()] == [
        [([1, 1], [3, 4]), ([-1, -1], None)], [([0, 1], None), ([-1], None)]]  # an empty last sample: GT '' -> [-1]
    with pytest.raises(FormatError, match="expected 11 tab-separated columns"):  # two surplus: malformed
        decode_lines(as_buf(b"chr20\t269\t.\tA\tAT\t30\t.\t.\tGT\t1/1\t0/0\t\t\n"), h)


# ---------------------------------------------------------------------------------------------------
# header and schema
# ---------------------------------------------------------------------------------------------------


def test_header_parse_and_json_roundtrip() -> None:
    text = (HEADER.replace('##FORMAT=<ID=DP,Number=1,Type=Integer', '##FORMAT=<ID=DP,Number=.,Type=Float')
            + '##INFO=<ID=FLG,Number=1,Type=Flag,Description="flag declared with Number=1">\n'
            + '##INFO=<ID=AC,Number=1,Type=String,Description="a duplicate: the first definition stays">\n'
            + CHROM3).replace("\n", "\r\n")
    h = VCFHeader.parse(text)
    info = {f.id: f for f in h.info}
    fmt = {f.id: f for f in h.format}
    assert h.samples == ("S1", "S2", "S3") and h.contigs == ("1", "chrX")
    assert info["SVTYPE"].description == 'SV type, e.g. "DEL"'
    assert (info["AC"].number, info["AC"].type) == ("A", "Integer")
    assert (info["FLG"].number, info["FLG"].type) == ("0", "Flag")
    assert (fmt["FT"].number, fmt["FT"].type) == (".", "String")  # htsjdk's standard FT
    assert (fmt["DP"].number, fmt["DP"].type) == ("1", "Integer")  # repaired like htsjdk
    assert [f.id for f in h.info][:3] == ["AC", "AF", "RC"] and len(h.info) == 12
    back = VCFHeader.from_json(json.loads(json.dumps(h.to_json())))
    assert back == h


@pytest.mark.parametrize("bad, what", [
    ("##fileformat=VCFv4.2\n", "no #CHROM"),
    ('##INFO=<ID=X,Number=1,Type=Int,Description="x">\n' + CHROM3, "Type=Int"),
    ('##FORMAT=<ID=X,Number=0,Type=Flag,Description="x">\n' + CHROM3, "Flag is not allowed"),
    ('##INFO=<ID=X,Number=Z,Type=Integer,Description="x">\n' + CHROM3, "Number=Z"),
    ("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tS1\n", "#CHROM"),
])
def test_header_errors(bad: str, what: str) -> None:
    with pytest.raises(FormatError, match="s3://b/x.vcf") as e:
        VCFHeader.parse(bad, uri="s3://b/x.vcf")
    assert what in str(e.value)


def _spark_compatible(t: pa.DataType) -> bool:
    if pa.types.is_list(t):
        return _spark_compatible(t.value_type)
    if pa.types.is_struct(t):
        return all(_spark_compatible(f.type) for f in t)
    if pa.types.is_map(t):
        return t.key_type == pa.string() and t.item_type == pa.string()
    return t in (pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_())


def test_schema_is_glows() -> None:
    head = ("##fileformat=VCFv4.2\n"
            '##INFO=<ID=I1,Number=1,Type=Integer,Description="">\n'
            '##INFO=<ID=F2,Number=2,Type=Float,Description="">\n'
            '##INFO=<ID=SA,Number=A,Type=String,Description="">\n'
            '##INFO=<ID=CR,Number=R,Type=Character,Description="">\n'
            '##INFO=<ID=FL,Number=0,Type=Flag,Description="">\n'
            '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="">\n'
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="">\n'
            '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="">\n'
            '##FORMAT=<ID=GP,Number=G,Type=Float,Description="">\n'
            '##FORMAT=<ID=EC,Number=A,Type=Integer,Description="">\n'
            '##FORMAT=<ID=MQ,Number=1,Type=Integer,Description="">\n'
            '##FORMAT=<ID=FT,Number=1,Type=String,Description="">\n'
            '##FORMAT=<ID=OWN,Number=.,Type=Float,Description="">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\n")
    h = VCFHeader.parse(head)
    s = vcf_schema(h)
    L = pa.list_
    assert [(f.name, f.type) for f in s][:-1] == [
        ("contigName", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("names", L(pa.string())),
        ("referenceAllele", pa.string()), ("alternateAlleles", L(pa.string())), ("qual", pa.float64()),
        ("filters", L(pa.string())), ("splitFromMultiAllelic", pa.bool_()),
        ("INFO_I1", pa.int32()), ("INFO_F2", L(pa.float64())), ("INFO_SA", L(pa.string())),
        ("INFO_CR", L(pa.string())), ("INFO_FL", pa.bool_())]
    g = s.field("genotypes").type.value_type
    assert [(f.name, f.type) for f in g] == [
        ("sampleId", pa.string()), ("depth", pa.int32()), ("phased", pa.bool_()), ("calls", L(pa.int32())),
        ("alleleDepths", L(pa.int32())), ("posteriorProbabilities", L(pa.float64())),
        ("expectedAlleleCounts", L(pa.int32())), ("mappingQuality", pa.int32()), ("filters", L(pa.string())),
        ("OWN", L(pa.float64()))]
    assert s.field("INFO_SA").metadata == {b"vcf_header_count": b"A", b"vcf_header_description": b""}
    assert vcf_schema(h, include_sample_ids=False).field("genotypes").type.value_type.names[0] == "depth"
    flat = vcf_schema(h, flatten_info=False)
    assert flat.names == [*s.names[:9], "attributes", "genotypes"]
    assert all(_spark_compatible(f.type) for f in s) and all(_spark_compatible(f.type) for f in flat)
    no_fmt = vcf_schema(VCFHeader.parse("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"))
    assert no_fmt.field("genotypes").type == L(pa.struct([pa.field("sampleId", pa.string())]))


def test_select_orders_columns_and_skips_work() -> None:
    _, full = decode(VCF)
    _, part = decode(VCF, select=["end", "INFO_AC", "contigName"])
    assert part.schema.names == ["end", "INFO_AC", "contigName"]
    for n in part.schema.names:
        assert part.column(n).equals(full.column(n))
    # a bad genotype value is not even parsed when genotypes are not selected
    bad = HEADER + CHROM3 + "1\t5\t.\tA\tC\t.\t.\t.\tGT:DP\t0/1:x\t0\t0\n"
    _, b = decode(bad, select=["start", "end"])
    assert b.to_pylist() == [{"start": 4, "end": 5}]
    with pytest.raises(FormatError):
        decode(bad)
    with pytest.raises(OptionError, match="nope"):
        decode(VCF, select=["nope"])
    with pytest.raises(OptionError, match="stringency"):
        decode(VCF, stringency="loose")


# ---------------------------------------------------------------------------------------------------
# malformed lines
# ---------------------------------------------------------------------------------------------------

GOOD = "1\t5\t.\tA\tC\t.\t.\tAC=1\tGT:DP\t0/1:3\t0\t1\n"
MALFORMED = [
    ("1\t5\t.\tA\tC\t.\t.\tAC=1\tGT:DP\t0/1:3\t0\n", "expected 12 tab-separated columns"),
    ("1\tfive\t.\tA\tC\t.\t.\tAC=1\tGT:DP\t0/1:3\t0\t1\n", "POS 'five' is not an integer"),
    ("\n", "empty line"),
    ("1\t5\t.\tA\tC\t.\t.\tAC=x\tGT:DP\t0/1:3\t0\t1\n", "INFO AC: 'x' is not a valid Integer"),
    ("1\t5\t.\tA\tC\t.\t.\tMQ=1.2.3\tGT:DP\t0/1:3\t0\t1\n", "INFO MQ: '1.2.3' is not a valid Float"),
    ("1\t5\t.\tA\tC\t.\t.\t.\tGT:DP\t0/1:3\t0\t1:99999999999\n", "FORMAT DP of sample 'S3'"),
    ("1\t5\t.\tA\tC\t.\t.\t.\tGT:DP\t0/1:3\t0/a\t1\n", "FORMAT GT of sample 'S2': 'a'"),
    ("1\t5\t.\tA\tC\t.\t.\t.\tGT:DP\t0/1:3:9\t0\t1\n", "sample 'S1' has 3 ':'-separated fields"),
    ("1\t5\t.\tA\tC\t.\t.\tEND=ten\tGT:DP\t0/1:3\t0\t1\n", "INFO END: 'ten' is not a valid Integer"),
    ("1\t5\t.\tA\tC\tq\t.\t.\tGT:DP\t0/1:3\t0\t1\n", "QUAL: 'q' is not a valid Float"),
]


@pytest.mark.parametrize("line, what", MALFORMED)
def test_strict_names_uri_offset_and_problem(line: str, what: str) -> None:
    h = VCFHeader.parse(HEADER + CHROM3)
    data = (GOOD + GOOD + line + GOOD).encode()
    bad_at = 2 * len(GOOD)
    with pytest.raises(FormatError) as e:
        decode_lines(as_buf(data), h, uri="s3://b/calls.vcf", offset=1000)
    assert e.value.uri == "s3://b/calls.vcf" and e.value.offset == 1000 + bad_at
    assert what in str(e.value) and f"at byte {1000 + bad_at}" in str(e.value)


def test_lenient_skips_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    h = VCFHeader.parse(HEADER + CHROM3)
    lines = [GOOD, MALFORMED[3][0], GOOD.replace("\t5\t", "\t6\t"), MALFORMED[0][0], MALFORMED[6][0],
             GOOD.replace("\t5\t", "\t7\t")]
    data = "".join(lines).encode()
    first_bad = len(GOOD)
    with caplog.at_level(logging.WARNING, logger="pyspark_dataplug"):
        b = decode_lines(as_buf(data), h, stringency="LENIENT", uri="u.vcf", offset=50)
    assert b.column("start").to_pylist() == [4, 5, 6]
    good_only = decode_lines(as_buf("".join(lines[i] for i in (0, 2, 5)).encode()), h)
    assert b.equals(good_only)
    warnings = [r for r in caplog.records if r.name == "pyspark_dataplug"]
    assert len(warnings) == 1
    assert "skipped 3 malformed VCF line(s)" in warnings[0].getMessage()
    assert f"byte {50 + first_bad}" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pyspark_dataplug"):
        s = decode_lines(as_buf(data), h, stringency="SILENT")
    assert s.equals(good_only) and not caplog.records


def test_big_buffers_decode_in_pieces(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Buffers over PIECE_BYTES are cut at line ends: same batch, one LENIENT warning, STRICT offsets exact."""
    from pyspark_dataplug.formats import _vcfparse

    head, data = split_vcf(random_vcf(8, 150, 4))
    h = VCFHeader.parse(head)
    whole = decode_lines(as_buf(data), h)
    lines = data.splitlines(keepends=True)
    for piece in (200, 1000, 5000):  # lines are ~100-1000 bytes: some pieces hold one long line
        monkeypatch.setattr(_vcfparse, "PIECE_BYTES", piece)
        assert len(_vcfparse._pieces(as_buf(data))) > 1
        assert decode_lines(as_buf(data), h).equals(whole)
        bad = lines[:40] + [b"1\tx\t.\tA\tC\t.\t.\t.\n"] + lines[40:120] + [b"\n"] + lines[120:]
        joined = b"".join(bad)
        first_bad = len(b"".join(lines[:40]))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pyspark_dataplug"):
            assert decode_lines(as_buf(joined), h, stringency="LENIENT", offset=7).equals(whole)
        msgs = [r.getMessage() for r in caplog.records if r.name == "pyspark_dataplug"]
        assert len(msgs) == 1 and f"skipped 2 malformed VCF line(s); the first at byte {7 + first_bad}" in msgs[0]
        late = b"".join(lines[:120]) + b"\n" + b"".join(lines[120:])
        with pytest.raises(FormatError) as e:
            decode_lines(as_buf(late), h, offset=7)
        assert e.value.offset == 7 + len(b"".join(lines[:120])) and "empty line" in str(e.value)


# ---------------------------------------------------------------------------------------------------
# positions
# ---------------------------------------------------------------------------------------------------


def test_positions_match_pysam(tmp_path: Path) -> None:
    for text in (VCF, random_vcf(3, 120, 7)):
        _, data = split_vcf(text)
        contigs, start, end = positions(as_buf(data))
        oracle = pysam_rows(text, tmp_path, [])
        assert contigs.to_pylist() == [p["chrom"] for p in oracle]
        assert start.tolist() == [p["start"] for p in oracle]
        assert end.tolist() == [p["stop"] for p in oracle]
        assert start.dtype == np.int64 and end.dtype == np.int64
        c2, s2, e2 = positions(as_buf(data.replace(b"\n", b"\r\n").rstrip(b"\r\n")))
        assert c2.equals(contigs) and (s2 == start).all() and (e2 == end).all()


def test_positions_end_rules() -> None:
    data = ("1\t10\t.\tACGT\tA\t.\t.\tXEND=5;END2=9\n"  # not END
            "1\t20\t.\tA\t<DEL>\t.\t.\tSVTYPE=DEL;END=99\n"
            "1\t30\t.\tA\t<DEL>\t.\t.\tEND=40;END=50\n"  # repeated: the last, as Glow
            "1\t40\t.\tAC\tA\t.\t.\tEND=.\n"  # missing END: len(REF)
            "2\t50\t.\tA\t<DEL>\t.\t.\tEND=70\tGT:DP\t0/1:END=3\n")  # END in a sample column is not INFO END
    contigs, start, end = positions(as_buf(data.encode()))
    with pytest.raises(FormatError, match="INFO END: 'ten' is not a valid Integer"):
        positions(as_buf(b"1\t1\t.\tA\tC\t.\t.\tEND=ten\n"))
    assert contigs.to_pylist() == ["1", "1", "1", "1", "2"]
    assert start.tolist() == [9, 19, 29, 39, 49] and end.tolist() == [13, 99, 50, 41, 70]
    with pytest.raises(FormatError, match="^u at byte 5: malformed VCF line: POS 'x'"):
        positions(as_buf(b"1\t1\t.\tA\tC\t.\t.\t.\n1\tx\t.\tA\tC\t.\t.\t.\n"), uri="u", offset=-11)


# ---------------------------------------------------------------------------------------------------
# random VCFs against pysam
# ---------------------------------------------------------------------------------------------------

RANDOM_HEADER = """##fileformat=VCFv4.2
##FILTER=<ID=PASS,Description="All filters passed">
##FILTER=<ID=q10,Description="q">
##FILTER=<ID=s50,Description="s">
##contig=<ID=1>
##contig=<ID=2>
##contig=<ID=chrM>
##INFO=<ID=I1,Number=1,Type=Integer,Description="">
##INFO=<ID=I2,Number=2,Type=Integer,Description="">
##INFO=<ID=IA,Number=A,Type=Integer,Description="">
##INFO=<ID=IR,Number=R,Type=Integer,Description="">
##INFO=<ID=F1,Number=1,Type=Float,Description="">
##INFO=<ID=FA,Number=A,Type=Float,Description="">
##INFO=<ID=S1,Number=1,Type=String,Description="">
##INFO=<ID=SD,Number=.,Type=String,Description="">
##INFO=<ID=C1,Number=1,Type=Character,Description="">
##INFO=<ID=FL,Number=0,Type=Flag,Description="">
##INFO=<ID=END,Number=1,Type=Integer,Description="">
##FORMAT=<ID=GT,Number=1,Type=String,Description="">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="">
##FORMAT=<ID=PL,Number=G,Type=Integer,Description="">
##FORMAT=<ID=GL,Number=G,Type=Float,Description="">
##FORMAT=<ID=HQ,Number=2,Type=Integer,Description="">
##FORMAT=<ID=FT,Number=1,Type=String,Description="">
##FORMAT=<ID=XS,Number=1,Type=String,Description="">
##FORMAT=<ID=XF,Number=.,Type=Float,Description="">
"""
_LETTERS = "abcdefghijklmnopqrstuvwxyzABC"


def random_vcf(seed: int, nrows: int, nsamples: int) -> str:
    """A seeded random VCF: every value kind, random missing values, several FORMAT strings per file."""
    rng = random.Random(seed)

    def miss(p: float = 0.12) -> bool:
        return rng.random() < p

    def word() -> str:
        return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(1, 6)))

    def num(kind: str) -> str:
        if miss():
            return "."
        return str(rng.randint(-50, 5000)) if kind == "i" else str(rng.randint(-4000, 4000) / 8)

    def arr(kind: str, n: int) -> str:
        if n == 0 or miss(0.08):
            return "."
        return ",".join(num(kind) for _ in range(n))

    head = RANDOM_HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    if nsamples:
        head += "\tFORMAT\t" + "\t".join(f"smp{i}" for i in range(nsamples))
    lines = [head]
    pos = {"1": 0, "2": 0, "chrM": 0}
    chroms = sorted(pos, key=lambda c: rng.random())
    per = nrows // 3 + 1
    for r in range(nrows):
        chrom = chroms[min(r // per, 2)]
        pos[chrom] += rng.randint(1, 500)
        ref = "".join(rng.choice("ACGT") for _ in range(rng.choice([1, 1, 1, 2, 3])))
        sv = rng.random() < 0.08
        if sv:
            alts = ["<DEL>"]
        elif rng.random() < 0.1:
            alts = []
        else:
            alts = ["".join(rng.choice("ACGT") for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
        na = len(alts)
        ident = rng.choice([".", f"rs{r}", f"rs{r};id{r}"])
        qual = "." if miss(0.3) else str(rng.randint(0, 4000) / 4)
        filt = rng.choice([".", "PASS", "q10", "q10;s50"])
        info = []
        cands = [("I1", lambda n: num("i")), ("I2", lambda n: arr("i", 2)), ("IA", lambda n: arr("i", n)),
                 ("IR", lambda n: arr("i", n + 1)), ("F1", lambda n: num("f")), ("FA", lambda n: arr("f", n)),
                 ("S1", lambda n: "." if miss() else word() + rng.choice(["", "=" + word()])),
                 ("SD", lambda n: ",".join("." if miss() else word() for _ in range(rng.randint(1, 3)))),
                 ("C1", lambda n: "." if miss() else rng.choice(_LETTERS)), ("FL", None),
                 ("UNDECLARED", lambda n: word())]
        for key, fn in cands:
            if rng.random() < 0.45 and not (key in ("IA", "FA") and na == 0):
                info.append(key if fn is None else f"{key}={fn(na)}")
        if info and rng.random() < 0.05:
            info.append(rng.choice([e for e in info if "=" in e] or info))  # a repeated key
        if sv:
            info.append(f"END={pos[chrom] + rng.randint(1, 1000)}")
        rng.shuffle(info)
        fields = [chrom, str(pos[chrom]), ident, ref, ",".join(alts) or ".", qual, filt, ";".join(info) or "."]
        if nsamples:
            keys = [k for k in ("AD", "DP", "GQ", "PL", "GL", "HQ", "FT", "XS", "XF", "UF") if rng.random() < 0.5]
            rng.shuffle(keys)
            if rng.random() < 0.85:
                keys.insert(0 if rng.random() < 0.8 else len(keys), "GT")
            keys = keys or ["DP"]
            fields.append(":".join(keys))
            for _ in range(nsamples):
                ploidy = rng.choice([1, 2, 2, 2, 3])
                nal = na + 1
                ng = math.comb(nal + ploidy - 1, ploidy)
                vals = []
                for k in keys:
                    if k == "GT":
                        alle = ["." if miss(0.1) else str(rng.randint(0, na)) for _ in range(ploidy)]
                        v = alle[0] + "".join(rng.choice("/|") + a for a in alle[1:])
                    elif k == "AD":
                        v = arr("i", nal)
                    elif k in ("DP", "GQ"):
                        v = num("i")
                    elif k == "PL":
                        v = arr("i", ng)
                    elif k == "GL":
                        v = arr("f", ng)
                    elif k == "HQ":
                        v = arr("i", 2)
                    elif k == "FT":
                        v = rng.choice([".", "PASS", "q10", "q10;s50"])
                    elif k == "XS":
                        v = "." if miss() else word()
                    elif k == "XF":
                        v = arr("f", rng.randint(1, 3))
                    else:
                        v = word()
                    vals.append(v)
                # truncated trailing fields (not with a GT placed after other keys: against the spec, and
                # htslib then misreads the row -- "Unexpected type 0")
                if rng.random() < 0.15 and keys.index("GT") <= 0 if "GT" in keys else rng.random() < 0.15:
                    vals = vals[: rng.randint(1, len(vals))]
                fields.append(":".join(vals))
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed, nrows, nsamples", [(0, 300, 0), (1, 300, 1), (2, 250, 5), (3, 200, 20),
                                                    (4, 300, 3), (5, 150, 12)])
def test_random_vcf_matches_pysam(tmp_path: Path, seed: int, nrows: int, nsamples: int) -> None:
    text = random_vcf(seed, nrows, nsamples)
    check_against_pysam(text, tmp_path, include_sample_ids=seed % 2 == 0)
    # the same rows in any cut at line boundaries, at any offset
    head, data = split_vcf(text)
    h = VCFHeader.parse(head)
    whole = decode_lines(as_buf(data), h)
    nl = [i + 1 for i, c in enumerate(data) if c == 10]
    cut = nl[len(nl) // 3]
    parts = [decode_lines(as_buf(data[:cut]), h), decode_lines(as_buf(data[cut:]), h, offset=cut)]
    assert pa.Table.from_batches(parts).combine_chunks().to_batches()[0].equals(whole)
