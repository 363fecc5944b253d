# django-bounce-tracker — developer commands.
#   make demo    the example site with demo data on http://127.0.0.1:8000/admin/
#   make test    lint, then the whole suite on SQLite, MariaDB and PostgreSQL
#                (and again on Django 4.2 LTS with TEST_DJANGO42=1)
#   make lint    ruff, mypy and the import rules between the rooms (import-linter)
#   make docs    the Sphinx documentation, warnings as errors
#   make bench   the send-overhead benchmark
#   make bench-deps  what the benchmarks need besides the virtualenv (php-cli, php-mysql)
#   make fuzz    fuzz the bounce classifier (FUZZ_SECONDS=600), see fuzz/README.md
#   make dist    the wheel and the sdist in dist/ (python -m build)
#   make screenshots  the admin screenshots in docs/screenshots/ (browser tests, MariaDB)

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian's interpreter when present: a virtualenv made from it is readable by the
# unprivileged user Postfix runs pipe commands as (a pyenv under /root is not).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV ?= .venv
VENV42 ?= .venv-django42
BIN := $(VENV)/bin
EXTRAS := mysql,postgres,dev

MYSQL_URL ?= mysql://root:@127.0.0.1:3306/bounce_tracker
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/bounce_tracker
DEMO_DB ?= sqlite:///$(CURDIR)/example_project/demo.sqlite3
DEMO_ADDR ?= 127.0.0.1:8000

PYTEST_ARGS ?=
SCREENSHOTS ?= $(CURDIR)/docs/screenshots

.PHONY: help
help:
	@sed -n '2,/^$$/p' Makefile | sed '$$d'

# What a fresh Debian/Ubuntu machine lacks for the virtualenv and for mysqlclient,
# which compiles against the MariaDB client headers. Installed when running as root
# with apt; otherwise the exact command to run is printed.
.PHONY: system-packages
system-packages:
	@missing=""; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" \
		|| missing="$$missing python3-dev"; \
	command -v gcc >/dev/null || missing="$$missing build-essential"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null \
		|| missing="$$missing libmariadb-dev"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "Missing system packages. Run:"; \
		echo "    sudo apt-get install -y$$missing"; \
		exit 1; \
	fi

$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

$(VENV42)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/pip install -q --upgrade pip
	$(VENV42)/bin/pip install -q -e ".[$(EXTRAS)]" "Django>=4.2,<5.0"
	touch $@

.PHONY: install
install: $(VENV)/.installed

.PHONY: lint
lint: $(VENV)/.installed
	$(BIN)/ruff check bounce_tracker tests benchmarks example_project fuzz
	$(BIN)/ruff format --check bounce_tracker tests benchmarks example_project fuzz
	$(BIN)/mypy bounce_tracker
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/python -m django makemigrations --check --dry-run --settings tests.settings >/dev/null

# One pass per database; tests marked for another database's server are deselected.
# A database that is not running makes its pass skip (or fail, when
# BOUNCE_TRACKER_REQUIRE_SERVICES=1).
# The real-browser and Postfix tests run in the MariaDB pass (the primary database).
# $(3) narrows the selection further (the Django 4.2 passes leave out the long tests).
define run_suite
	@echo "=== $(1): SQLite ==="
	$(2)/bin/python -m pytest -m "not mysql and not postgres and not browser$(3)" $(PYTEST_ARGS)
	@echo "=== $(1): MariaDB ==="
	DATABASE_URL=$(MYSQL_URL) $(2)/bin/python -m pytest -m "not postgres$(3)" $(PYTEST_ARGS)
	@echo "=== $(1): PostgreSQL ==="
	DATABASE_URL=$(POSTGRES_URL) $(2)/bin/python -m pytest -m "not mysql and not browser$(3)" $(PYTEST_ARGS)
endef

.PHONY: test
test: lint docs test-suite
ifeq ($(TEST_DJANGO42),1)
test: test-django42
endif

.PHONY: test-suite
test-suite: $(VENV)/.installed
	$(call run_suite,Django $$($(BIN)/python -c 'import django; print(django.get_version())'),$(VENV))

.PHONY: test-django42
test-django42: $(VENV42)/.installed
	$(call run_suite,Django $$($(VENV42)/bin/python -c 'import django; print(django.get_version())'),$(VENV42), and not long)

.PHONY: coverage
coverage: $(VENV)/.installed
	$(BIN)/coverage run -m pytest -m "not mysql and not postgres" $(PYTEST_ARGS)
	$(BIN)/coverage report

.PHONY: demo
demo: $(VENV)/.installed
	cd example_project && DATABASE_URL=$(DEMO_DB) ../$(BIN)/python manage.py migrate --noinput
	cd example_project && DATABASE_URL=$(DEMO_DB) ../$(BIN)/python manage.py load_demo_data
	cd example_project && DATABASE_URL=$(DEMO_DB) ../$(BIN)/python manage.py runserver $(DEMO_ADDR)

.PHONY: docs
docs: $(VENV)/.installed
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

# The sdist and the wheel, freshly built into dist/ (python -m build, in an isolated
# environment with the build requirements from pyproject.toml). A stale *.egg-info
# goes first: setuptools would add the files its SOURCES.txt lists to the sdist.
.PHONY: dist
dist: $(VENV)/.installed
	rm -rf dist *.egg-info
	$(BIN)/python -m build --outdir dist .

# The browser tests save their screenshots to a temporary directory; this run saves
# them over the ones README.md and docs/admin.rst show (or into SCREENSHOTS=DIR).
# Needs MariaDB and Chromium: a missing one fails the run.
.PHONY: screenshots
screenshots: $(VENV)/.installed
	BOUNCE_TRACKER_REQUIRE_SERVICES=1 BOUNCE_TRACKER_SCREENSHOTS=$(SCREENSHOTS) \
		DATABASE_URL=$(MYSQL_URL) \
		$(BIN)/python -m pytest -m browser tests/browser/test_admin_browser.py $(PYTEST_ARGS)

.PHONY: bench
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/send_overhead.py

# What the benchmarks need beyond the virtualenv: php-cli and php-mysql for the
# original recipe's PHP pipe script (benchmarks/php/bounce.php), the baseline of
# benchmarks/receiver.py. Installed when running as root with apt; otherwise the
# exact command to run is printed.
.PHONY: bench-deps
bench-deps:
	@missing=""; \
	command -v php >/dev/null || missing="$$missing php-cli"; \
	php -r 'exit(class_exists("mysqli") ? 0 : 1);' 2>/dev/null || missing="$$missing php-mysql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "Missing packages for the benchmarks. Run:"; \
		echo "    sudo apt-get install -y$$missing"; \
		exit 1; \
	fi

# Coverage-guided fuzzing of classify_message with atheris (libFuzzer). New coverage
# goes to fuzz/corpus/, failing inputs to fuzz/crashes/ (both gitignored); a
# finding stops the run. Replay one with: $(BIN)/python fuzz/fuzz_classify.py <file>
FUZZ_SECONDS ?= 600
FUZZ_MAX_LEN ?= 65536
FUZZ_ARGS ?=

$(VENV)/.fuzz-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[$(EXTRAS),fuzz]"
	touch $@

.PHONY: fuzz
fuzz: $(VENV)/.fuzz-installed
	$(BIN)/python fuzz/make_seed_corpus.py
	mkdir -p fuzz/crashes
	$(BIN)/python fuzz/fuzz_classify.py fuzz/corpus fuzz/regressions \
		-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=$(FUZZ_MAX_LEN) \
		-timeout=10 -dict=fuzz/classify.dict -print_final_stats=1 -artifact_prefix=fuzz/crashes/ \
		$(FUZZ_ARGS)

.PHONY: clean
clean:
	rm -rf $(VENV) $(VENV42) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
