# Every target creates .venv on first use and installs what it needs, so a fresh clone
# needs only python3 (3.11+), make, and the system openssl/curl binaries.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint verifytypes docs ci bench bench-quick bench-ab soak clean interop interop-notes
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
	$(MAKE) --no-print-directory verifytypes

# pyright --verifytypes sees the package as users get it: installed from a wheel into a
# venv of its own (it cannot follow an editable install's import hook), every extra
# present. Re-installed each run so that it checks this checkout. PATH selects the venv
# whose site-packages pyright searches; run outside the checkout so that it finds the
# installed copy, not ./trio_tls.
TYPES := $(VENV)/types
$(TYPES)/.stamp: pyproject.toml | $(PY)
	$(PYTHON) -m venv $(TYPES)
	$(TYPES)/bin/pip install -q '.[httpx,trio-websocket,bench,lint]'
	touch $@

verifytypes: $(TYPES)/.stamp
	rm -rf build/lib  # setuptools reuses it, so a deleted module would live on in the wheel
	$(TYPES)/bin/pip install -q --no-deps --force-reinstall .
	cd $(TYPES) && PATH="$(CURDIR)/$(TYPES)/bin:$$PATH" \
		bin/python $(CURDIR)/.ci/verifytypes.py bin/pyright trio_tls

# test-all runs the suite once per supported CPython: `test` would run one of them twice.
ci: test-all lint dist-check

# HTML reference in build/docs (open build/docs/index.html), from notes/ (notes/conf.py).
# Warnings are errors and nitpicky is on; nothing is fetched (no intersphinx). The docs
# extra comes with dev, since tests/test_docs.py builds the reference too.
docs: $(VENV)/.stamp-dev
	$(BIN)/sphinx-build -W --keep-going -E -q -b html notes build/docs

bench: $(VENV)/.stamp-bench
	$(PY) -m trio_tls bench --full --json notes/bench-latest.json --png notes/bench-latest.png

bench-quick: $(VENV)/.stamp-bench
	$(PY) -m trio_tls bench --quick

# This checkout's trio_tls (B) against revision BASE (A), interleaved: make bench-ab BASE=main~3.
# HEAD by default, which measures the uncommitted changes. Options: python -m trio_tls._bench._ab -h
BASE ?= HEAD
bench-ab: $(VENV)/.stamp-bench
	$(PY) -m trio_tls._bench._ab $(BASE)

# hypercorn with and without trio_tls.patch_trio(), interleaved: requests/s and the ratio.
# Options: python -m trio_tls._bench._hypercorn -h
.PHONY: bench-hypercorn
bench-hypercorn: $(VENV)/.stamp-bench
	$(PY) -m trio_tls._bench._hypercorn

soak: $(VENV)/.stamp-bench
	$(BIN)/pip install -q atheris || echo "soak: atheris did not install; fuzzing with hypothesis only"
	TRIO_TLS_FUZZ_EXAMPLES=2000 $(PY) -m pytest tests/test_fuzz.py -q --timeout=1200 --hypothesis-show-statistics
	if $(PY) -c "import atheris" 2>/dev/null; then $(PY) tests/test_fuzz.py -runs=30000 -max_len=4096; fi
	$(PY) tests/soak.py

# Interop with TLS stacks that are not OpenSSL: Go crypto/tls, Java JSSE, GnuTLS.
# Installs what is missing with apt-get (gnutls-bin, golang-go, openjdk-17-jdk-headless),
# then runs tests/interop, writing every outcome to build/interop.json;
# `make interop-notes` renders that run into notes/interop.md.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
interop: $(VENV)/.stamp-dev
	@missing=""; \
	command -v gnutls-cli >/dev/null && command -v gnutls-serv >/dev/null || missing="$$missing gnutls-bin"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v javac >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	if [ -n "$$missing" ]; then \
		echo "interop: installing$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(PY) -m pytest tests/interop --interop --interop-results build/interop.json -p no:cacheprovider

interop-notes: $(VENV)/.stamp-dev
	$(PY) -m tests.interop.render build/interop.json notes/interop.md

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
