#!/usr/bin/env bash
# Compare an image with its rebuild from nothing (`make image-reproducible`): the same commit must
# give the same image id. Untags the rebuild; on a difference, says which parts of the config differ.
#
#   scripts/image-reproducible.sh IMAGE REBUILD_TAG REBUILD_ID
#
# Environment: CONTAINER_ENGINE (podman or docker).
set -euo pipefail

image=${1:?usage: scripts/image-reproducible.sh IMAGE REBUILD_TAG REBUILD_ID}
rebuild=${2:?}
second=${3:?}
engine=${CONTAINER_ENGINE:-podman}

first=$("$engine" image inspect --format '{{.Id}}' "$image")
first=sha256:${first#sha256:}
second=sha256:${second#sha256:}
echo "make image:          $first"
echo "rebuilt (no cache):  $second"
if [ "$first" = "$second" ]; then
  # The same id is the same image: the rebuild's tag is only a second name for it.
  "$engine" rmi "$rebuild" >/dev/null
  echo "reproducible: two builds from nothing, one image id"
  exit 0
fi

echo "error: not reproducible: the rebuild has another image id. What differs in the engine's view:" >&2
# The engine's view of each, less the names and ids that differ anyway.
show() {
  "$engine" image inspect "$1" | python3 -c 'import json, sys
d = json.load(sys.stdin)[0]
for k in ("Id", "Digest", "RepoTags", "RepoDigests", "Names", "NamesHistory"):
    d.pop(k, None)
print(json.dumps(d, indent=1, sort_keys=True))'
}
diff <(show "$image") <(show "$rebuild") >&2 || true
echo "Equal layers but other ids: compare the raw configs, e.g. $engine save --format oci-dir -o DIR IMAGE" \
  "for each, then DIR/index.json -> manifest -> config blob. The rebuild stays tagged $rebuild." >&2
exit 1
