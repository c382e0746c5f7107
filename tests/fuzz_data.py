"""Seeded generators of awkward CSV, text and FASTQ for the differential fuzz (tests/test_fuzz.py).

The CSV generator writes what real files hold and what broke readers before: separators, quotes and
line breaks inside quoted fields, escaped quotes and escapes, backslashes that escape nothing, quotes in
unquoted fields (``5" screen``), text after a closing quote, spaces after one, comment lines holding
quotes, blank and whitespace-only lines, rows of the wrong width, CRLF, non-ASCII text. It leaves out only
the documented deviations from Spark (README): an object that ends inside a quoted field, and lone CR
line breaks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class CsvDialect:
    sep: str = ","
    escape: str = "\\"
    comment: str | None = None
    header: bool = False
    crlf: bool = False

    def options(self) -> dict[str, str]:
        opts = {"sep": self.sep, "escape": self.escape, "header": str(self.header).lower()}
        if self.comment:
            opts["comment"] = self.comment
        return opts


DIALECTS = [
    CsvDialect(),
    CsvDialect(escape='"'),
    CsvDialect(header=True, crlf=True),
    CsvDialect(sep="\t", escape='"', header=True),
    CsvDialect(sep=";", comment="#"),
    CsvDialect(escape='"', comment="#", crlf=True),
    CsvDialect(sep="|", header=True, comment="!"),
]

WORDS = ["alpha", "β-decay", "日本語", "x" * 30, "12", "-3.5", "true", "a b", "", " "]


def _field(rng: random.Random, d: CsvDialect, eol: str, first_width_row: bool) -> str:
    """One field as written in the file (quoted or not), from a menu of tricky shapes."""
    q = '"'
    esc_q = '""' if d.escape == '"' else '\\"'
    kind = rng.randrange(18)
    word = rng.choice(WORDS)
    if kind == 0:
        return f"{q}{word}{d.sep}{word}{q}"  # separator in quotes
    if kind == 1:
        return f"{q}{word}{eol}{word}{q}"  # line break in quotes
    if kind == 2:
        return f"{q}say {esc_q}hi{esc_q}{q}"  # escaped quotes
    if kind == 3:
        return f'{q}C:\\temp\\new{q}'  # backslashes that escape nothing
    if kind == 4:
        return f'{q}C:\\\\{q}' if d.escape == "\\" else f"{q}C:\\{q}"  # an escaped escape at the end
    if kind == 5 and not first_width_row:
        return f'5{q} screen'  # a quote inside an unquoted field
    if kind == 6 and not first_width_row:
        return f"{q}{word}{q}tail"  # text after a closing quote: the field is read raw
    if kind == 7:
        return f"{q}{word}{q}  "  # spaces after a closing quote are dropped
    if kind == 8:
        return f"{q}{q}"  # an empty quoted field
    if kind == 9:
        return f"{q}{word}{esc_q}{q}"  # an escaped quote just before the closing one
    if kind == 10:
        return "a\\b" if rng.random() < 0.5 else "\\"  # backslashes outside quotes
    if kind == 11 and d.escape == "\\":
        return f'{q}a\\\\\\{q}b{q}'  # \\\" : an escaped backslash then an escaped quote
    if kind == 12:
        return f"{q}{eol}{q}"  # a quoted line break alone
    if kind == 13 and d.comment:
        return f"{d.comment}{word}"  # the comment character inside a record is data
    return word


def make_csv(seed: int, d: CsvDialect, rows: int, width: int) -> bytes:
    """A file whose first record has ``width`` fields (files read together must agree on it)."""
    rng = random.Random(seed)
    eol = "\r\n" if d.crlf else "\n"
    lines: list[str] = []
    if d.comment and rng.random() < 0.5:
        lines.append(f'{d.comment} a comment with "a quote and, a separator')
    if d.header:
        lines.append(d.sep.join(f"c{i}" for i in range(width)))
    # the first record has the width every file of the group agrees on (Spark takes the schema from it)
    first = d.sep.join(_field(rng, d, eol, True) for _ in range(width))
    lines.append("x" + first if d.comment and first.startswith(d.comment) else first)
    for _ in range(rows):
        r = rng.random()
        if r < 0.04:
            lines.append("")  # a blank line: skipped
            continue
        if r < 0.06:
            lines.append("  ")  # a whitespace-only line: a record
            continue
        if r < 0.09 and d.comment:
            lines.append(f'{d.comment}"unbalanced quote in a comment{d.sep}x')
            continue
        n = width if rng.random() < 0.85 else rng.randint(1, width + 2)  # ragged rows now and then
        line = d.sep.join(_field(rng, d, eol, False) for _ in range(n))
        if d.comment and line.startswith(d.comment):
            line = "x" + line  # a record, not a comment line: every file keeps its first record's width
        lines.append(line)
    text = eol.join(lines)
    if rng.random() < 0.8:
        text += eol
    return text.encode()


def make_text(seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    pieces = ["", "a", "β", "tab\t", '"q"', "x" * 50, " ", "\\"]
    eols = ["\n", "\r\n"]
    out = [rng.choice(pieces) * rng.randint(0, 3) + rng.choice(eols) for _ in range(lines)]
    if rng.random() < 0.5:
        out.append("last line without a break")
    return "".join(out).encode()


def make_fastq(seed: int, reads: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(reads):
        n = rng.choice([0, 1, 5, 50, 151])
        seq = "".join(rng.choices("ACGTNacgt", k=n))
        qual = "".join(rng.choices("@+!#ABCDEFGHIJ", k=n))  # quality lines may start with '@' or '+'
        header = rng.choice([f"r{i}", f"r{i} desc {i}", f" r{i} lead", f"r{i}\tx=1"])
        plus = rng.choice(["+", f"+{header}"])  # a repeated title must equal the header's
        eol = "\r\n" if rng.random() < 0.1 else "\n"
        out.append(f"@{header}{eol}{seq}{eol}{plus}{eol}{qual}{eol}")
    text = "".join(out)
    if rng.random() < 0.3 and out and not out[-1].endswith(("\n\n", "\r\n\r\n")):
        text = text.rstrip("\r\n")  # no final line break (unless the last quality line is empty)
    elif rng.random() < 0.3 and out:
        text += "\n\n"  # trailing blank lines (Biopython accepts them)
    return text.encode()
