# Two set-up commands: `make run` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 3000
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GTZAN_DATA_DIR ?= $(CURDIR)/data

.PHONY: install run test test-all dev home clean bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps musicnn==0.1.0
	touch $@

install: $(VENV)/.installed

home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## make run: materialize the whole asset graph (demo corpus unless GTZAN_DIR is set)
run: install home
	$(PY) -m pipelines.run $(RUN_ARGS)

## make test: the test suite (slow tests excluded; `make test-all` includes them)
test: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

## make dev: the Dagster UI on http://127.0.0.1:$(PORT)
dev: install home
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

clean:
	rm -rf data .dagster_home
