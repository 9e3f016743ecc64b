# codema-fleet: every target creates its own virtualenv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
TRACE ?=
PYTEST_ARGS ?=

.PHONY: demo test bench lint chaos replay soak clean deps

$(STAMP): pyproject.toml
	@scripts/ensure-apt redis-server:redis-server promtool:prometheus
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	@$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

deps: $(STAMP)

demo: $(STAMP)
	$(BIN)/fleet demo $(if $(TRACE),--trace $(TRACE))

test: $(STAMP)
	$(BIN)/fleet with-redis -- $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/fleet with-redis -- $(BIN)/python -m benchmarks

chaos: $(STAMP)
	$(BIN)/fleet with-redis -- $(BIN)/python -m tests.e2e.chaos

soak: $(STAMP)
	$(BIN)/fleet with-redis -- $(BIN)/python -m tests.e2e.chaos.soak

replay: $(STAMP)
	$(BIN)/fleet replay $(if $(TRACE),--trace $(TRACE))

clean:
	rm -rf $(VENV) demo-report replay-report .pytest_cache .mypy_cache .ruff_cache
