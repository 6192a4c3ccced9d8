# Tollgate: `make run` (gateway + console + demo), `make test` (the whole suite on PostgreSQL + Redis).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
SIMULATOR_PORT ?= 9100
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tollgate
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test install bench bench-instructions soak serve simulator worker beat migrate clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	bash bin/run-demo

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy routing/relay routing/adapters billing/limits.py keys/auth.py
	DEBUG=0 SECRET_KEY=test-secret-key-not-for-production \
	TOLLGATE_ENCRYPTION_KEY=dGVzdC1vbmx5LWZlcm5ldC1rZXktMDAwMDAwMDAwMDA= \
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	bash bench/run

# Instructions per request (valgrind's callgrind) for the raw, bare and Tollgate relays: the same figure however
# busy the machine is, for comparing two versions of the hot path; the last line is the INSTRUCTIONS line.
bench-instructions: install
	BENCH_INSTRUCTIONS=1 bash bench/run

# The books under fire (bench/soak.py): SOAK_SECONDS of faulty traffic through 2 workers while a worker is
# killed and Redis and PostgreSQL (its own servers) restart; fails unless no usage is lost or charged twice,
# no hold is left and every Redis counter equals the database. The last line is the SOAK line.
soak: install
	$(BIN)/python bench/soak.py

# Production processes (environment: DATABASE_URL, REDIS_URL, SECRET_KEY, TOLLGATE_ENCRYPTION_KEY, PORT).
serve: install
	@if [ "$${WORKERS:-2}" -gt 1 ] && [ -z "$${REDIS_URL:-}" ] && ! grep -qs '^REDIS_URL=.' .env; then \
	  echo "make serve: WORKERS=$${WORKERS:-2} needs REDIS_URL (limits, holds and live configuration are shared" \
	    "through Redis); without Redis run one process: WORKERS=1 make serve, or make run" >&2; exit 1; fi
	$(BIN)/granian --interface asgi --loop uvloop --respawn-failed-workers --respawn-interval 0.5 \
		--host 0.0.0.0 --port $(PORT) --workers $${WORKERS:-2} \
		gateway_site.asgi:application

worker: install
	$(BIN)/celery -A gateway_site worker --loglevel=INFO

beat: install
	$(BIN)/celery -A gateway_site beat --loglevel=INFO

simulator: install
	$(BIN)/python -m simulator --host 127.0.0.1 --port $(SIMULATOR_PORT)

migrate: install
	$(BIN)/python manage.py migrate --noinput

clean:
	rm -rf $(VENV) db.sqlite3* var
