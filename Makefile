# One entry point for a newcomer: `make demo` and `make test` set everything up by themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install demo test lint bench-server bench-model bench-loop clean local-server

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip==25.3'
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned packages

demo: $(STAMP) ## run the loop on the local ClearML server (no cluster needed)
	$(BIN)/occupancy-mlops demo

test: $(STAMP) ## run every test (unit and integration against the local server)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy occupancy_mlops services training

bench-server: $(STAMP) ## local server: tasks.get_all over 10,000 tasks, dataset flow with 100 files
	$(BIN)/python -m bench.bench_server

bench-model: $(STAMP) ## model quality: accuracy, F1, ROC-AUC and training time over 5 seeds
	$(BIN)/python -m bench.bench_model

bench-loop: $(STAMP) ## trigger latency: finalize → retrain queued (20 versions), → model gated (3 rounds)
	$(BIN)/python -m bench.bench_loop

local-server: $(STAMP) ## run the local ClearML server in the foreground on 127.0.0.1:8008
	$(BIN)/occupancy-mlops local-server --data .local-server

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .local-server .demo .pytest_cache .mypy_cache .ruff_cache
