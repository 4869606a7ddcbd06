#!/usr/bin/env bash
# Make a local Python base image from the Debian mirror, for machines that cannot pull from a
# registry (air-gapped sites, CI here): debootstrap a minimal bookworm with python3, then import it.
#
#   scripts/make-base-image.sh [IMAGE]        default IMAGE: localhost/debian-py:bookworm
#
# Environment: CONTAINER_ENGINE (podman or docker), DEBIAN_MIRROR (default: this machine's apt
# mirror), MEERKAT_CACHE (where the rootfs tarball is kept between runs; default ~/.cache/meerkat).
set -euo pipefail

image=${1:-localhost/debian-py:bookworm}
engine=${CONTAINER_ENGINE:-podman}
cache=${MEERKAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meerkat}
tarball=$cache/debian-py-bookworm.tar

if "$engine" image exists "$image" 2>/dev/null || "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already present"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
  mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
  [ -n "$mirror" ] || { echo "error: no Debian mirror found; set DEBIAN_MIRROR" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >/dev/null
  # Behave like the official python image: pip may install, and `python` exists.
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$cache"
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi
"$engine" import --change 'CMD ["python3"]' "$tarball" "$image" >/dev/null
echo "base image $image imported from $tarball"
