# hpo-operator: the project's verbs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= out/demo

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with the operator, the `hpo` CLI and the test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: install ## run examples/quickstart.yaml locally and print the results table
	rm -rf $(DEMO_OUT)
	$(BIN)/hpo run examples/quickstart.yaml --out $(DEMO_OUT)
	$(BIN)/hpo plot $(DEMO_OUT) -o $(DEMO_OUT)/results.png

test: install lint ## lint, type-check and run the whole test suite
	$(BIN)/pytest

lint: install ## ruff (lint + format check) and mypy --strict on the operator package
	$(BIN)/ruff check operator tests bench examples
	$(BIN)/ruff format --check operator tests bench examples
	$(BIN)/mypy

format: install ## apply ruff's formatting and autofixes
	$(BIN)/ruff format operator tests bench examples
	$(BIN)/ruff check --fix operator tests bench examples

bench: install ## print benchmark figures (bench/)
	$(BIN)/python bench/search_bench.py

clean: ## remove the virtualenv, caches and demo output
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
