# Two commands do everything on a fresh machine:
#   make run    set up .venv, build the demo model if missing, start the dashboard
#   make test   set up .venv, run the fast tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup system-deps demo run test test-marked test-all bench docs clean

# WeasyPrint (the PDF case report) loads Pango and needs a font; the report test renders
# pages with poppler's pdftoppm. Installed from Debian when missing (sudo unless root).
system-deps:
	@if ! ldconfig -p | grep -q libpangoft2-1.0 || ! command -v pdftoppm >/dev/null || ! fc-list 2>/dev/null | grep -q .; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core poppler-utils; \
	fi

# The `healthmon` command ($(VENV)/bin/healthmon) is an editable install of this checkout: it runs
# these files, so edits need no reinstall. Its dependencies are the pins installed just before.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt "setuptools>=68"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

setup: system-deps $(VENV)/.installed

demo: setup
	$(PY) -m healthmon demo

run: demo
	$(VENV)/bin/healthmon serve

test: setup
	$(PY) -m pytest -q

# Everything plain `pytest` skips: slow, browser and PostgreSQL tests (CI runs this after `make test`).
test-marked: setup
	$(PY) -m pytest -q -m "slow or browser or postgres"

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

# Every script in benchmarks/, each with its defaults (benchmarks/RESULTS.md has the figures).
# Several hours on 2 CPU cores. Needs the demo model (inference, demo_eval, dashboard), the public
# data (HEALTHMON_SHARED_DATA_DIR, else ../shared/data) and Debian's chromium (the browser ones).
# A failing script does not stop the others; the target fails at the end, naming them.
# Some of them: make bench BENCHES="benchmarks/ingest_bench.py benchmarks/storage_bench.py"
bench: demo
	$(PY) -m pip install --quiet -r requirements-bench.txt
	@if ! command -v chromium >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi
	@failed=""; for script in $${BENCHES:-benchmarks/*.py}; do \
	  echo "== $$script"; \
	  $(PY) "$$script" || failed="$$failed $$script"; \
	done; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed:$$failed"; exit 1; fi

# docs/settings.md and docs/cli.md come from the code (tests/test_docs.py fails when they are stale).
docs: setup
	$(PY) -m healthmon.reference docs

clean:
	rm -rf $(VENV) data
