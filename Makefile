# Two set-up commands: `make run` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 3000
# the UI serves this machine only; `make dev UI_HOST=0.0.0.0` opens it to the network (not HOST:
# some shells export HOST as the machine's name)
UI_HOST ?= 127.0.0.1
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GTZAN_DATA_DIR ?= $(CURDIR)/data

.PHONY: install run test test-all dev home clean bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,scale]'
	$(PY) -m pip install -q --no-deps musicnn==0.1.0
	touch $@

install: $(VENV)/.installed

home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## make run: materialize the whole asset graph (demo corpus unless GTZAN_DIR is set).
## Options go in RUN_ARGS, e.g. make run RUN_ARGS="--models all --epochs 5 --seeds 0 1 2"
run: install home
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pipelines.run $(RUN_ARGS)

## make test: the test suite (slow tests excluded; `make test-all` includes them)
test: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

## make dev: the Dagster UI (webserver and daemon) on http://$(UI_HOST):$(PORT) (UI_HOST defaults to 127.0.0.1)
## (PYTHONWARNINGS hides exactly one notice of Dagster's own CLI, which suggests the `dg` tool.)
dev: install home
	TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
		$(VENV)/bin/dagster dev -w workspace.yaml -h $(UI_HOST) -p $(PORT)

clean:
	rm -rf data .dagster_home
