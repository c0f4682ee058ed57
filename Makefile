# Two entry points for a fresh machine (see README): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench tools services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## Install and start the server on the configuration shipped with it.
run: $(VENV)/.installed
	$(BIN)/cxos run

## Install everything the tests need (Python packages, SIPp, baresip, espeak-ng, sox),
## start PostgreSQL and Redis where none is running, and run the whole suite.
test: $(VENV)/.installed-test tools services
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

tools:
	scripts/install-test-tools.sh

services:
	scripts/start-services.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Run every benchmark and rewrite the latest-run figures in docs/benchmarks.md (about an hour;
## `make bench BENCH_ARGS=--quick` for a 15-minute smoke run, `BENCH_ARGS="--only sip_cps"`).
bench: $(VENV)/.installed-test tools services
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
