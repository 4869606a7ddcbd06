#!/bin/sh
# Container entrypoint for the Docker/Podman image and the Apptainer SIF.
#   no arguments      -> meerkat run $MEERKAT_SAMPLES $MEERKAT_OUTPUT (default /data/Samples -> /data/Output)
#   anything else     -> passed to meerkat (run SAMPLES OUT, doctor, preprocess, train, predict, tensorboard, --help ...)
# `meerkat run` refuses a missing mount in one line before TensorFlow starts: in the image it checks
# the folders it will use, read as every option is read (the command line, then MEERKAT_*).
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
# `tensorboard` and `sort`: in a network of its own (Docker's or Podman's default) they must answer on
# every address of the container for `-p 127.0.0.1:6006:6006` (8765 for sort) to reach them. With --network host, or under
# Apptainer, the network is the host's: there it stays on loopback.
own_network() {
  # Recent kernels (6.18) number the host's namespace 0xEFFFFFF9; older ones number it as any other.
  [ "$(readlink /proc/self/ns/net 2>/dev/null)" != "net:[4026531833]" ] || return 1
  # A container's own network has virtual interfaces only (lo, veth, tap); the host's has a device.
  for iface in /sys/class/net/*; do
    case "$(readlink "$iface")" in */devices/virtual/*) ;; *) return 1 ;; esac
  done
}
if [ -z "${APPTAINER_CONTAINER:-}${SINGULARITY_CONTAINER:-}" ] && own_network; then
  export MEERKAT_TENSORBOARD_HOST="${MEERKAT_TENSORBOARD_HOST:-0.0.0.0}"
  export MEERKAT_SORT_HOST="${MEERKAT_SORT_HOST:-0.0.0.0}"  # its token guards it there
fi

if [ "$#" -eq 0 ]; then
  set -- run "$MEERKAT_SAMPLES" "$MEERKAT_OUTPUT"
fi
exec meerkat "$@"
