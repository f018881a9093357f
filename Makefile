# The two front-door commands. Each installs only what is missing, so a second run is quick.
#   make demo   install, provision, and serve the page on http://127.0.0.1:8000/
#   make test   install (dev extras, Chromium, nginx, Triton, the data set), provision, run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test provision chromium nginx triton dataset

demo: provision
	$(BIN)/strata serve

test: $(VENV)/.dev provision chromium nginx triton dataset
	$(BIN)/pytest

provision: $(VENV)/.runtime
	$(BIN)/strata provision

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train]'
	touch $@ $(VENV)/.runtime

# Debian packages; this needs root (as on CI), or run the apt-get line with sudo yourself.
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { apt-get update -q && apt-get install -y -q nginx; }

# Triton Inference Server from PyPI (the nvidia-pytriton wheel's binary, 55 MB) in build/triton,
# for the tests that use it as the cloud (testing/triton.py); a second run only checks. If it
# cannot be installed, those tests are skipped and say why.
triton: $(VENV)/.dev
	-$(BIN)/python -m testing.triton

dataset:
	@test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || \
		{ apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }
