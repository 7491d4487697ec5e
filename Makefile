# Parley — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PY_PATHS := parley services tests bench loadtests gateway deploy/local/cluster.py

.PHONY: help run test check lint typecheck imports unit engines engines-down engines-status bench clean

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@echo "[setup] creating $(VENV) and installing pinned dependencies (requirements.lock)…"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip==26.3
	@$(PY) -m pip install -q -r requirements.lock
	@rm -f $(VENV)/.installed-* && touch $@
	@echo "[setup] done"

venv: $(STAMP) ## create the virtual environment with pinned dependencies

run: $(STAMP) ## start the embedded all-in-one (http://127.0.0.1:8000/)
	$(PY) -m services.allinone

test: check unit ## lint, type-check, layering contracts, then the whole test suite

check: lint typecheck imports ## static checks only

lint: $(STAMP)
	@echo "[check] ruff"
	@$(VENV)/bin/ruff check $(PY_PATHS)
	@$(VENV)/bin/ruff format --check $(PY_PATHS)

typecheck: $(STAMP)
	@echo "[check] mypy"
	@$(VENV)/bin/mypy parley services gateway deploy/local/cluster.py

imports: $(STAMP)
	@echo "[check] import-linter (layering contracts)"
	@$(VENV)/bin/lint-imports

# Tests are isolated per test (own database, topics, index, key prefix), so they run on JOBS
# workers; those marked `serial` (they stop a shared engine, or share the e2e session's one
# cluster) run after, in one process. pytest's exit code 5 means "nothing selected" (e.g.
# PYTEST_ARGS named a folder with no serial test).
JOBS ?= 2
unit: $(STAMP) ## the pytest suite on JOBS workers, then the serial ones (engine tests need PARLEY_TEST_* URLs, see docs/operations.md)
	@status=0; \
	echo "[test] in parallel on $(JOBS) workers (pytest-xdist)"; \
	$(VENV)/bin/pytest -m "not serial" -n $(JOBS) $(PYTEST_ARGS) || status=$$?; \
	echo "[test] the serial tests (shared engines stopped, the e2e cluster) in one process"; \
	$(VENV)/bin/pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status

engines: ## install and start MariaDB, Redis, Kafka, Elasticsearch as local processes
	bash deploy/local/engines.sh up

engines-down: ## stop the local engines
	bash deploy/local/engines.sh down

engines-status:
	bash deploy/local/engines.sh status

BENCH_ARGS ?= --mode all
bench: $(STAMP) ## every benchmark, embedded + engines + local cluster (starts the engines); BENCH_ARGS="send-deliver --mode embedded" to narrow
	bash deploy/local/engines.sh up
	$(PY) -m bench.run $(BENCH_ARGS)

clean: ## remove the embedded data directory
	rm -rf data

# -- the topology: local cluster (no Docker) and docker compose; see docs/topology.md ---------
COMPOSE ?= docker compose
PROFILES ?=

.PHONY: cluster cluster-down up down compose-config

cluster: $(STAMP) ## nginx, api ×2, realtime ×2, relay, fanout, indexer, cache as local processes (:8080)
	bash deploy/local/engines.sh up
	$(PY) deploy/local/cluster.py up

cluster-down: ## stop the local cluster (the engines stay up: make engines-down)
	$(PY) deploy/local/cluster.py down

up: ## the same topology in Docker (PROFILES=observability adds Prometheus + Grafana)
	$(COMPOSE) -p parley -f docker-compose.yml $(if $(PROFILES),--profile $(PROFILES)) up -d --build

down: ## stop the compose topology (named volumes are kept)
	$(COMPOSE) -p parley -f docker-compose.yml --profile observability down

compose-config: ## validate docker-compose.yml without Docker, and that the gateway config is rendered
	bash deploy/local/compose-tools.sh install
	docker-compose -f docker-compose.yml config -q
	$(PYTHON) gateway/render.py compose --check

# -- load tests with Locust: see loadtests/README.md ------------------------------------------
TARGET ?=
USERS ?= 50
SPAWN_RATE ?= 5
RUN_TIME ?= 60s
LOAD_PROFILE ?= default
PROCESSES ?= 0
WORKSPACES ?= 1
CHANNELS ?= 20
LOADTEST_ARGS ?=
LOADTEST_DEPS := $(VENV)/.loadtest-$(shell cksum < loadtests/requirements.txt | cut -d' ' -f1)
LOADTEST_RUN = $(PY) -m loadtests.run $(if $(TARGET),--target $(TARGET)) --users $(USERS) \
	--spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME) --profile $(LOAD_PROFILE) --processes $(PROCESSES) \
	--workspaces $(WORKSPACES) --channels $(CHANNELS) $(LOADTEST_ARGS)

.PHONY: loadtest loadtest-ui seed

$(LOADTEST_DEPS): loadtests/requirements.txt | $(STAMP)
	@echo "[setup] installing the pinned load-test tools (loadtests/requirements.txt)…"
	@$(PY) -m pip install -q -r loadtests/requirements.txt
	@rm -f $(VENV)/.loadtest-* && touch $@

loadtest: $(STAMP) $(LOADTEST_DEPS) ## Locust headless: TARGET= (empty: fresh embedded), USERS, SPAWN_RATE, RUN_TIME, LOAD_PROFILE, PROCESSES
	$(LOADTEST_RUN)

loadtest-ui: $(STAMP) $(LOADTEST_DEPS) ## Locust's web UI on http://127.0.0.1:8089/ (same variables as loadtest)
	$(LOADTEST_RUN) --ui

seed: $(STAMP) ## create load-test users and conversations on TARGET (default :8000): USERS, WORKSPACES, CHANNELS
	$(PY) -m loadtests.seed --target $(or $(TARGET),http://127.0.0.1:8000) --users $(USERS) \
		--workspaces $(WORKSPACES) --channels $(CHANNELS) --profile $(LOAD_PROFILE)
