# Two commands do all set-up on a fresh machine (see README):
#   make sweep   creates .venv with pinned versions, runs the default sweep on a local Ray, prints its report
#   make test    creates .venv with pinned versions, runs the test suite (long tests excluded)
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,optuna,pb2,mlflow,wandb,baselines]"
	touch $@

.PHONY: sweep train test test-slow test-cluster
sweep: $(BIN)/.installed
	$(BIN)/distributed-agent sweep

train: $(BIN)/.installed
	$(BIN)/distributed-agent train --config experiments/fixed.yaml

test: $(BIN)/.installed
	$(BIN)/python -m pytest

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow

test-cluster: $(BIN)/.installed
	$(BIN)/python -m pytest -m cluster
