# memlane: `make run` (install and demo), `make test` (lint, types, tests), `make bench`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint typecheck unit bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/memlane --db "$(CURDIR)/.venv/demo.db" demo

lint: install
	$(BIN)/ruff check memlane tests benchmarks

typecheck: install
	$(BIN)/mypy memlane benchmarks

unit: install
	$(BIN)/pytest -n 2

test: lint typecheck unit

bench: install
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.ingest_profile
	$(BIN)/python -m benchmarks.scale
	$(BIN)/python -m benchmarks.scale --store postgres
	$(BIN)/python -m benchmarks.quality
	$(BIN)/python -m benchmarks.reliability
	$(BIN)/python -m benchmarks.serve
	$(BIN)/python -m benchmarks.context_packing --docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
