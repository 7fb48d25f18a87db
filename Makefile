# carebridge: `make run` starts the bot, `make test` runs the whole suite.
# Both set up .venv on first use; nothing else needs to be installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# `make run` installs only what running needs; the test tools (pytest, ruff, mypy,
# Playwright) come on top, the first time `make test`, `make lint` or `make setup` runs.
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp

.PHONY: run chat test lint bench setup system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(DEV_STAMP)

# Debian packages the tests and benchmarks need (Chromium for Playwright, wrk for the load,
# PostgreSQL for the store tests on both engines).
system-deps:
	@(command -v chromium && command -v wrk && ls /usr/lib/postgresql/*/bin/initdb) >/dev/null 2>&1 \
		|| sh scripts/install-system-deps.sh

run: $(RUN_STAMP)
	$(BIN)/carebridge serve

chat: $(RUN_STAMP)
	$(BIN)/carebridge chat

lint: $(DEV_STAMP)
	$(BIN)/ruff check bot channels nlu tests bench
	$(BIN)/ruff format --check bot channels nlu
	$(BIN)/mypy bot channels nlu

test: $(DEV_STAMP) system-deps lint
	$(BIN)/carebridge flows validate
	$(BIN)/carebridge flows test
	$(BIN)/pytest -n auto --dist loadgroup --durations=15

bench: $(RUN_STAMP) system-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
