# Thin front door: every target calls `python -m ...` or a script under scripts/.
# `make help` lists the targets. The environment (.venv) is created on first use.

SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PYTHONUNBUFFERED := 1
# Data folder for real-data runs (a folder containing cifar-10-batches-py/, or its parent); empty = digits.
DATA_DIR ?= $(PRUNING_DATA_DIR)
# Folder of the authors' released checkpoints (e.g. dsp/resnet56_g4.pt); empty = not available.
CKPT_DIR ?= $(PRUNING_CHECKPOINT_DIR)

.DEFAULT_GOAL := help
.PHONY: help setup setup-gpu test test-fast lint format demo data tables check check-imports tensorboard clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "} {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[all]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv with everything (CPU: torch + torchvision + tensorflow-cpu + dev tools)

setup-gpu: ## GPU machines: .venv-torch (CUDA torch) and .venv-tf (tensorflow[and-cuda]), see README
	bash scripts/setup_gpu.sh

test: $(STAMP) ## run the whole test suite (fails when a test fails or none ran)
	PY="$(PY)" bash scripts/run_tests.sh

test-fast: $(STAMP) ## the suite without the tests marked slow
	PY="$(PY)" bash scripts/run_tests.sh -m "not slow"

lint: $(STAMP) ## ruff check + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

check-imports: $(STAMP) ## shared/ must not import torch or tensorflow
	$(PY) -c "import sys, shared, shared.data, shared.flops, shared.archs, shared.results, shared.results.check; \
		bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; sys.exit(f'shared imported {bad}' if bad else 0)"

demo: $(STAMP) ## the main job: every subproject's demo stage, then the results check and table
	DATA_DIR="$(DATA_DIR)" PRUNING_CHECKPOINT_DIR="$(CKPT_DIR)" bash scripts/demo.sh

data: $(STAMP) ## put CIFAR-10 under data/ (download when online; ARCHIVE=... or FROM=... offline)
	$(PY) -m shared.data cifar10 --out data $(if $(ARCHIVE),--archive $(ARCHIVE)) $(if $(FROM),--from $(FROM))

check: $(STAMP) ## cross-check committed run records against the papers' reported tables
	$(PY) -m shared.results check

tables: $(STAMP) ## write results/TABLES.md and results/plots/*.png
	$(PY) -m shared.results tables

tensorboard: $(STAMP) ## TensorBoard over every run folder under runs/ (PORT=6006)
	$(VENV)/bin/tensorboard --logdir runs --port $(or $(PORT),6006)

clean: ## remove run folders and caches (keeps .venv and results/)
	rm -rf runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Per-paper targets (dsp-*, ista-*, ...) live in mk/<paper>.mk.
-include mk/*.mk
