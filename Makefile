# Customs: `make run` serves the portal locally; `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
# The suite runs on PostgreSQL; override to point at another server.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/customs
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# Benchmarks seed and drop their own rows, but the audit trail they write can never be deleted:
# they get a database of their own.
BENCH_DATABASE ?= customs_bench

.PHONY: help run demo test check lint fmt typecheck install install-dev services bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	@rm -f $(VENV)/.installed-dev; touch $@

$(VENV)/.installed-dev: requirements-dev.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed ## Create the virtual environment and install from the lock file

install-dev: $(VENV)/.installed-dev ## Install the test and lint tools too

run: install ## Migrate the embedded database and serve http://127.0.0.1:8000 with a worker and beat
	$(MANAGE) migrate --no-input -v0
	$(MANAGE) ensure_break_glass_admin
	$(MANAGE) serve_local

demo: install ## Like run, plus two local registries with sample images, registered and synced
	@command -v docker-registry >/dev/null || { echo "installing Debian's docker-registry"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; }
	$(MANAGE) migrate --no-input -v0
	$(MANAGE) ensure_break_glass_admin
	$(MANAGE) demo

services: ## Install Debian packages the suite needs; start PostgreSQL and Redis when they are down
	./.ci/ensure-services

lint: install-dev ## ruff format check and lint
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

fmt: install-dev ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install-dev ## mypy, strict
	$(VENV)/bin/mypy .

check: lint typecheck ## Lint, type-check and Django's own checks
	DATABASE_URL=$(TEST_DATABASE_URL) $(MANAGE) check --fail-level WARNING
	DATABASE_URL=$(TEST_DATABASE_URL) $(MANAGE) makemigrations --check --dry-run

test: install-dev services check ## Everything CI runs: checks, then the whole suite on PostgreSQL and Redis
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) CELERY_RESULT_BACKEND=$(TEST_REDIS_URL) \
		$(VENV)/bin/pytest

bench: install-dev services ## Benchmarks (alternatives measured side by side, ratios printed)
	@command -v wrk >/dev/null || { echo "installing Debian's wrk (the token benchmark's load generator)"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(BENCH_DATABASE)'" | grep -q 1 \
		|| createdb -h 127.0.0.1 -U postgres $(BENCH_DATABASE)
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/$(BENCH_DATABASE) $(MANAGE) migrate --no-input -v0
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/$(BENCH_DATABASE) CELERY_BROKER_URL=$(TEST_REDIS_URL) $(PY) -m bench

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
