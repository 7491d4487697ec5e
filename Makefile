# Parley — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

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
	@$(VENV)/bin/ruff check parley services tests bench loadtests
	@$(VENV)/bin/ruff format --check parley services tests bench loadtests

typecheck: $(STAMP)
	@echo "[check] mypy"
	@$(VENV)/bin/mypy parley services

imports: $(STAMP)
	@echo "[check] import-linter (layering contracts)"
	@$(VENV)/bin/lint-imports

unit: $(STAMP) ## the pytest suite (real-engine tests need PARLEY_TEST_* URLs, see docs/operations.md)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

engines: ## install and start MariaDB, Redis, Kafka, Elasticsearch as local processes
	bash deploy/local/engines.sh up

engines-down: ## stop the local engines
	bash deploy/local/engines.sh down

engines-status:
	bash deploy/local/engines.sh status

bench: $(STAMP) ## run the benchmarks (prints figures; see docs/benchmarks.md)
	$(PY) -m bench.run $(BENCH_ARGS)

clean: ## remove the embedded data directory
	rm -rf data
