"""SQL over every format on a classic session: ``CREATE TEMPORARY VIEW ... USING dataplug`` and the query a
user of the field writes first (see ``sql_cases.py``), its answer computed by the reference readers.

The index of each file is built by the Spark job first, as a user would; the same cases run through Spark
Connect in ``test_connect.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sql_cases import CASES, assert_rows


@pytest.mark.parametrize("name", list(CASES))
def test_sql_query_of_the_field(spark: Any, tmp_path: Path, name: str) -> None:
    from pyspark_dataplug import build_index

    case = CASES[name](tmp_path)
    summary = build_index(spark, case.path, format=case.format, **case.build)
    assert summary.indexed == [case.path]
    spark.sql(case.create_view({"partitions": "3"}))
    assert_rows(case, spark.sql(case.sql).collect())
