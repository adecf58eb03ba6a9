# Two commands work on a fresh clone: `make serve` and `make test`.
# Each sets up .venv itself (again whenever pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint format typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The sign-in server on the embedded SQLite default (doorman.db in this directory).
# On the first start it prints a one-time link that creates the first admin.
serve: $(STAMP)
	$(BIN)/doorman serve --host $(HOST) --port $(PORT)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check doorman tests benchmarks examples
	$(BIN)/ruff format --check doorman tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format doorman tests benchmarks examples
	$(BIN)/ruff check --fix doorman tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

-include benchmarks/Makefile.inc
