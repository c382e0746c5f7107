"""The package as users get it: the wheel and sdist build, install into a fresh venv, and work there; the base
install imports and registers every format with none of the extras; extras per format family.

Offline: the build uses the installed backend (``python -m build --no-isolation``), and the fresh venv gets the
wheel with ``--no-deps --no-index`` plus a ``.pth`` that lends it this environment's dependencies.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from pyspark_dataplug.formats import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {"genomics", "las", "cog", "imzml", "ms", "dask", "ray", "plot", "all"}
KEPT_NAMES = {"fasta", "vcf", "s3"}
#: optional libraries of the extras; the base install must import and register without any of them
OPTIONAL = ("laspy", "lazrs", "tifffile", "casacore", "imagecodecs", "matplotlib", "dask", "distributed", "ray",
            "copclib", "rasterio", "pyimzml")


def _env() -> dict[str, str]:
    """The environment of a child interpreter, without what would put another copy of the package first."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel of a copy of the source tree (a build writes build/ and *.egg-info into its tree)."""
    src = tmp_path_factory.mktemp("src") / "pyspark-dataplug"
    ignore = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".pytest_cache",
                                    "demo-data", "bench-data", ".ruff_cache")
    shutil.copytree(ROOT, src, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel built from the unpacked sdist: a file missing from the sdist fails here
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                         capture_output=True, text=True, timeout=300, env=_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("pyspark_dataplug-*-py3-none-any.whl")
    return wheel


def test_the_wheel_holds_every_subpackage_and_module_and_no_tests(dist: Path) -> None:
    names = set(zipfile.ZipFile(_wheel(dist)).namelist())
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pyspark_dataplug").rglob("*.py")}
    assert source and source <= names, sorted(source - names)
    packages = {Path(p).parent.as_posix() for p in source if p.endswith("__init__.py")}
    assert {"pyspark_dataplug", "pyspark_dataplug/formats", "pyspark_dataplug/index"} <= packages
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pyspark_dataplug", "pyspark_dataplug-0.1.0.dist-info"}, tops  # no tests, examples, benchmarks
    info = zipfile.ZipFile(_wheel(dist))
    entry = info.read("pyspark_dataplug-0.1.0.dist-info/entry_points.txt").decode()
    assert "dataplug = pyspark_dataplug.cli:main" in entry
    meta = email.message_from_bytes(info.read("pyspark_dataplug-0.1.0.dist-info/METADATA"))
    assert FAMILIES | KEPT_NAMES <= set(meta.get_all("Provides-Extra"))
    assert meta["License-Expression"] == "Apache-2.0"
    sdists = list(dist.glob("pyspark_dataplug-*.tar.gz"))
    assert len(sdists) == 1


def test_the_wheel_installs_and_runs_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                              "--quiet", str(_wheel(dist))], capture_output=True, text=True, timeout=300, env=_env())
    assert install.returncode == 0, install.stderr
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=_env()).stdout.strip()
    # the dependencies (pyspark, pyarrow, ...) from this environment, after the venv's own site-packages
    Path(site, "lend-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    data = tmp_path / "notes.txt"
    data.write_bytes(b"".join(b"line %d of some notes\n" % i for i in range(5000)))
    code = ("import sys, pyspark_dataplug\n"
            "from pyspark_dataplug import CloudObject\n"
            "from pyspark_dataplug.formats import REGISTRY, format_class\n"
            "print(pyspark_dataplug.__file__)\n"
            "[format_class(n) for n in REGISTRY]\n"
            f"CloudObject('text', {str(data)!r}, {{'indexSpacing': '16k'}}).preprocess()\n")
    run = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(str(venv)), run.stdout  # the installed copy, not a source tree

    cli = venv / "bin" / "dataplug"
    assert cli.read_text().startswith(f"#!{py}")
    shown = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env())
    assert shown.returncode == 0 and all(c in shown.stdout for c in ("index", "inspect", "read"))
    inspect = subprocess.run([str(cli), "inspect", str(data), "--partitions", "3"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path, env=_env())
    assert inspect.returncode == 0, inspect.stderr
    assert "plan: 3 partition(s)" in inspect.stdout and "5,000 records" in inspect.stdout
    missing = subprocess.run([str(cli), "inspect", str(tmp_path / "absent.txt")], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path, env=_env())
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_the_base_install_imports_registers_and_reads_without_any_extra(tmp_path: Path) -> None:
    """With every optional library unimportable: the package imports, every format registers, a text file is
    indexed, planned and read; LAS and MeasurementSet builds fail naming their extra, before reading anything."""
    from pointcloud_data import las_bytes, make_las

    text = tmp_path / "notes.txt"
    text.write_bytes(b"".join(b"row %d\n" % i for i in range(3000)))
    las = tmp_path / "tile.las"
    las.write_bytes(las_bytes(make_las(1, "1.2", 500, seed=9), False))
    ms = tmp_path / "obs.ms"
    ms.mkdir()
    (ms / "table.dat").write_bytes(b"not read: the build stops at the missing library")
    code = BLOCKER.format(blocked=OPTIONAL) + f"""
import pyspark_dataplug
from pyspark_dataplug import CloudObject, DefaultSource
from pyspark_dataplug.formats import REGISTRY, format_class
from pyspark_dataplug.index.build import plan_build, run_tasks_locally
from pyspark_dataplug.plan import open_dataset
assert DefaultSource.name() == "dataplug"
classes = {{n: format_class(n) for n in REGISTRY}}
co = CloudObject("text", {str(text)!r}, {{"indexSpacing": "4k"}})
co.preprocess()
parts = open_dataset({{"path": {str(text)!r}}}).plan(partitions=4)
print("rows", sum(s.get().num_rows for p in parts for s in p), "partitions", len(parts))
for what, call in (("las", lambda: plan_build({str(las)!r}, "las")),
                   ("ms", lambda: plan_build({str(ms)!r}, "ms"))):
    try:
        call()
    except ImportError as e:
        print(what, type(e).__name__, e)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("heavy", heavy)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**_env(), "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "rows 3000 partitions 4"
    assert lines[1] == ("las MissingDependencyError building a las index needs the Python module 'laspy', which is "
                        "not installed. Install it with: pip install 'pyspark-dataplug[las]' (on the driver and on "
                        "every executor)")
    assert lines[2].startswith("ms MissingDependencyError building a ms index needs the Python module 'casacore'")
    assert lines[2].endswith("pip install 'pyspark-dataplug[ms]' (on the driver and on every executor)")
    assert lines[3] == "heavy []"


def test_every_extra_a_format_names_exists_and_all_holds_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert FAMILIES | KEPT_NAMES <= set(extras)
    assert {e for _, e in REGISTRY.values() if e} <= set(extras)
    (everything,) = extras["all"]
    named = set(everything.split("[", 1)[1].rstrip("]").split(","))
    assert named == set(extras) - {"all", "test"} - KEPT_NAMES, "an extra left out of [all]"
    needed = {r for e in named for r in extras[e]}
    assert needed <= set(extras["test"]), "the tests need every optional library"
