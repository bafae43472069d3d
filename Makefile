# Two commands: `make run` starts the service (web + worker, SQLite), `make test` runs every test.
PYTHON ?= python3
# bash with pipefail: a failing command piped into tee (make bench) fails the target.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format migrate browser screenshots bench load bench-admin bench-visits bench-year bench-headers bench-prune soak demo clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Local mode: DJANGO_DEBUG=1 unless set. Ctrl-C stops web and worker.
run: $(VENV)/.installed
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} bin/run

# Lint and type check, then the whole suite on the database DATABASE_URL names (SQLite when unset).
test: $(VENV)/.installed lint browser
	$(PY) -m pytest

# The admin's browser test drives Debian's Chromium; Playwright cannot download a browser here.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The admin screenshots in docs/, taken again by the browser test (a plain test run writes them to a
# temporary folder).
screenshots: $(VENV)/.installed browser
	SCREENSHOTS_DIR=$(CURDIR)/docs $(PY) -m pytest -q jobs/tests/ops/test_admin_browser.py

# ruff, then mypy (with the Django and DRF stubs) over the product code; settings need local mode to load.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_DEBUG=1 $(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The service against the floor with image hosts on this machine (SQLite and PostgreSQL), then with
# hosts that wait 20, 100 and 300 ms and the mixed case (SQLite, delay off), then recovery times
# (about 90 minutes); writes docs/performance.md.
bench: $(VENV)/.installed
	$(PY) -u bench/service.py --db sqlite postgres | tee var-bench.md
	$(PY) -u bench/service.py --db sqlite --delays 0 --latencies 20 100 300 mixed --runs 3 | tee var-far.md
	$(PY) -u bench/recovery.py --db sqlite postgres | tee var-recovery.md
	{ cat bench/performance.head.md var-bench.md; printf '\n### Image hosts far away\n\n'; cat var-far.md; echo; \
	  cat var-recovery.md; echo; cat bench/performance.year.md; } > docs/performance.md
	rm var-bench.md var-far.md var-recovery.md

# 50 clients submitting small jobs and polling for 30 s against web + worker; exits 1 on any error.
load: $(VENV)/.installed
	$(PY) -u bench/load.py --clients 50 --seconds 30

# Admin pages and the dashboard on 1,000,000 image results (seeded once into var/admin-bench.sqlite3, or
# DATABASE_URL).
bench-admin: $(VENV)/.installed
	mkdir -p var
	DJANGO_DEBUG=1 DATABASE_URL=$${DATABASE_URL:-sqlite:///$(CURDIR)/var/admin-bench.sqlite3} $(PY) bench/admin_lists.py

# GET /api/visits on 1,000,000 image results (seeded once into var/visits-bench.sqlite3, or DATABASE_URL).
bench-visits: $(VENV)/.installed
	mkdir -p var
	DJANGO_DEBUG=1 DATABASE_URL=$${DATABASE_URL:-sqlite:///$(CURDIR)/var/visits-bench.sqlite3} $(PY) bench/visits_api.py

# The service's reads on 10,000,000 image results with a 100,000-image job running, on PostgreSQL (the
# database year_bench) and SQLite (var/year-bench.sqlite3), each made and seeded once, in minutes. Writes
# bench/performance.year.md, the last section of docs/performance.md, and puts it there in place of the
# previous one.
bench-year: $(VENV)/.installed
	mkdir -p var
	$(PY) -u bench/year.py --db postgres sqlite | tee var-year.md
	mv var-year.md bench/performance.year.md
	{ sed '/^## A year of jobs/,$$d' docs/performance.md; cat bench/performance.year.md; } > var-performance.md
	mv var-performance.md docs/performance.md

# Instructions per image of the header reader alone, by format, over its corpus (a few minutes).
bench-headers: $(VENV)/.installed
	$(PY) -u bench/headers.py

# Retention's slices on jobs of 100,000 images: the longest a slice holds the write lock, by slice
# size (seeded once into var/prune-bench.sqlite3, or DATABASE_URL).
bench-prune: $(VENV)/.installed
	mkdir -p var
	DJANGO_DEBUG=1 DATABASE_URL=$${DATABASE_URL:-sqlite:///$(CURDIR)/var/prune-bench.sqlite3} $(PY) bench/prune.py

# An hour (SOAK_SECONDS) of 100,000-image jobs back to back, small jobs of four token clients,
# status polls, exports, the dashboard and retention against web + worker; each process's RSS every
# minute; exits 1 on RSS growth over 10 % after the warm-up, any error, or an image lost or counted twice.
soak: $(VENV)/.installed
	$(PY) -u bench/soak.py --seconds $${SOAK_SECONDS:-3600}

# The service at work without internet: local images, web + worker, a job with a progress bar, its
# result through the API, then everything stopped (see bin/demo).
demo: $(VENV)/.installed
	bin/demo

migrate: $(VENV)/.installed
	$(PY) manage.py migrate

clean:
	rm -rf $(VENV) staticfiles db.sqlite3* test_db.sqlite3*
