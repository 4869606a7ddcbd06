# The front door: `make help` lists the targets. CI runs `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared

# `make run` with no SAMPLES trains on a synthetic demo set that meerkat generates itself.
SAMPLES ?=
OUTPUT ?= output/run
DEMO_SAMPLES := build/demo-samples
# Offline default: the small ImageNet MobileNetV2 in ../shared when it is there; otherwise the
# default backbone, whose weights Keras downloads once into ~/.keras.
SHARED_WEIGHTS := $(SHARED)/weights/mobilenet_v2_0.35_224_no_top.weights.h5
ifneq ($(wildcard $(SHARED_WEIGHTS)),)
RUN_FLAGS ?= --backbone mobilenet_v2 --alpha 0.35 --weights $(SHARED_WEIGHTS)
endif
PYTEST_ARGS ?=

.PHONY: help install test test-fast run clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create the venv with pinned dependencies and meerkat in it

$(VENV)/.installed: requirements.lock requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: install ## Run every test, the slow end-to-end ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## Run the tests that take seconds
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

run: install ## Train: make run SAMPLES=path/to/Samples OUTPUT=path/to/Output (no SAMPLES: a demo set)
ifeq ($(SAMPLES),)
	$(BIN)/meerkat demo-samples $(DEMO_SAMPLES)
	$(BIN)/meerkat run $(DEMO_SAMPLES) $(OUTPUT) $(RUN_FLAGS)
else
	$(BIN)/meerkat run $(SAMPLES) $(OUTPUT) $(RUN_FLAGS)
endif

clean: ## Remove the venv, build/ and output/
	rm -rf $(VENV) build output
