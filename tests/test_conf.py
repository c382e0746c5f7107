"""The cluster configurations in conf/ (no Spark here): they parse, every ``spark.dataplug.<option>`` and
``DATAPLUG_*`` variable they set is a real option, the runtimes they name have the Python Data Source API, the
install script's extras exist, and the Python it installs into is the one PySpark runs.

Runtime facts, with their sources (checked 2026-11):
- Apache Spark: the Python Data Source API is new in Spark 4.0; its filter pushdown (``pushFilters``,
  ``spark.sql.python.filterPushdown.enabled``) in 4.1 (python/docs/source/user_guide/sql/python_data_source.rst,
  apache/spark PR #50684: "The filter pushdown API is introduced in Spark 4.1").
- Amazon EMR: every 7.x release ships Spark 3.5 (EMR Release Guide, "Spark release history": emr-7.10.0 has
  3.5.5-amzn-1). The first release with Spark 4 is the Amazon runtime for Apache Spark ``emr-spark-8.0.0``
  (Spark 4.0.2-amzn-0, Python 3.11-3.13; EMR on EC2, EKS and Serverless; released 2026-05-21; EMR Release Guide
  page emr-spark800-release and the EMR Serverless guide's release-version-emr-spark-8.0.0).
- Databricks: PySpark custom data sources were Public Preview from Databricks Runtime 15.2 and need 15.4 LTS
  or later (docs.databricks.com/pyspark/datasources.html); runtimes and their Spark: 15.4 LTS 3.5.0, 16.4 LTS
  3.5.2, 17.3 LTS 4.0.0, 18 LTS 4.1.0, 19 4.2.0 (Databricks Runtime release notes, versions and compatibility;
  "Databricks Runtime 18 ... powered by Apache Spark 4.1.0").
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from pyspark_dataplug.formats import REGISTRY, format_class
from pyspark_dataplug.options import COMMON_OPTIONS

CONF = Path(__file__).resolve().parents[1] / "conf"
ROOT = CONF.parent

PYTHON_DATA_SOURCE_SPARK = (4, 0)
PUSHDOWN_SPARK = (4, 1)
#: EMR release label -> Spark (only releases looked up are listed: a new label fails until added with a source)
EMR_SPARK = {"emr-7.10.0": "3.5.5", "emr-7.9.0": "3.5.5", "emr-spark-8.0.0": "4.0.2"}
#: Databricks Runtime (major.minor or major) -> Spark
DBR_SPARK = {"15.4": "3.5.0", "16.4": "3.5.2", "17.3": "4.0.0", "18": "4.1.0", "19": "4.2.0"}
#: Databricks runs Python data sources from 15.4 LTS on (its own backport, before Spark 4)
DBR_PYTHON_DATA_SOURCE = (15, 4)


def package_spark_floor() -> tuple[int, ...]:
    """The oldest Spark the package installs with (its pyspark requirement's >= bound)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(r"pyspark\b", d)]
    return version(re.search(r">=\s*([\d.]+)", spec).group(1))


def version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def option_names() -> set[str]:
    names = {o.name for o in COMMON_OPTIONS} - {"path", "paths"}
    for fmt in REGISTRY:
        names |= {o.name for o in format_class(fmt).options}
    return names


def env_names() -> set[str]:
    from pyspark_dataplug.options import Opt

    return {Opt(n, "str").env_var for n in option_names()}


def spark_defaults(path: Path) -> dict[str, str]:
    """``key value`` lines, commented-out examples included (they are copied in as they are)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip().lstrip("#").strip()
        m = re.match(r"^(spark\.[A-Za-z0-9_.\-]+)\s+(\S.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def emr_properties(configs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Classification -> its properties, nested classifications flattened."""
    out: dict[str, dict[str, str]] = {}
    for c in configs:
        assert set(c) <= {"Classification", "Properties", "Configurations"}, c
        out.setdefault(c["Classification"], {}).update(c.get("Properties", {}))
        for k, v in emr_properties(c.get("Configurations", [])).items():
            out.setdefault(f"{c['Classification']}/{k}", {}).update(v)
    return out


@pytest.fixture(scope="module")
def confs() -> dict[str, Any]:
    return {
        "spark-defaults": spark_defaults(CONF / "spark-defaults.conf"),
        "emr": emr_properties(json.loads((CONF / "emr-configurations.json").read_text())),
        "emr-cluster": json.loads((CONF / "emr-cluster.json").read_text()),
        "databricks": json.loads((CONF / "databricks-cluster.json").read_text()),
    }


def all_settings(confs: dict[str, Any]) -> dict[str, str]:
    out = dict(confs["spark-defaults"])
    for props in confs["emr"].values():
        out.update(props)
    out.update(confs["databricks"]["spark_conf"])
    out.update(confs["databricks"]["spark_env_vars"])
    return out


def test_every_dataplug_setting_is_a_real_option(confs: dict[str, Any]) -> None:
    settings = all_settings(confs)
    options, envs = option_names(), env_names() | {"DATAPLUG_EXTRAS", "DATAPLUG_VERSION", "DATAPLUG_PYTHON"}
    named = [k for k in settings if k.startswith("spark.dataplug.")]
    assert len(named) >= 3
    for key in named:
        assert key.removeprefix("spark.dataplug.") in options, f"{key}: no such option"
    for key in settings:
        env = key.rsplit(".", 1)[-1] if key.startswith("spark.") else key
        if env.startswith("DATAPLUG_"):
            assert env in envs, f"{key}: no option reads {env}"
    # the install script's own variables are the ones it reads
    script = (CONF / "install-dataplug.sh").read_text()
    assert all(f"${{{v}:-}}" in script for v in ("DATAPLUG_EXTRAS", "DATAPLUG_VERSION", "DATAPLUG_PYTHON"))
    from pyspark_dataplug.options import parse_options

    for key in named:  # and their values parse
        name = key.removeprefix("spark.dataplug.")
        fmt_opts = [o for f in REGISTRY for o in format_class(f).options]
        parse_options({name: settings[key]}, fmt_opts)


def test_the_runtimes_named_have_the_python_data_source_api(confs: dict[str, Any]) -> None:
    labels = set()
    for path in CONF.iterdir():
        labels |= set(re.findall(r"\bemr-(?:spark-)?\d+\.\d+\.\d+\b", path.read_text()))
    assert confs["emr-cluster"]["ReleaseLabel"] in labels
    for label in labels:
        assert label in EMR_SPARK, f"{label}: look up its Spark version and add it with its source"
        assert version(EMR_SPARK[label]) >= PYTHON_DATA_SOURCE_SPARK, f"{label} has Spark {EMR_SPARK[label]}"
        assert version(EMR_SPARK[label]) >= package_spark_floor(), f"{label}: pyproject's pyspark floor is higher"
    key = confs["databricks"]["spark_version"]
    m = re.match(r"^(\d+)(?:\.(\d+))?\.x-scala2\.13$", key) or re.match(r"^(\d+)\.x-scala2\.13$", key)
    assert m, f"{key}: not a Databricks Runtime key"
    dbr = (int(m.group(1)), int(m.group(2) or 0))
    spark = DBR_SPARK.get(f"{dbr[0]}.{dbr[1]}") or DBR_SPARK.get(str(dbr[0]))
    assert spark is not None, f"{key}: look up its Spark version and add it with its source"
    assert dbr >= DBR_PYTHON_DATA_SOURCE and version(spark) >= PYTHON_DATA_SOURCE_SPARK
    assert version(spark) >= package_spark_floor()
    # the Databricks cluster turns on filter pushdown: its Spark must have it
    assert confs["databricks"]["spark_conf"].get("spark.sql.python.filterPushdown.enabled") == "true"
    assert version(spark) >= PUSHDOWN_SPARK
    # and EMR must not while no EMR release has Spark 4.1: a reader of the file would think pruning by pushed
    # filters works there (Spark 4.0 just ignores the unknown conf)
    emr_keys = {k for props in confs["emr"].values() for k in props}
    if any(version(EMR_SPARK[label]) < PUSHDOWN_SPARK for label in labels):
        assert "spark.sql.python.filterPushdown.enabled" not in emr_keys


def test_the_install_script_parses_and_names_real_extras(confs: dict[str, Any]) -> None:
    script = CONF / "install-dataplug.sh"
    assert script.read_text().startswith("#!/usr/bin/env bash\n") and script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    (action,) = confs["emr-cluster"]["BootstrapActions"]
    args = action["ScriptBootstrapAction"]["Args"]
    assert action["ScriptBootstrapAction"]["Path"].endswith("/install-dataplug.sh")
    given = dict(zip(args[::2], args[1::2], strict=True))
    assert set(given) <= {"--extras", "--version", "--python"}
    for value in (given["--extras"], confs["databricks"]["spark_env_vars"]["DATAPLUG_EXTRAS"]):
        assert set(value.split(",")) <= extras - {"test"}
    # EMR: the bootstrap installs into the Python that PySpark runs (spark-env's PYSPARK_PYTHON)
    env = confs["emr"]["spark-env/export"]
    assert given["--python"] == env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"]
    assert confs["databricks"]["init_scripts"][0]["workspace"]["destination"].endswith("/install-dataplug.sh")
    assert "libraries" not in confs["databricks"]  # a PyPI library would install a second PySpark


def requirement_lines(script: Path, python: str, extras: str) -> list[str]:
    """Run the script's own Python step (what it installs after the package) against an installed package."""
    text = script.read_text()
    code = text.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    out = subprocess.run([python, "-", extras], input=code, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_script_installs_every_requirement_but_pyspark(tmp_path: Path) -> None:
    """Against this repository's metadata, written as a wheel's would be (``pip install`` of a built wheel is
    test_packaging's; here only the selection of requirements is checked)."""
    import sys

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dist = tmp_path / "pyspark_dataplug-0.1.0.dist-info"
    dist.mkdir()
    lines = [f"Requires-Dist: {r}" for r in meta["dependencies"]]
    for extra, reqs in meta["optional-dependencies"].items():
        lines += [f"Requires-Dist: {r}; extra == {extra!r}" for r in reqs]
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pyspark-dataplug\nVersion: 0.1.0\n"
                                   + "\n".join(lines) + "\n")
    shim = tmp_path / "python"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(tmp_path))} exec {shlex.quote(sys.executable)} \"$@\"\n")
    shim.chmod(0o755)
    core = requirement_lines(CONF / "install-dataplug.sh", str(shim), "")
    assert not any(r.startswith("pyspark") for r in core)
    from packaging.requirements import Requirement

    assert sorted(core) == sorted(str(Requirement(r)) for r in meta["dependencies"] if not r.startswith("pyspark"))
    las = requirement_lines(CONF / "install-dataplug.sh", str(shim), "las,genomics")
    assert set(las) - set(core) == {"laspy>=2.5", "lazrs>=0.6"}
    everything = requirement_lines(CONF / "install-dataplug.sh", str(shim), "all")  # [all] names other extras
    assert {"laspy>=2.5", "imagecodecs>=2024.1", "python-casacore>=3.5", "matplotlib>=3.7"} <= set(everything)
    assert not any(r.startswith(("pyspark", "pytest")) for r in everything)
