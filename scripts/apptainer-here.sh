#!/usr/bin/env bash
# Run `apptainer ARGS...` on a machine without Apptainer (Debian bookworm has none): Debian sid's
# apptainer, installed in a cached Debian trixie rootfs and entered with pivot_root in a private
# mount namespace, so every mount vanishes with the command. Needs root, debootstrap and a mirror.
# Sites with Apptainer installed do not need this: the Makefile calls `apptainer` directly there.
#
#   scripts/apptainer-here.sh build build/meerkat.sif apptainer.def
#   APPTAINER_BINDS="/data/in /data/out" scripts/apptainer-here.sh run --no-privs ... build/meerkat.sif
#
# The current folder and every path in APPTAINER_BINDS are visible inside at the same paths.
set -euo pipefail

cache=${MEERKAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meerkat}
rootfs=$cache/apptainer-trixie

if [ ! -x "$rootfs/usr/bin/apptainer" ]; then
  mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
  [ -n "$mirror" ] || { echo "error: no Debian mirror found; set DEBIAN_MIRROR" >&2; exit 1; }
  rm -rf "$rootfs.tmp"
  mkdir -p "$cache"
  echo "making the Apptainer rootfs in $rootfs (once, a few minutes)" >&2
  debootstrap --variant=minbase trixie "$rootfs.tmp" "$mirror" >/dev/null
  # apptainer is in sid only; take it and what it needs from there, the rest from trixie.
  echo "deb $mirror sid main" > "$rootfs.tmp/etc/apt/sources.list.d/sid.list"
  printf 'Package: *\nPin: release n=sid\nPin-Priority: 100\n' > "$rootfs.tmp/etc/apt/preferences.d/sid"
  echo 'Acquire::Check-Valid-Until "false";' > "$rootfs.tmp/etc/apt/apt.conf.d/99no-valid-until"
  cp /etc/resolv.conf "$rootfs.tmp/etc/resolv.conf"
  chroot "$rootfs.tmp" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apptainer/sid squashfs-tools >/dev/null && apt-get clean'
  mv "$rootfs.tmp" "$rootfs"
fi

# APPTAINER_BINDS is split at spaces (list folders without one); the current folder, which a SLURM
# job's --chdir may name with spaces, is bound on its own.
# shellcheck disable=SC2016  # the inner sh expands these, from its own arguments
exec unshare --mount --propagation private -- /bin/sh -euc '
  root=$1; cwd=$2; binds=$3; shift 3
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/tmp"
  for d in $binds; do mkdir -p "$root$d"; mount --bind "$d" "$root$d"; done
  mkdir -p "$root$cwd"
  mount --bind "$cwd" "$root$cwd"
  cd "$root"
  mkdir -p .old-root
  pivot_root . .old-root
  umount -l /.old-root
  cd "$cwd"
  exec /usr/bin/apptainer "$@"
' sh "$rootfs" "$PWD" "${APPTAINER_BINDS:-}" "$@"
