# Thin front door: every target calls `python -m ...` or a script under scripts/.
# `make help` lists the targets. The environment (.venv) is created on first use.

SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV ?= .venv
# GPU=1 runs every target in the per-framework GPU environments that `make setup-gpu` builds
# (.venv-torch for dsp_torch/bip_torch, .venv-tf for ista_tf/ekg_tf2/dcp_tf); the CPU extras are never
# installed into them. Without GPU=1 one CPU environment (.venv) serves both frameworks.
GPU ?=
ifeq ($(GPU),1)
TORCH_VENV := .venv-torch
TF_VENV := .venv-tf
PY := $(TORCH_VENV)/bin/python
STAMP := $(TORCH_VENV)/.installed-stamp
else
TORCH_VENV := $(VENV)
TF_VENV := $(VENV)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
endif
# per-paper targets run with their framework's interpreter (mk/*.mk)
TORCH_PY := $(TORCH_VENV)/bin/python
TF_PY := $(TF_VENV)/bin/python
TORCH_STAMP := $(TORCH_VENV)/.installed-stamp
TF_STAMP := $(TF_VENV)/.installed-stamp
export PYTHONUNBUFFERED := 1
# Data folder for real-data runs (a folder containing cifar-10-batches-py/, or its parent); empty = digits.
DATA_DIR ?= $(PRUNING_DATA_DIR)
# Folder of the authors' released checkpoints (e.g. dsp/resnet56_g4.pt); empty = not available.
CKPT_DIR ?= $(PRUNING_CHECKPOINT_DIR)

.DEFAULT_GOAL := help
.PHONY: help setup setup-gpu test test-fast lint format demo data tables check check-imports tensorboard clean

help: ## list the targets (variables: SMOKE=1 DRY_RUN=1 on table scripts, DATA_DIR, CKPT_DIR, GPU=1)
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} {printf "  %s%-22s%s %s\n", on, $$1, off, $$2}'
	@echo
	@echo "Variables: DATA_DIR=folder with cifar-10-batches-py (else the embedded digits), CKPT_DIR=the authors'"
	@echo "checkpoints, SMOKE=1 (tiny run) and DRY_RUN=1 (print the commands) on every table/figure target,"
	@echo "GPU=1 (run in .venv-torch / .venv-tf from 'make setup-gpu'). Times are for an idle 2-core machine;"
	@echo "a shared machine is slower."

ifeq ($(GPU),1)
$(TORCH_STAMP): pyproject.toml
	bash scripts/setup_gpu.sh torch
$(TF_STAMP): pyproject.toml
	bash scripts/setup_gpu.sh tf
else
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[all]'
	@touch $(STAMP)
endif

setup: $(STAMP) ## create .venv with everything (CPU: torch + torchvision + tensorflow-cpu + dev tools)

setup-gpu: ## GPU machines: .venv-torch (CUDA torch) and .venv-tf (tensorflow[and-cuda]), see README
	bash scripts/setup_gpu.sh

test: $(TORCH_STAMP) $(TF_STAMP) ## run the whole test suite (fails when a test fails or none ran)
	TORCH_PY="$(TORCH_PY)" TF_PY="$(TF_PY)" bash scripts/run_tests.sh

test-fast: $(TORCH_STAMP) $(TF_STAMP) ## the suite without the tests marked slow
	TORCH_PY="$(TORCH_PY)" TF_PY="$(TF_PY)" bash scripts/run_tests.sh -m "not slow"

lint: $(STAMP) ## ruff check + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

check-imports: $(STAMP) ## shared/ must not import torch or tensorflow
	$(PY) -c "import sys, shared, shared.data, shared.flops, shared.archs, shared.results, shared.results.check; \
		bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; sys.exit(f'shared imported {bad}' if bad else 0)"

demo: $(TORCH_STAMP) $(TF_STAMP) ## the main job: every subproject's demo stage, then the results check and table
	TORCH_PY="$(TORCH_PY)" TF_PY="$(TF_PY)" DATA_DIR="$(DATA_DIR)" PRUNING_CHECKPOINT_DIR="$(CKPT_DIR)" bash scripts/demo.sh

data: $(STAMP) ## put CIFAR-10 under data/ (download when online; ARCHIVE=... or FROM=... offline)
	$(PY) -m shared.data cifar10 --out data $(if $(ARCHIVE),--archive $(ARCHIVE)) $(if $(FROM),--from $(FROM))

check: $(STAMP) ## cross-check committed run records against the papers' reported tables
	$(PY) -m shared.results check

tables: $(STAMP) ## rewrite the committed results/TABLES.md and results/plots/*.png from results/records
	$(PY) -m shared.results tables --update-committed

tensorboard: $(STAMP) ## TensorBoard over every run folder under runs/ (PORT=6006)
	$(dir $(PY))tensorboard --logdir runs --port $(or $(PORT),6006)

clean: ## remove run folders and caches (keeps .venv and results/)
	rm -rf runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Per-paper targets (dsp-*, ista-*, ...) live in mk/<paper>.mk.
-include mk/*.mk
