"""The docs say what the code does: option names and defaults, and every column of every format's schema.

No Spark: each format's schema comes from a real sample (the files ``sql_cases.py`` writes), indexed in this
process by the same build tasks the Spark job runs, and planned as a read plans it. A format page must hold
that schema's ``printSchema()`` tree verbatim, so a column renamed or retyped in the code fails here until
its page says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sql_cases import CASES

from pyspark_dataplug.formats import REGISTRY, format_class
from pyspark_dataplug.options import COMMON_OPTIONS, Opt, format_size

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
_CODE = re.compile(r"`([^`]+)`")


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables as (header cells, rows of cells); a ``|`` inside a code span does not split a cell."""
    out: list[tuple[list[str], list[list[str]]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            head = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append((head, rows))
        else:
            i += 1
    return out


def _cells(line: str) -> list[str]:
    protected = _CODE.sub(lambda m: m.group(0).replace("|", "\0"), line.strip().strip("|"))
    return [c.strip().replace("\0", "|") for c in protected.split("|")]


def _option_rows(text: str) -> list[tuple[list[str], str | None]]:
    """(option names, default cell or None) of every row of every table whose first column is ``option``."""
    rows = []
    for head, body in _tables(text):
        if head and head[0].lower() == "option":
            k = next((j for j, h in enumerate(head) if h.lower() == "default"), None)
            rows += [(_CODE.findall(r[0]), r[k] if k is not None else None) for r in body]
    return rows


def _registry() -> dict[str, list[Opt]]:
    """Option name (lower case) -> every declaration of it: common ones and each format's."""
    out: dict[str, list[Opt]] = {}
    for o in COMMON_OPTIONS:
        out.setdefault(o.name.lower(), []).append(o)
    for name in REGISTRY:
        for o in format_class(name).options:
            out.setdefault(o.name.lower(), []).append(o)
    return out


def _shown(o: Opt) -> str | None:
    """An option's default as the docs write it (None: no default to show)."""
    if o.default is None:
        return None
    if o.kind == "size":
        return format_size(o.default)
    if o.kind == "bool":
        return str(o.default).lower()
    return str(o.default)


def _page_of(fmt: str) -> Path:
    """The format page whose title names ``fmt`` in code (``# `las`, `laz`: ...``)."""
    hits = [p for p in PAGES if f"`{fmt}`" in _text(p).splitlines()[0]]
    assert len(hits) == 1, f"format {fmt!r}: {len(hits)} docs pages name it in their title, want 1"
    return hits[0]


def _names(dtype: Any, prefix: str = "") -> list[str]:
    """Every field name of a Spark type, nested structs (of arrays) included."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(dtype, StructType):
        return [n for f in dtype.fields for n in (f.name, *_names(f.dataType))]
    if isinstance(dtype, ArrayType):
        return _names(dtype.elementType)
    if isinstance(dtype, MapType):
        return _names(dtype.valueType)
    return []


def test_docs_exist_and_index_links_every_page():
    names = {p.name for p in PAGES}
    assert {"index.md", "architecture.md", "dataplug-users.md", "options.md"} <= names
    index = _text(DOCS / "index.md")
    for p in PAGES:
        if p.name != "index.md":
            assert f"]({p.name})" in index, f"docs/index.md does not link {p.name}"
    for p in PAGES:  # relative links resolve
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", _text(p)):
            assert (p.parent / target).exists(), f"{p.name}: broken link {target}"


def test_option_tables_name_real_options_with_their_defaults():
    registry = _registry()
    seen = 0
    for page in PAGES:
        for names, default in _option_rows(_text(page)):
            assert names, f"{page.name}: an option table row names no option in backticks"
            for n in names:
                assert n.lower() in registry, f"{page.name}: option {n!r} does not exist"
                seen += 1
            if default is None:
                continue
            shown = {_shown(o) for n in names for o in registry[n.lower()]}
            written = _CODE.findall(default)
            if written:
                assert set(written) <= shown, f"{page.name}: {names} default written {written}, code has {shown}"
            else:
                assert None in shown, f"{page.name}: {names} default {default!r}, code has {shown}"
    assert seen > 40


def test_options_page_lists_every_common_option():
    documented = {n.lower() for names, _ in _option_rows(_text(DOCS / "options.md")) for n in names}
    missing = [o.name for o in COMMON_OPTIONS if o.name not in ("path", "paths") and o.name.lower() not in documented]
    assert not missing, f"docs/options.md lacks {missing}"


@pytest.mark.parametrize("fmt", sorted(REGISTRY))
def test_format_page_lists_its_options_and_strategies(fmt):
    page = _page_of(fmt)
    text = _text(page)
    documented = {n.lower() for names, _ in _option_rows(text) for n in names}
    cls = format_class(fmt)
    missing = [o.name for o in cls.options if o.name.lower() not in documented]
    assert not missing, f"{page.name} lacks the {fmt} option(s) {missing}"
    for strategy in cls.strategies:
        assert f"`{strategy}`" in text, f"{page.name} does not name the {fmt} strategy {strategy!r}"


@pytest.mark.parametrize("fmt", sorted(REGISTRY))
def test_format_page_holds_the_schema_the_code_produces(fmt, tmp_path):
    from pyspark_dataplug.datasource import arrow_to_spark
    from pyspark_dataplug.index.build import plan_build, run_tasks_locally
    from pyspark_dataplug.plan import open_dataset

    case = CASES[fmt](tmp_path)
    plan_build(case.path, case.format, **case.build).run(run_tasks_locally)
    view = {k: v for k, v in case.view.items() if k != "columns"}  # every column
    schema = arrow_to_spark(open_dataset({"path": case.path, "format": case.format, **view}).schema)
    page = _page_of(fmt)
    text = _text(page)
    tree = schema.treeString().rstrip("\n")
    assert tree in text, f"{page.name} does not show the {fmt} sample's schema; the code gives:\n{tree}"
    assert schema.fields
    for name in _names(schema):
        assert f"`{name}`" in text or f"|-- {name}:" in text, f"{page.name}: column {name!r} is not documented"


def test_las_page_lists_the_columns_of_every_point_format():
    import laspy

    from pyspark_dataplug.formats import _laspoints as lp

    text = _text(_page_of("las"))
    for pf in range(11):
        schema = lp.arrow_schema(lp.schema_key(lp.layout(laspy.PointFormat(pf))))
        missing = [f.name for f in schema if f"`{f.name}`" not in text]
        assert not missing, f"docs/las.md lacks point format {pf}'s column(s) {missing}"
