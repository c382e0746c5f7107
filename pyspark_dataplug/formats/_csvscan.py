"""CSV record structure exactly as Spark's ``multiLine`` CSV reader (univocity) sees it; pure numpy.

Spark's rules, measured on PySpark 4.3 (``tests/test_csv_fuzz.py`` keeps them measured):

- The line separator is the first line break in the object: ``\\n`` (then ``\\r`` is an ordinary byte) or
  ``\\r\\n`` (then a lone ``\\n`` is an ordinary byte, and ``\\r\\n`` inside quotes reads as ``\\n``). A
  lone ``\\r`` separator (classic Mac) is not supported: such objects fail with a clear error.
- A quote opens a quoted field only at the start of a field (after a separator or delimiter). Elsewhere
  it is an ordinary byte (``5" screen``).
- Inside quotes, the escape character escapes a quote or itself (``\\"`` -> ``"``, ``\\\\`` -> ``\\``);
  before anything else it is kept (``C:\\temp``). With ``escape`` equal to ``quote`` (RFC 4180), ``""``
  is a quote.
- A quote inside a quoted field *closes* it when the next byte is a delimiter, a line separator or the
  end, possibly after whitespace. Otherwise (``"ab"cd``) the field becomes an unquoted one that runs to the
  next delimiter or separator (Spark's ``STOP_AT_DELIMITER``); its value is the quote, the content read so
  far, the quote and the rest as it is. With ``escape`` != ``quote``, ``""`` appends one quote and the
  decision waits for the next byte.
- Empty lines are skipped; with ``comment`` set, lines starting with it are skipped (quotes inside them
  mean nothing). A line with only spaces is a record.

Two paths give the same answer. The fast one assumes every unescaped quote opens or closes a field (true
of nearly every file), computes in/out of quotes by parity with numpy, then *checks* the assumption quote by
quote; any quote that breaks it sends the buffer to the exact path, a Python loop over quotes only (not
over bytes). Records are then the separators outside quotes that do not end an empty or comment line.

A buffer always starts at a *line start* (the object's start, or just after a line separator) in one of two
states: ``OUT`` (a record starts here) or ``IN`` (inside a quoted field). That is all the state a record
boundary depends on at a line start (escapes and "after a closing quote" never cross a separator), which
is why index chunks are cut at line starts (see ``_lines.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError

NL, CR = 10, 13
OUT, IN = 0, 1


@dataclass(frozen=True)
class Dialect:
    """Bytes of one CSV dialect. ``escape`` is None when unset or equal to ``quote`` (then ``rfc``)."""

    sep: int
    quote: int | None
    escape: int | None
    rfc: bool
    comment: int | None
    crlf: bool

    @classmethod
    def of(cls, sep: str, quote: str | None, escape: str | None, comment: str | None, crlf: bool) -> Dialect:
        for name, ch in (("sep", sep), ("quote", quote), ("escape", escape), ("comment", comment)):
            if ch is not None and (len(ch.encode()) != 1):
                raise ValueError(f"CSV option {name}={ch!r}: only single-byte (ASCII) characters are supported")
        q = ord(quote) if quote else None
        rfc = bool(quote) and escape == quote
        e = ord(escape) if escape and not rfc and quote else None
        return cls(ord(sep), q, e, rfc, ord(comment) if comment else None, crlf)


def detect_crlf(uri: str, head: bytes) -> bool | None:
    """The object's line separator, as Spark detects it: its first CR or LF. None: no line break yet."""
    arr = np.frombuffer(head, np.uint8)
    hits = np.flatnonzero((arr == NL) | (arr == CR))
    if not len(hits):
        return None
    i = int(hits[0])
    if arr[i] == NL:
        return False
    if i + 1 < len(arr) and arr[i + 1] == NL:
        return True
    if i + 1 == len(arr):
        return None  # a CR at the end of the head: the next byte decides
    raise FormatError(uri, i, "CSV whose first line break is a lone CR (classic Mac line endings) is not "
                      "supported; convert it to LF or CRLF line breaks")


@dataclass
class Scan:
    """Where records end in a buffer that starts at a line start.

    ``ends``: positions of the ``\\n`` that ends each record (empty and comment lines excluded).
    ``state``: OUT or IN at the end of the buffer. ``pending``: the buffer ends inside a record (a last
    record without a line break, or an unterminated quoted field). ``open_at``: where the unterminated
    quoted field opened (-1 if it opened before the buffer). ``clean``: every quote opened or closed a
    field in the plain way, so a standard CSV parser reads the buffer as Spark does.
    ``opens``/``closes``: quoted regions (open quote, last closing quote; ``len`` when unterminated).
    ``comments``: ``[start, end)`` byte spans of comment lines, separators included.
    """

    ends: np.ndarray
    state: int
    pending: bool
    open_at: int
    clean: bool
    opens: np.ndarray
    closes: np.ndarray
    closes_first: np.ndarray
    comments: list[tuple[int, int]]
    size: int = 0  # bytes scanned


def separators(buf: np.ndarray, d: Dialect) -> np.ndarray:
    """Positions of the ``\\n`` of every line separator."""
    nl = np.flatnonzero(buf == NL)
    if d.crlf and len(nl):
        nl = nl[(nl > 0) & (buf[np.maximum(nl - 1, 0)] == CR)]
    return nl


def line_start_after(buf: np.ndarray, p: int, d: Dialect | None) -> int | None:
    """First line start after a separator lying wholly in ``buf[p:]`` (None: no separator there).

    Needs no byte before ``p``, so two tasks that see the bytes from ``p`` on agree on the cut.
    """
    from ._lines import first_line_start

    return first_line_start(buf, p, crlf=d is not None and bool(d.crlf))


def unescaped_quotes(buf: np.ndarray, d: Dialect) -> np.ndarray:
    """Quote positions not preceded by an odd run of escape characters."""
    q = np.flatnonzero(buf == d.quote)
    if d.escape is None or not len(q):
        return q
    e = np.flatnonzero(buf == d.escape)
    if not len(e):
        return q
    starts = np.ones(len(e), dtype=bool)
    starts[1:] = e[1:] != e[:-1] + 1
    run_start = e[np.maximum.accumulate(np.where(starts, np.arange(len(e)), 0))]
    k = np.searchsorted(e, q) - 1
    kc = np.maximum(k, 0)
    has = (k >= 0) & (e[kc] == q - 1)
    run = np.where(has, q - run_start[kc], 0)
    return q[(run & 1) == 0]


def _is_ws(b: int) -> bool:
    return 0 < b <= 32


def scan(buf: np.ndarray, d: Dialect, state: int, uri: str = "", base: int = 0) -> Scan:
    """Exact records of ``buf`` (which starts at a line start in ``state``)."""
    n = len(buf)
    nl = separators(buf, d)
    q = unescaped_quotes(buf, d) if d.quote is not None else np.empty(0, np.int64)
    fast = _pair_fast(buf, d, q, nl, state)
    if fast is not None:
        opens, closes, comments = fast
        closes_first = closes
        clean = True
    else:
        opens, closes, closes_first, comments, clean = _pair_slow(buf, d, q, nl, state)
    out_nl = outside(nl, opens, closes)  # separators inside a quoted region are data
    # the line each outside separator ends: where did it start (-1: inside a field opened before the buffer)
    line_start = np.empty(len(out_nl), dtype=np.int64)
    if len(out_nl):
        line_start[1:] = out_nl[:-1] + 1
        line_start[0] = 0 if state == OUT else -1
    content = out_nl - (1 if d.crlf else 0)
    blank = line_start == content
    is_comment = np.zeros(len(out_nl), dtype=bool)
    if d.comment is not None and len(out_nl):
        ok = (line_start >= 0) & (line_start < n)
        is_comment[ok] = buf[line_start[ok]] == d.comment
        is_comment &= ~blank
    ends = out_nl[~blank & ~is_comment]
    # the end of the buffer
    if len(opens) and closes[-1] >= n:
        end_state, pending, open_at = IN, True, int(opens[-1])
    else:
        end_state, open_at = OUT, -1
        last = int(out_nl[-1]) + 1 if len(out_nl) else (0 if state == OUT else -1)
        if last == -1:
            pending = True  # a quoted field opened before the buffer closed in it, and no separator since
        elif last >= n:
            pending = False
        else:
            rest_is_comment = d.comment is not None and buf[last] == d.comment
            pending = not rest_is_comment and not (d.crlf and n - last == 1 and buf[last] == CR)
    return Scan(ends, end_state, pending, open_at, clean, opens, closes, closes_first, comments, n)


def _comment_spans(buf: np.ndarray, d: Dialect, nl: np.ndarray, starts: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of the comment lines among line starts ``starts`` (ends include the separator)."""
    if d.comment is None or not len(starts):
        return []
    n = len(buf)
    starts = starts[starts < n]
    starts = starts[buf[starts] == d.comment]
    if not len(starts):
        return []
    k = np.searchsorted(nl, starts)
    ends = np.where(k < len(nl), nl[np.minimum(k, len(nl) - 1)] + 1 if len(nl) else n, n)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _pair_fast(buf: np.ndarray, d: Dialect, q: np.ndarray, nl: np.ndarray,
               state: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]] | None:
    """Quoted regions if every quote opens or closes a field plainly; None if any does not."""
    n = len(buf)
    first = 1 if state == IN else 0
    par = (np.arange(len(q)) + first) & 1
    opening, closing = q[par == 0], q[par == 1]
    if first:
        opens = np.concatenate(([-1], opening)).astype(np.int64)
    else:
        opens = opening.astype(np.int64)
    closes = np.concatenate((closing, [n] * (len(opens) - len(closing)))).astype(np.int64)
    if len(q):
        idx = np.arange(len(q))
        o_idx, c_idx = idx[par == 0], idx[par == 1]
        # an opening quote starts a field: after a delimiter or a separator (or, RFC, right after the
        # closing quote of a "" pair -- the quote before an opening one is always a closing one)
        o = opening
        prev = buf[np.maximum(o - 1, 0)]
        at_line = (o > 0) & (prev == NL)
        if d.crlf:
            at_line &= buf[np.maximum(o - 2, 0)] == CR
        ok = at_line | ((o == 0) & (state == OUT)) | ((o > 0) & (prev == d.sep))
        if d.rfc:
            ok |= (o_idx > 0) & (q[np.maximum(o_idx - 1, 0)] == o - 1)
        if not ok.all():
            return None
        # a closing quote is followed by a delimiter, a separator, the end, or (RFC) the next quote
        c = closing
        nxt = buf[np.minimum(c + 1, n - 1)]
        ok = (c + 1 >= n) | (nxt == d.sep)
        if d.crlf:
            ok |= (nxt == CR) & (buf[np.minimum(c + 2, n - 1)] == NL) & (c + 2 < n)
        else:
            ok |= (nxt == NL) & (c + 1 < n)
        if d.rfc:
            ok |= (c_idx + 1 < len(q)) & (q[np.minimum(c_idx + 1, len(q) - 1)] == c + 1)
        if not ok.all():
            return None
    # comment lines: line starts outside quotes; they must hold no quote (else the exact path decides)
    comments: list[tuple[int, int]] = []
    if d.comment is not None:
        starts = outside(nl, opens, closes) + 1
        if state == OUT:
            starts = np.concatenate(([0], starts))
        comments = _comment_spans(buf, d, nl, starts)
        if comments and len(q):
            cs = np.array(comments, dtype=np.int64)
            # the number of quotes before each comment's end and before its start differ: it holds one
            if (np.searchsorted(q, cs[:, 1]) != np.searchsorted(q, cs[:, 0])).any():
                return None
    return opens, closes, comments


def _pair_slow(buf: np.ndarray, d: Dialect, q: np.ndarray, nl: np.ndarray, state: int):  # noqa: ANN202
    """The exact walk over quotes (and comment lines), univocity's rules one quote at a time."""
    n = len(buf)
    ql = q.tolist()
    nll = nl.tolist()
    opens: list[int] = []
    closes: list[int] = []
    closes_first: list[int] = []
    comments: list[tuple[int, int]] = []
    clean = True
    sep = d.sep
    quote = d.quote
    crlf = d.crlf

    def sep_start(j: int) -> bool:
        if crlf:
            return buf[j] == CR and j + 1 < n and buf[j + 1] == NL
        return buf[j] == NL

    def next_sep(p: int) -> int:
        k = int(np.searchsorted(nl, p))
        return nll[k] if k < len(nll) else n

    inside = state == IN
    if inside:
        opens.append(-1)
    last_close = -1  # everything after this position (and before the next opening) is outside quotes
    pos_line_start = 0 if state == OUT else None  # line start of the outside stretch, if known
    i = 0
    # comment lines can also hold no quote at all; those are found after the walk (they only matter
    # for quotes here)
    while i < len(ql):
        p = ql[i]
        if not inside:
            # the line p sits on, if it started outside quotes
            k = int(np.searchsorted(nl, p)) - 1
            if k >= 0 and nll[k] > last_close:
                ls = nll[k] + 1
            elif last_close < 0 and pos_line_start is not None:
                ls = pos_line_start
            else:
                ls = None
            if d.comment is not None and ls is not None and ls < n and buf[ls] == d.comment:
                end = next_sep(p)
                clean = False
                while i < len(ql) and ql[i] <= end:
                    i += 1
                continue
            if p == ls or (p > 0 and buf[p - 1] == sep):
                inside = True
                opens.append(p)
            elif quote is not None:
                clean = False  # a quote inside an unquoted field: literal
            i += 1
            continue
        # inside: a quote that may close the field
        first_close = p
        i += 1
        while True:
            j = p + 1
            if j >= n or buf[j] == sep or sep_start(j):
                break
            if buf[j] == quote:
                if d.rfc:
                    break  # "" is a quote: still inside (handled below)
                clean = False
                p = j  # univocity appends the quote and decides on the next byte
                if i < len(ql) and ql[i] == j:
                    i += 1
                continue
            clean = False
            if _is_ws(int(buf[j])):
                k2 = j
                while k2 < n and _is_ws(int(buf[k2])) and not sep_start(k2) and buf[k2] != sep:
                    k2 += 1
                if k2 >= n or buf[k2] == sep or sep_start(k2):
                    break  # whitespace after the closing quote is dropped
            break  # anything else: STOP_AT_DELIMITER, the rest of the field is unquoted
        if d.rfc and p + 1 < n and buf[p + 1] == quote:
            if i < len(ql) and ql[i] == p + 1:
                i += 1  # the pair's second quote
            continue
        inside = False
        closes.append(p)
        closes_first.append(first_close)
        last_close = p
    if inside:
        closes.append(n)
        closes_first.append(n)
    o = np.array(opens, dtype=np.int64)
    c = np.array(closes, dtype=np.int64)
    cf = np.array(closes_first, dtype=np.int64)
    if d.comment is not None:
        starts = outside(nl, o, c) + 1
        if state == OUT:
            starts = np.concatenate(([0], starts))
        comments = _comment_spans(buf, d, nl, starts)
    return o, c, cf, comments, clean


def outside_separators(buf: np.ndarray, d: Dialect, sc: Scan) -> np.ndarray:
    """The line separators (their ``\n``) that a scan found outside quoted fields."""
    return outside(separators(buf, d), sc.opens, sc.closes)


def outside(pos: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Those of ``pos`` outside every quoted region ``(opens[k], closes[k])``."""
    if not len(opens) or not len(pos):
        return pos
    k = np.searchsorted(opens, pos) - 1
    kc = np.maximum(k, 0)
    return pos[~((k >= 0) & (pos > opens[kc]) & (pos < closes[kc]))]


def record_spans(buf: np.ndarray, d: Dialect, sc: Scan) -> tuple[np.ndarray, np.ndarray]:
    """``[start, end)`` of every record of a buffer scanned from OUT (ends exclude the separator)."""
    n = len(buf)
    ends = sc.ends
    stops = ends - (1 if d.crlf else 0)
    out_nl = outside_separators(buf, d, sc)
    # the line start of the line each record ends on: after the outside separator before its end
    k = np.searchsorted(out_nl, ends) - 1
    starts = np.where(k >= 0, out_nl[np.maximum(k, 0)] + 1, 0)
    if sc.pending and sc.state == OUT:
        k = np.searchsorted(out_nl, n) - 1
        last = int(out_nl[k]) + 1 if k >= 0 else 0
        starts = np.append(starts, last)
        stops = np.append(stops, n)
    return starts.astype(np.int64), stops.astype(np.int64)


def tokenize(buf: np.ndarray, d: Dialect, sc: Scan) -> list[list[bytes | None]]:
    """Every record's field values, by Spark's rules (the exact path: a Python loop over fields)."""
    import re

    raw = buf.tobytes()
    n = len(raw)
    starts, stops = record_spans(buf, d, sc)
    if sc.clean:  # the fast path splits RFC "" pairs into two regions; the exact walk keeps one
        q = unescaped_quotes(buf, d) if d.quote is not None else np.empty(0, np.int64)
        opens, closes, closes_first, _, _ = _pair_slow(buf, d, q, separators(buf, d), OUT)
        sc = Scan(sc.ends, sc.state, sc.pending, sc.open_at, False, opens, closes, closes_first, sc.comments)
    delims = outside(np.flatnonzero(buf == d.sep), sc.opens, sc.closes)
    region_of = {int(o): r for r, o in enumerate(sc.opens.tolist())}
    quote = bytes([d.quote]) if d.quote is not None else b""
    if d.rfc:
        unescape = re.compile(re.escape(quote * 2)).sub
        repl = quote
    elif d.escape is not None:
        e = re.escape(bytes([d.escape]))
        unescape = re.compile(e + b"([" + e + re.escape(quote) + b"])").sub
        repl = rb"\1"
    else:
        unescape, repl = None, b""
    rows: list[list[bytes | None]] = []
    dl = delims.tolist()
    di = 0
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        while di < len(dl) and dl[di] < a:
            di += 1
        fields: list[bytes | None] = []
        fa = a
        while True:
            fb = dl[di] if di < len(dl) and dl[di] < b else b
            r = region_of.get(fa)
            if r is not None:
                p = int(sc.closes[r])
                first = int(sc.closes_first[r])
                content = raw[fa + 1: first]
                if unescape is not None:
                    content = unescape(repl, content)
                if d.crlf:
                    content = content.replace(b"\r\n", b"\n")
                content += quote * (p - first)
                rest = raw[p + 1: fb] if p < n else b""
                if rest.strip(bytes(range(1, 33))) == b"" or not rest:
                    value = content
                else:
                    value = quote + content + quote + rest
                # a delimiter inside the quoted part was skipped above; the field ends at the next one
            else:
                value = raw[fa:fb]
            fields.append(value if value else None)
            if fb >= b:
                break
            fa = fb + 1
            di += 1
        rows.append(fields)
    return rows
