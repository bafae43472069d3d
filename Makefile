# Two commands: `make run` starts the service (web + worker, SQLite), `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format migrate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Local mode: DJANGO_DEBUG=1 unless set. Ctrl-C stops web and worker.
run: $(VENV)/.installed
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} bin/run

# Lint, then the whole suite on the database DATABASE_URL names (SQLite when unset).
test: $(VENV)/.installed lint
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(VENV)/.installed
	$(PY) manage.py migrate

clean:
	rm -rf $(VENV) staticfiles db.sqlite3* test_db.sqlite3*
