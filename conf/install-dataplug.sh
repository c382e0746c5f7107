#!/usr/bin/env bash
# Installs pyspark-dataplug into the Python that runs PySpark on this node: an EMR bootstrap action
# (conf/emr-cluster.json) and a Databricks init script (conf/databricks-cluster.json) alike.
#
#   install-dataplug.sh [--extras las,cog] [--version 0.1.0] [--python /usr/bin/python3.11]
#   (or the environment variables DATAPLUG_EXTRAS, DATAPLUG_VERSION, DATAPLUG_PYTHON: Databricks passes
#   a cluster's spark_env_vars to its init scripts, and no arguments)
#
# The cluster brings Spark and PySpark (Spark 4 or later: the Python Data Source API). pip must not install a
# second PySpark next to it, so the package goes in without its dependencies, then every requirement of the
# package and of the extras asked for except PySpark itself, read from the installed package's metadata.
set -euo pipefail

PYTHON="${DATAPLUG_PYTHON:-}"
EXTRAS="${DATAPLUG_EXTRAS:-}"
VERSION="${DATAPLUG_VERSION:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYTHON="$2"; shift 2 ;;
    --extras) EXTRAS="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    *) echo "install-dataplug.sh: unknown argument $1 (use --extras, --version, --python)" >&2; exit 2 ;;
  esac
done
if [ -z "$PYTHON" ]; then
  if [ -x /databricks/python3/bin/python ]; then
    PYTHON=/databricks/python3/bin/python      # the cluster's notebook and worker environment
  else
    PYTHON="$(command -v python3.11 || command -v python3)"  # EMR: the PYSPARK_PYTHON of emr-configurations.json
  fi
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"  # EMR runs bootstrap actions as the hadoop user; Databricks runs init scripts as root
fi

$SUDO "$PYTHON" -m pip install --quiet --no-deps "pyspark-dataplug${VERSION:+==$VERSION}"
REQUIREMENTS="$(mktemp)"
"$PYTHON" - "$EXTRAS" > "$REQUIREMENTS" <<'PY'
import sys
from importlib.metadata import requires

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement


def name(req):
    return req.name.lower().replace("_", "-")


reqs = [Requirement(r) for r in requires("pyspark-dataplug") or []]
extras = {e.strip() for e in sys.argv[1].split(",") if e.strip()}


def wanted(req):
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras)


grown = True
while grown:  # an extra such as [all] names other extras of the package itself
    grown = False
    for req in reqs:
        if name(req) == "pyspark-dataplug" and wanted(req) and not req.extras <= extras:
            extras |= req.extras
            grown = True
for req in reqs:
    if name(req) not in ("pyspark", "pyspark-dataplug") and wanted(req):
        req.marker = None
        print(req)
PY
$SUDO "$PYTHON" -m pip install --quiet -r "$REQUIREMENTS"
rm -f "$REQUIREMENTS"
echo "pyspark-dataplug installed for $PYTHON (extras: ${EXTRAS:-none})"
