# nfrepro: the two commands of the README are `make reproduce` and `make test`.
# Both start by creating .venv (if absent) and installing nfrepro with everything it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# This project's machines install torch 2.14.1 from local disk; override on other machines,
# for example `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.nfrepro-installed
NOTEBOOKS := $(sort $(notdir $(wildcard notebooks/[0-9]*.ipynb)))
FMNIST_DIR := /usr/share/datasets/fashion-mnist
# How the tests force the smoke profile: every notebook's second cell reads this variable.
TEST_ENV := NFREPRO_PROFILE=smoke

# The GPU machine's own python (torch, torchvision, timm, pandas, pytest; nothing installed there).
GPU_PYTHON ?= python3
GPU_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)

.PHONY: help setup data browser reproduce test test-browser lab clean gpu-check throughput-before

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[all]"
	$(BIN)/python -m ipykernel install --sys-prefix --name nfrepro --display-name "nfrepro (.venv)" >/dev/null
	touch $@

setup: $(STAMP) data browser ## create .venv and install nfrepro, the notebook tools, the data set and the test browser

data: ## install Fashion-MNIST (Debian package dataset-fashion-mnist) when possible
	@if [ -n "$$NFREPRO_DATA" ]; then \
	  echo "data: using NFREPRO_DATA=$$NFREPRO_DATA"; \
	elif [ -d "$(FMNIST_DIR)" ]; then \
	  echo "data: Fashion-MNIST found in $(FMNIST_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "data: installing the Debian package dataset-fashion-mnist"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "data: Fashion-MNIST is missing. Run:  sudo apt-get install dataset-fashion-mnist"; \
	  echo "      or point NFREPRO_DATA at a folder holding the four Fashion-MNIST IDX files."; \
	fi

browser: ## install Chromium and chromedriver (Debian packages) for the browser test, when possible
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "browser: chromium and chromedriver found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "browser: installing the Debian packages chromium and chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
	  echo "browser: Chromium is missing (the browser test will be skipped). Run:  sudo apt-get install chromium chromium-driver"; \
	fi

# Every run record of a reproduce names the commit it started from ("-dirty" when the tree had
# uncommitted changes then), not the tree that papermill and the notebooks are rewriting meanwhile.
# The benchmarks' tables (results/bench_*.csv) are committed too, so the same run remakes them:
# every results/*.json and figure names one commit (tests/test_provenance.py). tools/gelu_speed.py
# adds the GELU kernels and timm's F0 step on one thread (bench_gelu, bench_train_step_1thread).
BENCHMARKS := agc train_step inference throughput weight_standardization
# Notebook 00 runs last: its synthesis reads every verdict file and the minutes each step took
# (.scratch/reproduce/times.csv, which it saves as results/reproduce_times.csv).
TIMES := .scratch/reproduce/times.csv
reproduce: setup ## run every notebook (default "cpu" profile), regenerating figures/ and results/
	@export NFREPRO_COMMIT=$$(git rev-parse HEAD)$$(git diff --quiet HEAD -- . || echo -dirty); \
	echo "== reproducing at $$NFREPRO_COMMIT"; \
	case $$NFREPRO_COMMIT in *-dirty) echo "== uncommitted changes: every record will say -dirty and tests/test_provenance.py will fail; commit first to publish the outputs";; esac; \
	mkdir -p $(dir $(TIMES)) && echo "notebook,seconds" > $(TIMES) && \
	run_notebook() { \
	  echo "== $$1"; start=$$(date +%s); \
	  (cd notebooks && env -u NFREPRO_PROFILE ../$(BIN)/papermill --progress-bar --cwd . "$$1" "$$1") || return 1; \
	  echo "$${1%.ipynb},$$(( $$(date +%s) - start ))" >> $(TIMES); \
	  echo "== $$1 done in $$(( $$(date +%s) - start )) s"; \
	}; \
	for nb in $(filter-out 00_overview.ipynb,$(NOTEBOOKS)); do run_notebook "$$nb" || exit 1; done; \
	echo "== benchmarks: $(BENCHMARKS)" && start=$$(date +%s) && \
	env -u NFREPRO_PROFILE $(BIN)/python -m nfrepro bench --profile cpu --which $(BENCHMARKS) && \
	PYTHONPATH=. $(BIN)/python tools/gelu_speed.py --threads 1 --repeats 6 --only gelu train_step && \
	echo "benchmarks,$$(( $$(date +%s) - start ))" >> $(TIMES) && \
	echo "== benchmarks done in $$(( $$(date +%s) - start )) s" && \
	run_notebook 00_overview.ipynb && rm -f $(TIMES)

test: setup ## lint (ruff), then the tests, and nbval over the notebooks under the smoke profile
	$(BIN)/ruff check .
	$(TEST_ENV) $(BIN)/python -m pytest --nbval-lax --nbval-current-env tests notebooks

gpu-check: ## on a GPU machine: CUDA tests and benchmarks into results/gpu (DRY=1: toy run on the CPU)
	@$(GPU_PYTHON) -c "import torch, pandas" 2>/dev/null || { echo "gpu-check: $(GPU_PYTHON) cannot import torch and pandas; name a python that can: make gpu-check GPU_PYTHON=.venv/bin/python"; exit 2; }
	NFREPRO_COMMIT=$${NFREPRO_COMMIT:-$(GPU_COMMIT)} PYTHONPATH=. $(GPU_PYTHON) tools/gpu_check.py $(if $(DRY),--dry) $(GPU_CHECK_ARGS)

throughput-before: setup ## optional: today's small-net throughput beside COMMIT's own step (COMMIT=<rev>)
	@test -n "$(COMMIT)" || { echo "throughput-before: name the earlier commit, e.g. make throughput-before COMMIT=00eeab5"; exit 1; }
	PYTHONPATH=. $(BIN)/python tools/throughput_before.py $(COMMIT)

test-browser: setup ## open every notebook in JupyterLab in headless Chromium; screenshots in .scratch/browser
	$(BIN)/python -m pytest -rs tests/test_browser.py

lab: setup ## open the notebooks in JupyterLab with the project's kernel
	$(BIN)/jupyter lab notebooks

clean: ## remove scratch outputs of smoke runs (keeps .venv)
	rm -rf .scratch
