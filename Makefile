# LiverRead: `make run` serves the demo, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/liverread
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
export LIVERREAD_VAR ?= $(CURDIR)/var

.PHONY: install run test test-sqlite test-postgresql lint test-tools

VIEWER_BUNDLE := static/dist/viewer.js

install: $(INSTALLED) $(VIEWER_BUNDLE)

# torch is pinned to 2.13.0 (its CPU wheel lies on these machines) in the same pip
# call as MONAI, so pip never resolves a newer CUDA build of several GB.
$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The viewer: Cornerstone3D bundled by esbuild from the npm project in static/ (the bundle is not committed).
$(VIEWER_BUNDLE): static/package.json static/package-lock.json static/build.mjs $(wildcard static/src/*.js)
	cd static && npm ci --no-audit --no-fund --loglevel=error && npm run build

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py make_demo
	$(PY) manage.py train_model --data $(LIVERREAD_VAR)/demo_dataset --config cpu --name demo-cpu --activate --unless-active
	$(PY) manage.py make_demo_studies
	@echo "Serving LiverRead at http://127.0.0.1:8000 (Ctrl-C stops it)"
	$(PY) manage.py runserver 127.0.0.1:8000

# Debian's docker-compose validates docker-compose.yml offline in the tests; Debian's chromium runs the browser
# tests (driven by playwright's Python package, which never downloads a browser of its own); PostgreSQL's server
# binaries and redis-server run the private services of the fault tests, and of make test where the machine's
# own are not running.
test-tools:
	@command -v docker-compose >/dev/null && command -v chromium >/dev/null && command -v redis-server >/dev/null \
		&& ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
		apt-get install -y -qq docker-compose chromium postgresql redis-server >/dev/null; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole suite on the embedded default (SQLite), and every database test again on the real PostgreSQL,
# with Redis as the broker where a test asks for it: the two passes run side by side (one per core), each
# with its own var folder. The tests that start a real Celery worker or a real browser run in the PostgreSQL
# pass only; the fault tests (marker faults: they break a PostgreSQL cluster, redis-server and media storage
# of their own) in the SQLite pass only. PostgreSQL and Redis are the machine's on 127.0.0.1 when they answer,
# else private ones started for the run and removed after it (tests/with_services.py).
test: install test-tools lint
	$(PY) tests/with_services.py $(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgresql

test-sqlite:
	LIVERREAD_VAR=$(CURDIR)/var/test/sqlite TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(PY) -m pytest -p no:cacheprovider -m "not worker and not browser"

test-postgresql:
	LIVERREAD_VAR=$(CURDIR)/var/test/postgresql TEST_REDIS_URL=$(TEST_REDIS_URL) DATABASE_URL=$(TEST_DATABASE_URL) \
		$(PY) -m pytest -p no:cacheprovider -m "django_db and not faults"
