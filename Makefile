# Quick start: `make run` serves chat on tcp:7777 and echo on tcp/udp 7007; `make test` tests.
# `make run ARGS="--listen tcp:7000 --no-echo"` passes ARGS to `twistd chatd`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint pytest clean bench bench-peers mutate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps record what was installed, so a changed pyproject.toml reinstalls.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

ARGS ?=

run: $(VENV)/.installed-run
	$(BIN)/twistd --pidfile= -n chatd $(ARGS)

# `make test`: lint and every test (docs/testing.md). `make test-fast`: lint and the tests
# not marked slow, for the edit-test loop. Both run the tests in PYTEST_WORKERS processes
# (pytest-xdist): the suite spends most of its time waiting on other processes (twistd,
# redis-server, chromium, tmux), so more workers than the two cores pays; docs/testing.md
# has the times measured. PYTEST_WORKERS=0 runs them all in one process.
PYTEST_WORKERS ?= 4
# loadgroup: tests/conftest.py's scheduler (one test at a time to whichever worker is free;
# a module that shares a costly fixture whole on one worker).
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)

test: lint pytest

test-fast: lint $(VENV)/.installed-test
	$(BIN)/python -m compileall -q chatd twisted >/dev/null
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_PARALLEL)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check chatd tests twisted chatd.tac bench
	$(BIN)/mypy chatd bench

# compileall first: every twistd a test starts imports chatd, and with no byte-code on disk
# (a fresh clone, or PYTHONDONTWRITEBYTECODE set) each would compile it all again.
pytest: $(VENV)/.installed-test
	$(BIN)/python -m compileall -q chatd twisted >/dev/null
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)

# Benchmarks against the peers people would run instead (docs/benchmarks.md); never part
# of `make test`. `make bench-peers` installs the Debian peers (needs root). `make bench`
# then runs the cluster benchmark (bench/cluster.py; BENCH_CLUSTER_ARGS=--quick for a short run).
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

# The native load generator (issue 16): Go from bench/gen, built into git-ignored bench/bin.
GO ?= go
BENCHGEN := bench/bin/benchgen
$(BENCHGEN): $(wildcard bench/gen/*.go) bench/gen/go.mod
	@command -v $(GO) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "bench: installing golang-go (Go) for the native load generator"; \
	    apt-get install -y golang-go || { apt-get update && apt-get install -y golang-go; }; \
	  else \
	    echo "bench: the native load generator needs Go: apt-get install golang-go" >&2; \
	    exit 1; \
	  fi; }
	cd bench/gen && $(GO) build -o ../bin/benchgen .

bench: $(VENV)/.installed-bench $(BENCHGEN)
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.cluster $(BENCH_CLUSTER_ARGS)

bench-peers:
	apt-get update && apt-get install -y ngircd inspircd xinetd

# Mutation testing (docs/testing.md): mutmut puts one-line bugs into the modules listed in
# pyproject.toml [tool.mutmut] and runs their tests against each; never part of `make test`.
# Survivors are listed at the end; `.venv-mutate/bin/mutmut show NAME` shows one. Its own
# venv: mutmut brings libcst, and with libcst importable Hypothesis tries to rewrite the
# source of a failing property test, which crashes pytest on zope interfaces.
MUTATE_VENV ?= .venv-mutate

$(MUTATE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(MUTATE_VENV)
	$(MUTATE_VENV)/bin/python -m pip install -q -e '.[test,mutate]'
	touch $@

mutate: $(MUTATE_VENV)/.installed
	rm -rf mutants
	$(MUTATE_VENV)/bin/mutmut run --max-children $(or $(MUTATE_JOBS),2)
	$(MUTATE_VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) $(MUTATE_VENV) mutants .pytest_cache .mypy_cache .ruff_cache .hypothesis twisted/plugins/dropin.cache bench/bin
