# carebridge: `make run` starts the bot, `make test` runs the whole suite.
# Both set up .venv on first use; nothing else needs to be installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run chat test lint bench setup system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian packages the tests and benchmarks need (Chromium for Playwright, wrk for the load).
system-deps:
	@(command -v chromium && command -v wrk) >/dev/null 2>&1 || sh scripts/install-system-deps.sh

run: $(STAMP)
	$(BIN)/carebridge serve

chat: $(STAMP)
	$(BIN)/carebridge chat

lint: $(STAMP)
	$(BIN)/ruff check bot channels nlu tests bench
	$(BIN)/ruff format --check bot channels nlu
	$(BIN)/mypy bot channels nlu

test: $(STAMP) system-deps lint
	$(BIN)/carebridge flows validate
	$(BIN)/carebridge flows test
	$(BIN)/pytest

bench: $(STAMP) system-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
