# syntax=docker/dockerfile:1
# meerkat, CPU image. Build: `make image` (or see README "Docker").
#   docker build -t meerkat:cpu .
#   docker run --rm -v $PWD/Samples:/data/Samples:ro -v $PWD/Output:/data/Output --user $(id -u):$(id -g) meerkat:cpu
# Air-gapped builds: --build-arg BASE_IMAGE=<local python image> (scripts/make-base-image.sh makes one)
# and the weights file in weights/. Behind a TLS-intercepting proxy: --secret id=ca_bundle,src=CA.pem.
ARG VARIANT=cpu
# Everything below this line is the same in Dockerfile and Dockerfile.gpu (tests/test_dockerfiles.py
# checks it): what differs by VARIANT is the lock file, the base-cpu/base-gpu stage and the test.

# python:3.11-slim-bookworm, pinned by digest so a rebuild starts from the same bytes.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
# Reproducible: the same commit gives the same image id (make image-reproducible checks it;
# docs/containers-reproducible.md). podman builds it in OCI format, which has no SHELL: every RUN
# says `set -eu` itself instead of a `SHELL ["/bin/sh", "-euc"]` that podman would ignore.

FROM ${BASE_IMAGE} AS builder
ARG VARIANT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY requirements/${VARIANT}.lock /tmp/requirements.lock
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock
COPY pyproject.toml README.md /src/
COPY meerkat /src/meerkat
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation /src \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE} AS weights
# The default backbone's ImageNet weights, baked in: compute nodes often cannot download.
ARG WEIGHTS_FILE=efficientnetv2-b0_notop.h5
ARG WEIGHTS_URL=https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b0_notop.h5
ARG WEIGHTS_HASH=md5:893217f2bb855e2983157299931e43ff
COPY scripts/fetch-weights.py /tmp/fetch-weights.py
COPY weights/ /tmp/weights/
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 /tmp/fetch-weights.py --file "${WEIGHTS_FILE}" --url "${WEIGHTS_URL}" --hash "${WEIGHTS_HASH}" \
      --local /tmp/weights --dest /opt/meerkat/weights

# The part of the runtime that depends on VARIANT: its description and, for CUDA, the NVIDIA settings.
FROM ${BASE_IMAGE} AS base-cpu
LABEL org.opencontainers.image.description="Trains DeepMeerkat's two-class crop classifiers (CPU)"

FROM ${BASE_IMAGE} AS base-gpu
LABEL org.opencontainers.image.description="Trains DeepMeerkat's two-class crop classifiers (CUDA)"
# Read by the NVIDIA container runtime: which GPUs to expose and which driver libraries to mount.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# base-${VARIANT} is one of the two stages above, not a registry image that could carry a tag.
# podman 4.3 (buildah 1.28) ignores VARIANT's default here: build with --build-arg VARIANT=..., as make does.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
ARG VARIANT
ARG BACKBONE=efficientnet_v2_b0
ARG ALPHA=
ARG WEIGHTS_FILE=efficientnetv2-b0_notop.h5
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
# BuildKit stamps the image with it; podman gets --timestamp from the Makefile. useradd takes
# /etc/shadow's date from it, so the layer below is the same on any day.
ARG SOURCE_DATE_EPOCH=0
ARG SOURCE=
# Above the RUN below, build arguments appear in RUN and COPY only: podman 4.3 finds a cached LABEL
# or ENV step by its text before expansion, so one that expands an argument would be reused from a build
# with another value (another commit's revision) and the history would name that build's
# intermediate image. A RUN's cache key holds every argument's value, so they go after it
# (tests/test_dockerfiles.py checks it).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONNOUSERSITE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEERKAT_WEIGHTS_DIR=/opt/meerkat/weights \
    MEERKAT_SAMPLES=/data/Samples \
    MEERKAT_OUTPUT=/data/Output
COPY --from=builder /opt/venv /opt/venv
COPY --from=weights /opt/meerkat/weights /opt/meerkat/weights
COPY entrypoint/ /opt/meerkat/entrypoint/
# A non-root default user; any --user UID:GID works too (the entrypoint finds writable caches).
# /data/Samples and /data/Output are mount points, root's and not writable: a run whose Output is not
# mounted would leave its model in the container (meerkat run refuses it, as root too).
# Last, once every file is in place: /opt/meerkat/image.json, what `meerkat doctor` shows of the
# image (revision, date, a digest of the files under /opt and /usr; the build's last line shows it).
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp/meerkat-home-1000 meerkat \
    && mkdir -p /data/Samples /data/Output \
    && python -P -m meerkat.doctor --write /opt/meerkat/image.json \
      --revision "${REVISION}" --created "${CREATED}" --variant "${VARIANT}"
LABEL org.opencontainers.image.title="meerkat" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="GPL-3.0-or-later"
ENV MEERKAT_BACKBONE=${BACKBONE} \
    MEERKAT_ALPHA=${ALPHA} \
    MEERKAT_WEIGHTS=/opt/meerkat/weights/${WEIGHTS_FILE} \
    MEERKAT_REVISION=${REVISION}
USER 1000:1000
WORKDIR /data
# `tensorboard` serves OUTPUT/logs here (docker run -p 127.0.0.1:6006:6006 ... tensorboard).
EXPOSE 6006 8765
ENTRYPOINT ["/opt/meerkat/entrypoint/entrypoint.sh"]
CMD []

# `--target test`: the image imports and answers --help, no data needed, and its TensorFlow is built
# with CUDA exactly when VARIANT is gpu. No GPU at build time: a CUDA build falls back to the CPU.
FROM runtime AS test
ARG VARIANT
RUN meerkat --version && meerkat --help >/dev/null \
    && python -c "import sys, meerkat.train.export, meerkat.embed.preprocess, tensorflow as tf; \
      cuda = tf.test.is_built_with_cuda(); \
      assert cuda == (sys.argv[1] == 'gpu'), f'VARIANT={sys.argv[1]}, but is_built_with_cuda() is {cuda}'" "${VARIANT}"

FROM runtime
