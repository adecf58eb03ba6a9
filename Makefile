# Two commands work on a fresh clone, in either order: `make serve` and `make test`.
# Each sets up .venv itself (again whenever pyproject.toml changes): `serve` with
# only what serving needs (the server extra), `test` with the test and lint tools too.
# Another Python, in a venv of its own: `make test PYTHON=python3.13 VENV=.venv-3.13`.

PYTHON ?= python3
VENV ?= .venv
# pip constraints for the install, such as .ci/oldest.txt (the oldest Starlette and FastAPI).
CONSTRAINTS ?=
# What pytest runs: the whole suite, unless given (TESTS="tests/test_fastapi.py -k drop_in").
TESTS ?=
# How many processes the fast tests are spread over: one per CPU, at most 4 (each holds
# PostgreSQL connections; 4 leave room under its default 100). On 2 CPUs, 3 did no better.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)
# The end-to-end modules over at most two: each starts servers of several workers, with
# pools of PostgreSQL connections, and load tests. On 2 CPUs, 2 took 6.7 min where 1 took
# 11.8; 4 (with the fast tests) took longer than 2 and dropped a keep-alive connection.
E2E_JOBS ?= $(shell [ $(JOBS) -gt 2 ] && echo 2 || echo $(JOBS))
BIN := $(VENV)/bin
# pytest keeps the test modules it rewrites (for its assertions) only where Python writes
# bytecode: kept, a run collects in 3 s instead of 8 s per process. So the test targets
# write bytecode even where the environment turns it off (PYTHONDONTWRITEBYTECODE).
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-server
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test pytest fast lint format typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS))
	touch $(STAMP)

# The dev install holds the server extra: after `make test`, nothing to install.
$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	[ $(STAMP) -nt pyproject.toml ] || $(BIN)/python -m pip install --quiet -e '.[server]'
	touch $(SERVE_STAMP)

# The sign-in server on the embedded SQLite default (doorman.db in this directory).
# On the first start it prints a one-time link that creates the first admin, as the
# last line before uvicorn's "Uvicorn running on".
serve: $(SERVE_STAMP)
	$(BIN)/doorman serve --host $(HOST) --port $(PORT)

# Everything: the fast tests spread over JOBS processes, then the end-to-end ones (browser,
# deploy, faults, load, real subprocesses) over E2E_JOBS: tests that share a fixture of
# module or class scope stay in one process, in order (tests/conftest.py groups them).
# pytest exits 5 when a selection holds no test (TESTS naming only fast or only
# end-to-end ones): fine.
define run_tests
	$(PYTEST) -m "not e2e" -n $(JOBS) $(TESTS) || [ $$? -eq 5 ]
	$(PYTEST) -m e2e -n $(E2E_JOBS) --dist loadgroup $(TESTS) || [ $$? -eq 5 ]
endef

test: $(STAMP) lint typecheck
	$(run_tests)

# The tests alone, for the environments where lint and types were already checked.
pytest: $(STAMP)
	$(run_tests)

# The fast tests alone, while working: no browser, deploy, faults, load or real subprocesses.
# In JOBS processes (pytest-xdist; JOBS=0 runs them in this one, for pdb or print).
fast: $(STAMP)
	$(PYTEST) -m "not e2e" -n $(JOBS) $(TESTS)

lint: $(STAMP)
	$(BIN)/ruff check doorman tests benchmarks examples
	$(BIN)/ruff format --check doorman tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format doorman tests benchmarks examples
	$(BIN)/ruff check --fix doorman tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .venv-matrix .pytest_cache .ruff_cache .mypy_cache .hypothesis

-include benchmarks/Makefile.inc
