# Every target creates .venv on first use and installs what it needs, so a fresh clone
# needs only python3 (3.11+), make, and the system openssl/curl binaries.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint ci bench bench-quick bench-ab soak clean
.PHONY: test-all dist dist-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# One stamp per extra: re-install when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

# dev includes test, which includes the integrations' extras (httpx, trio-websocket)
# and h2: their tests and mypy need the real packages.
$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(VENV)/.stamp-bench: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

demo: $(VENV)/.stamp-base
	$(PY) -m trio_tls demo

test: $(VENV)/.stamp-dev
	$(PY) -m pytest

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# test-all runs the suite once per supported CPython: `test` would run one of them twice.
ci: test-all lint dist-check

bench: $(VENV)/.stamp-bench
	$(PY) -m trio_tls bench --full --json notes/bench-latest.json --png notes/bench-latest.png

bench-quick: $(VENV)/.stamp-bench
	$(PY) -m trio_tls bench --quick

# This checkout's trio_tls (B) against revision BASE (A), interleaved: make bench-ab BASE=main~3.
# HEAD by default, which measures the uncommitted changes. Options: python -m trio_tls._bench._ab -h
BASE ?= HEAD
bench-ab: $(VENV)/.stamp-bench
	$(PY) -m trio_tls._bench._ab $(BASE)

soak: $(VENV)/.stamp-bench
	$(BIN)/pip install -q atheris || echo "soak: atheris did not install; fuzzing with hypothesis only"
	TRIO_TLS_FUZZ_EXAMPLES=2000 $(PY) -m pytest tests/test_fuzz.py -q --timeout=1200 --hypothesis-show-statistics
	if $(PY) -c "import atheris" 2>/dev/null; then $(PY) tests/test_fuzz.py -runs=30000 -max_len=4096; fi
	$(PY) tests/soak.py

# --- every supported CPython ---------------------------------------------------------
# The whole suite on each version the classifiers name, each in its own .venv-3.X, via
# `make test`; versions this machine lacks are named as skipped. Others: make test-all
# TEST_PYTHONS="3.12 3.14".
TEST_PYTHONS ?=
test-all:
	.ci/test-all $(TEST_PYTHONS)

# --- releases ------------------------------------------------------------------------
# sdist and wheel in dist/, both checked by twine. dist-check then installs the wheel
# (not editable) into a fresh venv and runs the demo and the plugin's fixtures from it.
# The tools are not an extra, which every user would see in the package's metadata.
# twine 6.1 is the first to read metadata 2.4 (License-Expression, License-File).
$(VENV)/.stamp-dist: | $(PY)
	$(PY) -m pip install -q 'build>=1.2' 'twine>=6.1'
	touch $@

dist: $(VENV)/.stamp-dist
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

dist-check: dist
	$(PY) tests/dist_check.py dist

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
	rm -rf .venv-3.* dist
