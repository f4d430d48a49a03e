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
# the shared folder of `make cluster` (stores, Dagster home, the services' data and logs)
CLUSTER_DIR ?= $(CURDIR)/.cluster
# options of `deploy/cluster.py up`, e.g. CLUSTER_ARGS="--workers 3 --visibility-timeout 600"
CLUSTER_ARGS ?=

.PHONY: install lint-imports run test test-ui test-all test-distributed dev home clean bench cluster cluster-run cluster-down cluster-purge

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,scale]'
	$(PY) -m pip install -q --no-deps musicnn==0.1.0
	touch $@

install: $(VENV)/.installed

home:
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@# the UI's "Auto-materialize on/off" tag follows the automation sensor (pipelines/sensors.py)
	if [ -x $(PY) ]; then $(PY) -m pipelines.sensors; fi

## make run: materialize the whole asset graph (demo corpus unless GTZAN_DIR is set): `gtzan run`.
## Options go in RUN_ARGS, e.g. make run RUN_ARGS="--models all --epochs 5 --seeds 0 1 2"
run: install home
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/gtzan run $(RUN_ARGS)

## make lint-imports: the import layers of .importlinter (pipelines -> assets -> training -> feature_store;
## the store engine knows no view, no dataset and nothing of Dagster)
lint-imports: install
	$(VENV)/bin/lint-imports

## make test: the test suite (slow tests excluded; `make test-all` includes them)
test: install
	@# --timeout: a hung test fails with every thread's stack instead of stalling the run (far
	@# above any test's own time in this selection, the slowest about a minute)
	$(PY) -m pytest -q -m "not slow and not distributed and not ui" --timeout 900 $(PYTEST_ARGS)

## make test-ui: the Dagster UI in headless Chromium against `dagster dev` on a tiny corpus
## (installs Debian's chromium and chromium-driver with apt-get when missing; screenshots of a
## failure go to test-artifacts/)
test-ui: install
	tests/ui/install_chromium.sh
	$(PY) -m pytest -q -m ui tests/ui $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -q -m "not distributed and not ui" $(PYTEST_ARGS)

## make test-distributed: (as root) bring up `make cluster` in a temporary folder, run the whole
## graph on it against a single-machine `make run`, lose a worker host, tear everything down; then
## again with --object-store: the sharded assets on its S3 server against a local build, under faults
test-distributed: install
	$(PY) -m pytest -q -s -m distributed tests/distributed $(PYTEST_ARGS)

## make cluster: (as root) PostgreSQL, Redis, SeaweedFS (S3), the Dagster UI (behind nginx, with a
## password) and daemon, and two Celery worker hosts, each host a network namespace (deploy/cluster.py);
## as the system user gtzan, never root; installs missing Debian packages. CLUSTER_ARGS=--object-store
## gives the hosts GTZAN_STORE_URL and the AWS variables of its S3 server
cluster: install
	$(PY) deploy/cluster.py up --dir $(CLUSTER_DIR) $(CLUSTER_ARGS)

## make cluster-run: the graph of `make run`, launched on the cluster through the UI's GraphQL API
cluster-run: install
	$(PY) deploy/cluster.py materialize --dir $(CLUSTER_DIR) $(RUN_ARGS)

## make cluster-down: stop every process of the cluster and delete its namespaces and the files that
## held its passwords (the stores and the runs stay)
cluster-down:
	$(PY) deploy/cluster.py down --dir $(CLUSTER_DIR)

## make object-store: a SeaweedFS S3 server on 127.0.0.1 with new credentials (deploy/object_store.py);
## `source .object-store/env` then points GTZAN_STORE_URL and the AWS variables at it
.PHONY: object-store object-store-down
object-store: install
	$(PY) deploy/object_store.py up --dir .object-store

## make object-store-down: stop it by its process group and delete the files that held its secrets
object-store-down:
	$(PY) deploy/object_store.py down --dir .object-store

## make cluster-purge: stop the cluster and delete its whole folder (stores, runs, services' data)
cluster-purge:
	$(PY) deploy/cluster.py down --dir $(CLUSTER_DIR) --purge

## make dev: the Dagster UI (webserver and daemon) on http://$(UI_HOST):$(PORT) (UI_HOST defaults to 127.0.0.1)
## (PYTHONWARNINGS hides exactly one notice of Dagster's own CLI, which suggests the `dg` tool.)
dev: install home
	TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
		$(VENV)/bin/dagster dev -w workspace.yaml -h $(UI_HOST) -p $(PORT)

clean:
	rm -rf data .dagster_home
