# Two entry points: `make run` serves the bundled data, `make test` runs the tests.
# Both create .venv and install the pinned requirements on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# MovieLens ml-latest-small ratings (GroupLens, https://grouplens.org/datasets/movielens/).
MOVIELENS ?= ../shared/datasets/ml-latest-small/ratings.csv

# `make run MODEL=als PORT=5201` (or `MODEL=als make run`): the documented names work.
ifdef MODEL
export RECSYS_MODEL := $(MODEL)
endif
RUN_ARGS := $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

.PHONY: run serve test test-fast lint docs reference bench install readme

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-docs.txt
	@echo "installing the pinned requirements into $(VENV) (about a minute, first time only)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# PySpark (about 320 MB) for the Spark engine's tests; serving never needs it.
$(VENV)/.installed-spark: $(VENV)/.installed requirements-spark.txt
	@echo "installing PySpark for the Spark tests into $(VENV) (requirements-spark.txt, first time only)"
	$(PY) -m pip install --quiet -r requirements-spark.txt
	touch $@

# Development server: init (migrate, load the bundled log, train once), then serve.
run: install
	$(PY) app.py $(RUN_ARGS)

# Production server: serve.py, granian's workers (init and the model load run once
# before them). `make serve PORT=8123 HOST=0.0.0.0` overrides RECSYS_BIND.
serve: install
	$(PY) serve.py $(RUN_ARGS)

lint: install docs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

# The documentation site (docs/, mkdocs.yml) into site/: strict, so a broken
# link or anchor, or a page left out of the navigation, fails the build (and
# `make test`, which lints first).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The docs' parts the code generates: docs/api/openapi.json (the app's OpenAPI
# document) and the settings table of docs/configuration.md. A test says when
# they are stale.
reference: install
	$(PY) tools/docs_reference.py

# Both cores (pytest-xdist): the whole suite in fifteen to twenty minutes, a third of it Spark's;
# loadgroup keeps the tests of one xdist_group (the Spark cluster's) on one worker.
# The Spark tests also need Java 17 or newer; without it they skip with the reason.
test: lint $(VENV)/.installed-spark
	$(PY) -m pytest -n 2 --dist loadgroup

# The core only, in about three minutes: no test marked slow (real servers,
# commands run as subprocesses, fault injection, the docs' commands, Spark).
test-fast: install
	$(PY) -m pytest -m "not slow" -n 2

# Every benchmark runs even after one fails; the recipe fails at the end if
# any target it judged failed. `make bench RECORD=bench/records` also writes each
# benchmark's output and verdict table to bench/records/<benchmark>.md (markdown, with
# the run's date and commit) for the docs, and the quality table into README.md. BENCH_SCALE_SIZES=0.1M,1M,10M
# measures the 10M targets instead of projecting them.
BENCH_SCALE_SIZES ?= 0.1M,1M
bench: install
	@failed=""; \
	run() { name=$$1; shift; \
		$(PY) bench/$$name.py "$$@" $(if $(RECORD),--record "$(RECORD)/$$name.md") \
			|| failed="$$failed $$name"; }; \
	run bench_import; \
	run bench_ingestion; \
	run bench_quality "$(MOVIELENS)" $(if $(RECORD),--readme README.md); \
	run bench_rating "$(MOVIELENS)"; \
	run bench_scale --sizes "$(BENCH_SCALE_SIZES)" --spark-sizes 0.1M --retrain-sizes 1M; \
	run bench_filters; \
	run bench_exposure; \
	run bench_redis_ops; \
	run bench_exploration; \
	run bench_similar "$(MOVIELENS)"; \
	run bench_realtime "$(MOVIELENS)"; \
	run bench_fold_in; \
	run bench_gate; \
	run bench_lifecycle; \
	run bench_ranker "$(MOVIELENS)"; \
	if command -v wrk >/dev/null 2>&1; then run bench_serving; run bench_memory; run bench_limits; \
	else echo "skipped bench_serving.py, bench_memory.py and bench_limits.py: they need wrk" \
	          "(apt-get install wrk)"; fi; \
	if [ -f "$(MOVIELENS)" ]; then \
		run bench_movielens "$(MOVIELENS)"; \
	else \
		echo "skipped bench_movielens.py: no MovieLens ratings at $(MOVIELENS);" \
		     "download ml-latest-small from GroupLens and run: make bench MOVIELENS=PATH/ratings.csv"; \
	fi; \
	run bench_capacity $(if $(RECORD),--records "$(RECORD)"); \
	if [ -n "$$failed" ]; then echo "make bench: a target failed in:$$failed"; exit 1; fi; \
	echo "make bench: every target judged passed"

# Regenerate the example sessions (README.md, docs/getting-started.md) against a fresh server.
readme: install
	$(PY) tools/readme_examples.py
