"""Deterministic test data and independent reference parsers (the oracles are not our code)."""

from __future__ import annotations

import io
import random


def make_fastq(n: int, seed: int = 7, crlf: bool = False, min_len: int = 20, max_len: int = 160) -> bytes:
    """Reads of varying length; ~1/4 of quality lines start with '@' and some with '+', to trap guessers."""
    rng = random.Random(seed)
    eol = "\r\n" if crlf else "\n"
    out = []
    for i in range(n):
        k = rng.randint(min_len, max_len)
        seq = "".join(rng.choices("ACGTN", k=k))
        qual = "".join(rng.choices("@+!#ABCDEFGHIJ", k=k))
        if i % 4 == 1:
            qual = "@" + qual[1:]
        header = f"SRR{seed}.{i}" + (f" {i} length={k}" if i % 3 else "")
        out.append(f"@{header}{eol}{seq}{eol}+{eol}{qual}{eol}")
    return "".join(out).encode()


def fastq_reference(data: bytes) -> list[tuple]:
    from Bio.SeqIO.QualityIO import FastqGeneralIterator

    rows = []
    for title, seq, qual in FastqGeneralIterator(io.StringIO(data.decode())):
        parts = title.split(None, 1)
        rows.append((parts[0] if parts else "", parts[1] if len(parts) > 1 else None, seq, qual))
    return rows


def make_text(n: int, seed: int = 3, crlf: bool = False, trailing_newline: bool = True) -> bytes:
    rng = random.Random(seed)
    eol = "\r\n" if crlf else "\n"
    words = ["alpha", "β-decay", "γ", "日本語", "x" * 40, "", "tab\there", "quote\"s"]
    lines = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(n)]
    text = eol.join(lines) + (eol if trailing_newline else "")
    return text.encode()


def make_csv(n: int, seed: int = 5, header: bool = True, rfc_quotes: bool = False) -> bytes:
    """Typed columns plus quoted fields holding the separator, quotes and newlines."""
    rng = random.Random(seed)
    esc_quote = '""' if rfc_quotes else '\\"'
    out = ["id,name,score,flag,note\n"] if header else []
    for i in range(n):
        name = rng.choice(["plain", "with, comma", "multi\nline", f"say {esc_quote}hi{esc_quote}", "ünï", ""])
        quoted = any(c in name for c in ',\n"') or rng.random() < 0.2
        name_field = f'"{name}"' if quoted else name
        score = rng.choice([f"{rng.uniform(-1e3, 1e3):.3f}", str(rng.randint(-5, 5)), ""])
        flag = rng.choice(["true", "false", "TRUE", ""])
        note = rng.choice(["a", "b c", "", "x" * rng.randint(1, 30)])
        out.append(f"{i},{name_field},{score},{flag},{note}\n")
        if i % 97 == 13:
            out.append("\n")  # blank lines are skipped, as by Spark
    return "".join(out).encode()
