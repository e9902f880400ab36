#!/usr/bin/env bash
# Run the CircleCI pipeline (.circleci/config.yml, jobs build and test) locally with podman.
# Each "== <name>" below is the CircleCI step of the same name, with the same arguments;
# tests/integration/test_containers.py checks that the two stay in step.
#
#   scripts/ci_local.sh                  build, then test on 2 synthetic participants
# Environment (optional):
#   IMAGE=localhost/brainscale:latest    image tag;  SKIP_BUILD=1  reuse an existing image
#   CI_ROOT=/tmp/brainscale-ci           where test data, outputs and the image tarball go
#   PARTICIPANT_ARGS="--modalities anat" extra options for the participant level
set -euo pipefail
cd "$(dirname "$0")/.."
image="${IMAGE:-localhost/brainscale:latest}"
root="${CI_ROOT:-/tmp/brainscale-ci}"
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF="${TMPDIR:-/tmp}/brainscale-containers.conf"
  printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
fi
engine=(podman --runtime runc)
step() { echo "== $1 ($(date -u +%T))"; }
start=$(date +%s)

if [ -z "${SKIP_BUILD:-}" ]; then
  step "Build the image"
  scripts/build_image.sh "$image"
fi
step "Save the image"
mkdir -p "$root/cache"
"${engine[@]}" save -o "$root/cache/image.tar" "$image" >/dev/null
ls -lh "$root/cache/image.tar"

step "Version"
"${engine[@]}" run --rm --read-only --tmpfs /tmp "$image" --version

step "Synthetic test data"
rm -rf "$root/data" "$root/out"
mkdir -p "$root/data" "$root/out"
"${engine[@]}" run --rm --read-only --tmpfs /tmp -v "$root/data:/data" --entrypoint brainscale \
  -u "$(id -u):$(id -g)" "$image" synth /data/bids --subjects 2 --sites 2

step "Participant level"
# shellcheck disable=SC2086
"${engine[@]}" run --rm --read-only --tmpfs /tmp -u "$(id -u):$(id -g)" \
  -v "$root/data/bids:/data:ro" -v "$root/out:/out" \
  "$image" /data /out participant --participant-label 01 02 ${PARTICIPANT_ARGS:-}

step "Group level"
"${engine[@]}" run --rm --read-only --tmpfs /tmp -u "$(id -u):$(id -g)" \
  -v "$root/data/bids:/data:ro" -v "$root/out:/out" \
  "$image" /data /out group
test -f "$root/out/group/group.html"
echo "CI (local) passed in $(( $(date +%s) - start )) s; outputs in $root/out"
