# The two commands: `make run` starts the whole system, `make test` runs the whole suite. Both do all set-up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
UV_VERSION := 0.13.8
PYTEST_ARGS ?=

.PHONY: install run test lint lock bench-api bench-instructions bench-ledger bench-e2e bench-recon bench-admin chaos

$(INSTALLED): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --quiet --python $(PY) requirements.lock
	touch $@

install: $(INSTALLED)

## Start PostgreSQL and Redis (embedded ones when DATABASE_URL / REDIS_URL are unset), migrate, load the exchange
## rates, seed the demo data, then run web, worker and beat in the foreground. Ctrl-C stops all of it.
run: install
	$(PY) scripts/devstack.py run

## The whole pytest suite on PostgreSQL and Redis (from the environment; embedded ones when unset).
test: install
	$(PY) scripts/devstack.py test -- $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy

## Re-resolve the pinned dependencies after editing pyproject.toml.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

## Throughput of POST /v1/payments against a minimal Django INSERT endpoint, measured in the same run.
bench-api: install
	$(PY) scripts/devstack.py env -- $(PY) bench/api.py

## The web process's instructions per answer (callgrind) for the same endpoints: comparable on a noisy machine.
bench-instructions: install
	$(PY) scripts/devstack.py env -- $(PY) bench/instructions.py

## Postings per second through the ledger's posting service: spread over sellers, through hot accounts, and raw SQL.
bench-ledger: install
	$(PY) scripts/devstack.py env -- $(PY) bench/ledger.py

## Payments created at a steady rate and completed end to end (sandbox PSP, webhooks, two Celery workers).
bench-e2e: install
	$(PY) scripts/devstack.py env -- $(PY) bench/e2e.py $(BENCH_ARGS)

## A settlement reconciliation run at 100k and 1M lines with injected discrepancies, against the raw floor (COPY +
## one FULL OUTER JOIN). Quick: make bench-recon BENCH_ARGS="--sizes 10000 --inject 100".
bench-recon: install
	$(PY) scripts/devstack.py env -- $(PY) bench/recon.py $(BENCH_ARGS)

## Every finance console page's server time and SQL queries on a loaded database (1M payments; BENCH_ARGS="--payments 100000").
bench-admin: install
	$(PY) scripts/devstack.py env -- $(PY) bench/admin.py $(BENCH_ARGS)

## Payments through the whole system while workers are killed, Redis restarts and the PSP misbehaves; then the checks.
chaos: install
	$(PY) scripts/devstack.py env -- $(PY) manage.py chaos -- $(CHAOS_ARGS)
