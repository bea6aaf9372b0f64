# The README's commands. Everything runs from the project's own virtualenv (.venv).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The webserver, daemon and run workers find `dbt` through PATH (docs/architecture.md).
export PATH := $(BIN):$(PATH)

.PHONY: install run test dev bench bench-quick lint

# Fault injection (`python -m orchestration faults ...`) is a test and demo tool, off unless
# enabled; the commands that demo, test or measure recovery turn it on. deploy/ leaves it off.
run test dev bench bench-quick: export ORCHESTRATION_FAULTS_ENABLED = 1
# Dagster writes the events it can batch (the planned events of a new run) in one transaction
# (orchestration/instance/config.py). An environment variable, so every process needs it.
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## make run: set up, prepare the manifest, run daily_pipeline once on embedded defaults
run: install
	$(PY) -m orchestration prepare
	$(PY) -m orchestration run --job daily_pipeline

## make test: the whole suite (unit, integration with real dbt + Dagster, e2e processes).
## The manifest is parsed once up front; two workers, a test file per worker at a time.
test: install
	$(PY) -m orchestration prepare
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

## make dev: the Dagster UI and daemon on http://127.0.0.1:3000
dev: install
	$(PY) -m orchestration prepare
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## make bench: benchmarks (never part of make test)
bench: install
	$(PY) -m benchmarks

bench-quick: install
	$(PY) -m benchmarks --quick

lint: install
	$(BIN)/ruff check orchestration tests benchmarks
	$(BIN)/ruff format --check orchestration tests benchmarks
