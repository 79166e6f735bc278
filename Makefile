# hpo-operator: the project's verbs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= out/demo
FIXTURES ?= out/fixtures

.DEFAULT_GOAL := help
CLUSTER_DIR ?= .cluster

.PHONY: help install fixtures demo quickstart test lint format bench clean control-plane cluster-up cluster-down operator-run

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv: the operator, `hpo`, the example trainer, test tools

$(VENV)/.installed: pyproject.toml trainer-image/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e './trainer-image[fixtures]'
	bash tests/cluster/install-helm.sh $(BIN)
	touch $@

fixtures: install ## build the offline digits images and feature module in out/fixtures
	$(BIN)/python -m hpo_trainer.fixtures --out $(FIXTURES)

# Trials run `python -m hpo_trainer.retrain`: the virtualenv's python comes first on PATH.
demo: export PATH := $(abspath $(BIN)):$(PATH)
demo: fixtures ## grid over training steps with the real TF retrainer (examples/digits-steps.yaml)
	rm -rf $(DEMO_OUT)
	$(BIN)/hpo run examples/digits-steps.yaml --out $(DEMO_OUT)
	$(BIN)/hpo plot $(DEMO_OUT) -o $(DEMO_OUT)/results.png

quickstart: install ## the stdlib-only example: examples/quickstart.yaml
	rm -rf out/quickstart
	$(BIN)/hpo run examples/quickstart.yaml --out out/quickstart

test: install lint ## lint, type-check and run the whole test suite
	$(BIN)/pytest

lint: install ## ruff (lint + format check) and mypy --strict on the operator package
	$(BIN)/ruff check operator trainer-image tests bench examples
	$(BIN)/ruff format --check operator trainer-image tests bench examples
	$(BIN)/mypy

format: install ## apply ruff's formatting and autofixes
	$(BIN)/ruff format operator trainer-image tests bench examples
	$(BIN)/ruff check --fix operator trainer-image tests bench examples

bench: install fixtures ## print benchmark figures (bench/)
	$(BIN)/python bench/search_bench.py
	$(BIN)/python bench/trainer_bench.py --fixtures $(FIXTURES)

control-plane: ## build kube-apiserver + kube-controller-manager v1.20.2 (cached in ~/.cache/hpo-operator)
	bash tests/cluster/build-control-plane.sh

cluster-up: install ## start etcd, kube-apiserver, kube-controller-manager and the node simulator
	$(BIN)/python tests/cluster/cluster.py up --dir $(CLUSTER_DIR)

operator-run: install ## run the operator here against the cluster in KUBECONFIG (make cluster-up prints it)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG (make cluster-up prints it)"; exit 2; }
	HPO_OPERATOR_IMAGE=$${HPO_OPERATOR_IMAGE:-registry.example/hpo-operator:0.1} \
	  $(BIN)/kopf run -m hpo_operator.handlers --standalone --all-namespaces

cluster-down: ## stop what cluster-up started
	$(BIN)/python tests/cluster/cluster.py down --dir $(CLUSTER_DIR)

clean: ## remove the virtualenv, caches and demo output
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
