# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Spark's Python workers must run the venv's interpreter, not the system python3.
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: setup demo test lint bench bench-quick clean

setup: $(VENV)/.installed

# editable_mode=compat puts the source folder on sys.path, so Spark's data source discovery
# (pkgutil.iter_modules) finds pyspark_dataplug; the default editable mode hides it behind an import hook.
$(VENV)/.installed: pyproject.toml
	$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]" --config-settings editable_mode=compat
	touch $@

demo: setup
	$(BIN)/python examples/demo.py

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

# run.py: Spark comparisons (sections 1-10); the *_decode.py: one-process decoding against the reference readers
bench: setup
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/vcf_decode.py --dir bench-data
	$(BIN)/python benchmarks/las_decode.py --dir bench-data
	$(BIN)/python benchmarks/cog_decode.py --dir bench-data
	$(BIN)/python benchmarks/ms_decode.py --dir bench-data
	$(BIN)/python benchmarks/imzml_decode.py --dir bench-data
	$(BIN)/python benchmarks/planning.py
	$(BIN)/python benchmarks/gzip_spacing.py
	$(BIN)/python benchmarks/vs_dataplug.py
	$(BIN)/python benchmarks/small_objects.py
	$(BIN)/python benchmarks/s3_shaped.py

bench-quick: setup
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) demo-data bench-data .pytest_cache
