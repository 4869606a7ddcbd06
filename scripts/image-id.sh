#!/usr/bin/env bash
# The line to cite a built image by (the last line of `make image` and `make image-gpu`):
#
#   scripts/image-id.sh IMAGE
#   meerkat:cpu: image id sha256:..., digest sha256:..., files sha256:..., revision ...
#
# image id: the engine's id, the sha256 of the image's config, which names every layer by its digest;
#   `podman images --no-trunc` and `docker images --no-trunc` show it. One commit builds one id.
# digest: podman's manifest digest before any push (`podman images --digests`). A registry stores
#   compressed layers and so gives a digest of its own; `podman push --digestfile` writes that one.
# files, revision: what `meerkat doctor` prints inside the container (from /opt/meerkat/image.json),
#   so its output can be matched with this line. Environment: CONTAINER_ENGINE (podman or docker).
set -euo pipefail

image=${1:?usage: scripts/image-id.sh IMAGE}
engine=${CONTAINER_ENGINE:-podman}

id=$("$engine" image inspect --format '{{.Id}}' "$image")
digest=
if [ "$engine" = podman ]; then
  digest=$("$engine" image inspect --format '{{.Digest}}' "$image")
fi
info=$("$engine" run --rm --network none --entrypoint cat "$image" /opt/meerkat/image.json)
field() { printf '%s\n' "$info" | sed -n "s/^ *\"$1\": \"\\([^\"]*\\)\".*/\\1/p"; }
echo "$image: image id sha256:${id#sha256:}${digest:+, digest $digest}, files $(field files), revision $(field revision)"
