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

# Containers. The engine is docker where a daemon answers, else podman.
CONTAINER_ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
IMAGE ?= meerkat:cpu
IMAGE_GPU ?= meerkat:gpu
# Empty: the Dockerfile's digest-pinned python image. Without a registry: `make base-image`, then
# BASE_IMAGE=localhost/debian-py:bookworm.
BASE_IMAGE ?=
# A CA bundle for builds behind a TLS-intercepting proxy (passed as a build secret, not baked in).
CA_BUNDLE ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# Every date inside the image's layers and history: one fixed time, not the commit's. podman's layer
# cache does not key on --timestamp, so a step cached by an earlier commit kept that commit's time
# and a warm `make image` differed from a build from nothing. The commit's time is the created label.
IMAGE_EPOCH := 1767225600
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' meerkat/__init__.py)
# Baked-in weights: the shared offline MobileNetV2 when it is there, else the default backbone's
# (downloaded at build time, or taken from weights/ when the file is there).
ifneq ($(wildcard $(SHARED_WEIGHTS)),)
IMAGE_WEIGHTS_ARGS ?= --build-arg BACKBONE=mobilenet_v2 --build-arg ALPHA=0.35 \
  --build-arg WEIGHTS_FILE=$(notdir $(SHARED_WEIGHTS)) --build-arg WEIGHTS_URL= \
  --build-arg WEIGHTS_HASH=sha256:04af0032331eca800a501cbd14b1861ef1d07bfa5728325084bbe295e7ffaecb
endif
# Reproducible images: the same commit gives the same image id (make image-reproducible checks it).
# podman: the OCI format, whose config has no build host name and no build container id (the docker
# format's has both, and so every intermediate image had an id of its own, which the history names);
# IMAGE_EPOCH for every date and file time; no io.buildah.version label (it would tie the id
# to podman's version). Not --omit-history: podman 4.3 then never reuses a cached step, and OCI
# needs none (docs/containers-reproducible.md).
PODMAN_REPRO_FLAGS = --format oci --identity-label=false --timestamp $(IMAGE_EPOCH)
# docker (BuildKit) dates the config and the history from the SOURCE_DATE_EPOCH build arg below.
# Its layers' file times need the exporter's rewrite-timestamp=true (BuildKit 0.13 or later), which
# is unchecked here (no Docker engine), so it is yours to add, e.g.
#   make image DOCKER_REPRO_FLAGS="--provenance=false --output type=docker,rewrite-timestamp=true"
DOCKER_REPRO_FLAGS ?=
BUILD_FLAGS = $(IMAGE_WEIGHTS_ARGS) \
  $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
  $(if $(CA_BUNDLE),--secret id=ca_bundle$(,)src=$(CA_BUNDLE)) \
  $(if $(filter podman,$(CONTAINER_ENGINE)),$(PODMAN_REPRO_FLAGS),$(DOCKER_REPRO_FLAGS)) \
  --build-arg SOURCE_DATE_EPOCH=$(IMAGE_EPOCH) \
  --build-arg VERSION=$(VERSION) \
  --build-arg REVISION=$(shell git rev-parse HEAD 2>/dev/null || echo unknown) \
  --build-arg SOURCE=$(shell git config --get remote.origin.url 2>/dev/null) \
  --build-arg CREATED=$(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
, := ,
SIF ?= build/meerkat.sif
# Apptainer where it is installed; else Debian sid's, run from a cached rootfs (root needed).
APPTAINER ?= $(shell command -v apptainer >/dev/null && echo apptainer || echo scripts/apptainer-here.sh)
# Root without CAP_SYS_RESOURCE (as here) cannot run %test inside `build`; sif-test runs it with --no-privs.
SIF_BUILD_FLAGS ?= $(if $(filter scripts/apptainer-here.sh,$(APPTAINER)),--notest)

.PHONY: help install deepmeerkat-env megadetector-env chromium browser-test test test-fast run bench bench-sort slurm-test clean base-image weights-context image image-reproducible image-gpu image-test-gpu doctor-gpu smoke lint sif sif-test

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create the venv with pinned dependencies and meerkat in it

$(VENV)/.installed: requirements/cpu.lock requirements/test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/cpu.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# DeepMeerkat 3.1.4 (MIT), the reference that tests/test_deepmeerkat.py and benchmarks/video_bench.py
# compare with, in a venv of its own: it is never a dependency of meerkat. Its motion pipeline needs
# only numpy and OpenCV, pinned to the same versions and hashes as in requirements/cpu.lock.
DEEPMEERKAT_VENV := build/deepmeerkat-venv
DEEPMEERKAT_PIN := deepmeerkat==3.1.4 --hash=sha256:52a9852c9bdbe6ca6bf8f535d8d0e492034e808aa0f9073eeeac061341e741ed
deepmeerkat-env: $(DEEPMEERKAT_VENV)/.installed ## Create build/deepmeerkat-venv: DeepMeerkat 3.1.4 for the comparison tests

$(DEEPMEERKAT_VENV)/.installed: requirements/cpu.lock
	rm -rf $(DEEPMEERKAT_VENV)
	mkdir -p build
	sed -n -E '/^(numpy|opencv-python-headless)==/,/[^\\]$$/p' requirements/cpu.lock > build/deepmeerkat-base.txt
	test "$$(grep -c '==' build/deepmeerkat-base.txt)" = 2
	echo '$(DEEPMEERKAT_PIN)' > build/deepmeerkat-pin.txt
	$(PYTHON) -m venv $(DEEPMEERKAT_VENV)
	$(DEEPMEERKAT_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r build/deepmeerkat-base.txt
	$(DEEPMEERKAT_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r build/deepmeerkat-pin.txt
	$(DEEPMEERKAT_VENV)/bin/python -c "import deepmeerkat.motion_pipeline"
	touch $@

# MegaDetector's own tools (megadetector-utils 10.0.28, MIT): tests/megadetector_tools.py runs their
# validator, preview page and CSV converter on the files meerkat reads and writes. A venv of its own:
# they pull opencv-python and pandas, and are never a dependency of meerkat. requirements/megadetector.lock
# pins their requirements (scripts/lock.py), this pin the package itself, installed without its
# requirement `clipboard`, which PyPI has only as a source archive and no tool used here imports.
MEGADETECTOR_VENV := build/megadetector-venv
MEGADETECTOR_PIN := megadetector-utils==10.0.28 --hash=sha256:bd4835b1484b6493abdec9db0b814011fb4cb0a41124c03c8b9495b498d383f2
megadetector-env: $(MEGADETECTOR_VENV)/.installed ## Create build/megadetector-venv: MegaDetector's tools for the format tests

$(MEGADETECTOR_VENV)/.installed: requirements/megadetector.lock
	rm -rf $(MEGADETECTOR_VENV)
	mkdir -p build
	echo '$(MEGADETECTOR_PIN)' > build/megadetector-pin.txt
	$(PYTHON) -m venv $(MEGADETECTOR_VENV)
	$(MEGADETECTOR_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/megadetector.lock
	$(MEGADETECTOR_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r build/megadetector-pin.txt
	$(MEGADETECTOR_VENV)/bin/python -c "from megadetector.postprocessing import validate_batch_results, \
	  postprocess_batch_results, convert_output_format; from megadetector.detection import process_video"
	touch $@

# pytest-xdist shares the test files between TEST_WORKERS processes, each file whole in one, so a
# file's module fixtures train once. Here (2 cores) make test took 1272 s in one process and 754 s
# in two; TEST_WORKERS=0 runs them all in this one.
TEST_WORKERS ?= 2
test: install deepmeerkat-env megadetector-env chromium ## Run the unit and end-to-end tests (images, SIF, SLURM: smoke, sif-test, slurm-test)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install deepmeerkat-env megadetector-env chromium ## The edit loop: the tests that take under a second (about 40 s)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Headless Chromium renders report/index.html in tests/test_report_page.py; Selenium drives it through
# chromium-driver in the sorting page's tests (tests/browser.py). Debian's packages, installed when missing
# (apt-get: root, as here and in CI); elsewhere the browser tests skip (CI=true: they fail).
CHROMIUM := $(firstword $(foreach c,chromium chromium-browser google-chrome,$(shell command -v $(c) 2>/dev/null)))
CHROMEDRIVER := $(shell command -v chromedriver 2>/dev/null)
CHROMIUM_MISSING := $(strip $(if $(CHROMIUM),,chromium) $(if $(CHROMEDRIVER),,chromium-driver))
chromium: ## Install Debian's chromium and chromium-driver for the browser tests, if missing (needs root)
ifneq ($(CHROMIUM_MISSING),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing $(CHROMIUM_MISSING) (apt-get) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_MISSING) >/dev/null; \
	else \
	  echo "$(CHROMIUM_MISSING) missing and this is not root: the browser tests will skip (sudo make chromium installs it)"; \
	fi
endif

browser-test: install chromium ## Render a report in headless Chromium; screenshots in build/report*.png
	$(BIN)/python -m pytest tests/test_report_page.py $(PYTEST_ARGS)

run: install ## Train: make run SAMPLES=path/to/Samples OUTPUT=path/to/Output (no SAMPLES: a demo set)
ifeq ($(SAMPLES),)
	$(BIN)/meerkat demo-samples $(DEMO_SAMPLES)
	$(BIN)/meerkat run $(DEMO_SAMPLES) $(OUTPUT) $(RUN_FLAGS)
else
	$(BIN)/meerkat run $(SAMPLES) $(OUTPUT) $(RUN_FLAGS)
endif

base-image: ## Make localhost/debian-py:bookworm from the Debian mirror (no registry needed)
	CONTAINER_ENGINE=$(CONTAINER_ENGINE) scripts/make-base-image.sh localhost/debian-py:bookworm

weights-context:
ifneq ($(wildcard $(SHARED_WEIGHTS)),)
	cp -f $(SHARED_WEIGHTS) weights/
endif

# Dockerfile and Dockerfile.gpu are the same file but for `ARG VARIANT=cpu|gpu` (tests/test_dockerfiles.py).
# podman 4.3 (buildah 1.28) ignores that default when it resolves `FROM base-${VARIANT}`, so each build
# also passes its file's own value.
variant = --build-arg VARIANT=$(shell sed -n 's/^ARG VARIANT=//p' $(1))

# The last line of image and image-gpu: the image id to cite, and what `meerkat doctor` shows of it.
image-id = CONTAINER_ENGINE=$(CONTAINER_ENGINE) scripts/image-id.sh $(1)

image: weights-context ## Build the CPU image (tag $(IMAGE)), after its test stage; its last line: the id to cite
	$(CONTAINER_ENGINE) build $(BUILD_FLAGS) $(call variant,Dockerfile) --target test -t $(IMAGE)-test -f Dockerfile .
	$(CONTAINER_ENGINE) build $(BUILD_FLAGS) $(call variant,Dockerfile) -t $(IMAGE) -f Dockerfile .
	@$(call image-id,$(IMAGE))

# A second build of $(IMAGE) from nothing (3 to 7 minutes here), which must give the same id. CI calls
# it instead of make image: a second, cached make image would still take a minute.
image-reproducible: image ## Rebuild the CPU image without cache; fail unless its id is make image's
	mkdir -p build
	$(CONTAINER_ENGINE) build --no-cache $(BUILD_FLAGS) $(call variant,Dockerfile) --iidfile build/rebuild.iid \
	  -t $(IMAGE)-rebuild -f Dockerfile .
	@CONTAINER_ENGINE=$(CONTAINER_ENGINE) scripts/image-reproducible.sh $(IMAGE) $(IMAGE)-rebuild "$$(cat build/rebuild.iid)"

image-test-gpu: weights-context ## Build only the CUDA image's test stage (tag $(IMAGE_GPU)-test)
	$(CONTAINER_ENGINE) build $(BUILD_FLAGS) $(call variant,Dockerfile.gpu) --target test -t $(IMAGE_GPU)-test -f Dockerfile.gpu .

image-gpu: image-test-gpu ## Build the CUDA image (tag $(IMAGE_GPU)), after its test stage; its last line: the id to cite
	$(CONTAINER_ENGINE) build $(BUILD_FLAGS) $(call variant,Dockerfile.gpu) -t $(IMAGE_GPU) -f Dockerfile.gpu .
	@$(call image-id,$(IMAGE_GPU))

doctor-gpu: ## Run `meerkat doctor` in the CUDA image (here: no GPU, so the CPU fallback)
	$(CONTAINER_ENGINE) run --rm $(IMAGE_GPU) doctor

smoke: install ## Smoke-train in the built image: read-only root, read-only Samples, --user 12345
	TEST_IMAGE=$(IMAGE) CONTAINER_ENGINE=$(CONTAINER_ENGINE) $(BIN)/python -m pytest tests/test_image.py $(PYTEST_ARGS)

# Every shell script of the repo; the .sbatch files source examples/slurm/meerkat.sh (-x follows it).
SHELL_SCRIPTS := entrypoint/entrypoint.sh $(wildcard scripts/*.sh examples/slurm/*.sh examples/slurm/*.sbatch) .ci/run
LINTERS := "$(BIN)/ruff check ." "$(BIN)/ruff format --check ." "$(BIN)/lint-imports" \
  "$(BIN)/shellcheck -x $(SHELL_SCRIPTS)" "$(BIN)/hadolint Dockerfile Dockerfile.gpu"
lint: install ## ruff, the import contracts (lint-imports), shellcheck, hadolint: runs all, fails if one fails
	@rc=0; for cmd in $(LINTERS); do echo "$$cmd"; $$cmd || rc=1; done; exit $$rc

sif: ## Build $(SIF) from the image $(IMAGE) with apptainer.def; its last line: its sha256 to cite
	mkdir -p build
	rm -f build/meerkat.tar
	$(CONTAINER_ENGINE) save $(if $(filter podman,$(CONTAINER_ENGINE)),--format docker-archive) -o build/meerkat.tar $(IMAGE)
	$(APPTAINER) build --force $(SIF_BUILD_FLAGS) $(SIF) apptainer.def
	rm -f build/meerkat.tar
	@# A SIF has ids of its own (docs/containers-reproducible.md): cite its sha256 and the image's id.
	@id=$$($(CONTAINER_ENGINE) image inspect --format '{{.Id}}' $(IMAGE)); \
	  echo "$(SIF): sha256:$$(sha256sum $(SIF) | cut -d' ' -f1), from $(IMAGE) image id sha256:$${id#sha256:}"

sif-test: install ## Smoke-train with `apptainer run` on the SIF (after make image sif)
	TEST_SIF=$(SIF) APPTAINER=$(APPTAINER) $(BIN)/python -m pytest tests/test_sif.py $(PYTEST_ARGS)

SLURM_STATE ?= build/slurm
slurm-test: install ## Start a one-node SLURM (slurm-wlm + munge), run examples/slurm against it, stop it
	@set -e; conf=$$(scripts/slurm-here.sh start $(SLURM_STATE)); eval "$$conf"; \
	trap 'scripts/slurm-here.sh stop $(SLURM_STATE)' EXIT; \
	PATH=$(CURDIR)/$(BIN):$$PATH TEST_SLURM=1 \
	  $(if $(wildcard $(SIF)),TEST_SLURM_SIF=$(abspath $(SIF)) APPTAINER=$(if $(findstring /,$(APPTAINER)),$(abspath $(APPTAINER)),$(APPTAINER))) \
	  $(BIN)/python -m pytest tests/test_slurm.py $(PYTEST_ARGS)

BENCH_ARGS ?=
# benchmarks/video_bench.py: clips and scan against DeepMeerkat 3.1.4, e.g. BENCH_VIDEO_ARGS="--quick".
BENCH_VIDEO_ARGS ?=
# benchmarks/detections_bench.py: scan --detections against clips --detections + predict on 4000x3000
# frames, e.g. BENCH_DETECTIONS_ARGS="--quick".
BENCH_DETECTIONS_ARGS ?=
# benchmarks/season_bench.py: memory and seconds of a season's MegaDetector file (read, merge, write),
# e.g. BENCH_SEASON_ARGS="--images 1000000".
BENCH_SEASON_ARGS ?=
# benchmarks/species_bench.py: a whole multi-class run (ENA24's 7 species, 10 digit classes) and its top-1
# against a plain Keras softmax head on the same embeddings, e.g. BENCH_SPECIES_ARGS="--repeats 3".
BENCH_SPECIES_ARGS ?=
# benchmarks/sort_bench.py: meerkat sort's thumbnails against decoding the crops, and the page's first screen
# of 20,000 crops in headless Chromium, e.g. BENCH_SORT_ARGS="--repeats 5".
BENCH_SORT_ARGS ?=
bench: install ## Measure throughput, run times, cache and memory: BENCH_ARGS="--n 11000 ..."
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
	$(MAKE) --no-print-directory deepmeerkat-env megadetector-env
	$(BIN)/python benchmarks/video_bench.py $(BENCH_VIDEO_ARGS)
	$(BIN)/python benchmarks/detections_bench.py $(BENCH_DETECTIONS_ARGS)
	$(BIN)/python benchmarks/season_bench.py $(BENCH_SEASON_ARGS)
	$(BIN)/python benchmarks/species_bench.py $(BENCH_SPECIES_ARGS)
	$(MAKE) --no-print-directory bench-sort

bench-sort: install chromium ## The sorting page: thumbnails against decoding, first screen of 20,000 crops
	$(BIN)/python benchmarks/sort_bench.py $(BENCH_SORT_ARGS)

# Only what the build made: `make run` writes real models to output/ (OUTPUT), which stays.
clean: ## Remove the venv and build/ (your runs in output/ stay)
	rm -rf $(VENV) build
	@echo "Kept output/: make run's models and reports (remove it yourself when you no longer need them)"
