#!/bin/sh
# Container entrypoint for the Docker/Podman image and the Apptainer SIF.
#   no arguments      -> meerkat run $MEERKAT_SAMPLES $MEERKAT_OUTPUT (default /data/Samples -> /data/Output)
#   run SAMPLES OUT   -> the same on other paths
#   anything else     -> passed to meerkat (doctor, preprocess, train, predict, tensorboard, --help ...)
# It works under any --user UID:GID, with --read-only --tmpfs /tmp, and in a read-only SIF where
# $HOME is the host's: every cache goes to a writable place.
set -eu

writable() { mkdir -p "$1" 2>/dev/null && [ -w "$1" ] && touch "$1/.meerkat-probe" 2>/dev/null && rm -f "$1/.meerkat-probe"; }

export TMPDIR="${TMPDIR:-/tmp}"
if [ -z "${HOME:-}" ] || [ "$HOME" = / ] || ! writable "$HOME"; then
  # An arbitrary --user has no passwd entry and HOME=/; a read-only root has no writable home.
  HOME="$TMPDIR/meerkat-home-$(id -u)"
  export HOME
  mkdir -p "$HOME"
fi
export KERAS_HOME="${KERAS_HOME:-$HOME/.keras}"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
mkdir -p "$KERAS_HOME" "$XDG_CACHE_HOME" 2>/dev/null || true

export MEERKAT_SAMPLES="${MEERKAT_SAMPLES:-/data/Samples}"
export MEERKAT_OUTPUT="${MEERKAT_OUTPUT:-/data/Output}"
# `tensorboard`: a container has a network of its own, so it must answer on every address for
# `-p 6006:6006` to reach it. Apptainer shares the host's network: there it stays on loopback.
if [ -z "${APPTAINER_CONTAINER:-}${SINGULARITY_CONTAINER:-}" ]; then
  export MEERKAT_TENSORBOARD_HOST="${MEERKAT_TENSORBOARD_HOST:-0.0.0.0}"
fi

if [ "$#" -eq 0 ]; then
  set -- run "$MEERKAT_SAMPLES" "$MEERKAT_OUTPUT"
fi
if [ "$1" = run ] && [ "$#" -ge 3 ]; then
  case "$2" in -*) ;; *)
    # Refuse a wrong mount in one line, before TensorFlow starts. Preprocessed sets need no Samples.
    case " $* " in
      *" --preprocessed-train-set"*) meerkat doctor --mounts-only --output "$3" || exit $? ;;
      *) meerkat doctor --mounts-only --samples "$2" --output "$3" || exit $? ;;
    esac
    ;;
  esac
fi
exec meerkat "$@"
