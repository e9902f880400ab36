#!/usr/bin/env bash
# Build the BrainScale container image from a clean clone with one command.
#
#   scripts/build_image.sh [TAG]          (default tag: localhost/brainscale:latest)
#
# Uses docker when it is installed and podman otherwise (podman runs rootful with runc,
# as in ../shared/RECIPES.md). Environment knobs, all optional:
#   BRAINSCALE_WHEELS=/opt/wheels  a folder of local wheels (e.g. the CPU torch wheel) that
#                                  is bind-mounted into the build as pip find-links; used
#                                  automatically when /opt/wheels exists (podman only)
#   PREFETCH_TEMPLATEFLOW=0|1      fetch TemplateFlow atlases at build time (needs the
#                                  TemplateFlow S3 server; default: 1 when reachable)
#   TORCH_VARIANT=cpu|cuda         which torch build the image carries (default: cpu)
#   DEBIAN_MIRROR=URL              mirror for debootstrap when the base image cannot be
#                                  pulled (default: the first deb.debian.org-style URI apt uses)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/brainscale:latest}"
# PEP 440 version from git tags (vX.Y.Z), as setuptools-scm gives for `pip install .`:
# X.Y.Z on a tag, X.Y.Z.postN+gHASH N commits after it, 0.1.devN+gHASH before any tag.
pep440_version() {
  local desc hash distance tag
  if desc="$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null)"; then
    hash="${desc##*-g}"; desc="${desc%-g*}"; distance="${desc##*-}"; tag="${desc%-*}"
    tag="${tag#v}"
    if [ "$distance" = 0 ]; then echo "$tag"; else echo "$tag.post$distance+g$hash"; fi
  elif hash="$(git rev-parse --short=9 HEAD 2>/dev/null)"; then
    echo "0.1.dev$(git rev-list --count HEAD)+g$hash"
  else
    echo "0.0.0+unknown"
  fi
}
version="$(pep440_version)"
start=$(date +%s)

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=(docker)
  mounts=()
else
  command -v podman >/dev/null || { echo "neither docker nor podman is installed" >&2; exit 69; }
  # podman without systemd cgroups: no default ulimits, runc instead of crun.
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF="${TMPDIR:-/tmp}/brainscale-containers.conf"
    printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
  fi
  engine=(podman --runtime runc)
  mounts=()
  # The Docker Hub may be unreachable: bootstrap debian:bookworm-slim locally if needed.
  if ! podman image exists docker.io/library/debian:bookworm-slim \
     && ! podman pull -q docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "cannot pull debian:bookworm-slim and debootstrap is missing" >&2; exit 69; }
    mirror="${DEBIAN_MIRROR:-$( { grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
      | grep -oE 'https?://[^ ]+/debian/?' | head -n1)}"
    rootfs="$(mktemp -d)"
    echo "bootstrapping debian:bookworm-slim from ${mirror:-http://deb.debian.org/debian}"
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null
  fi
  wheels="${BRAINSCALE_WHEELS:-}"
  [ -z "$wheels" ] && [ -d /opt/wheels ] && wheels=/opt/wheels
  if [ -n "$wheels" ]; then
    # Local wheels (CPU torch) instead of download.pytorch.org.
    mounts+=(-v "$(realpath "$wheels"):/wheels-local:ro" --build-arg PIP_FIND_LINKS=/wheels-local
             --build-arg TORCH_CPU_INDEX=)
  fi
  # pip inside the build trusts the host's CA bundle (proxies with their own CA).
  for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$ca" ]; then mounts+=(-v "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt); break; fi
  done
  mounts+=(--network host)
fi

if [ -z "${PREFETCH_TEMPLATEFLOW:-}" ]; then
  PREFETCH_TEMPLATEFLOW=0
  if command -v curl >/dev/null && curl -sfI -m 10 https://templateflow.s3.amazonaws.com/ >/dev/null 2>&1; then
    PREFETCH_TEMPLATEFLOW=1
  fi
fi
# Build from the files git knows (tracked and untracked-but-not-ignored): a clean-clone
# context, without .venv, caches or earlier outputs.
context="$(mktemp -d)"
trap 'rm -rf "$context" ${rootfs:-}' EXIT
git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
  | tar --null -T - -c | tar -C "$context" -x
echo "building $tag (version $version, torch ${TORCH_VARIANT:-cpu}, templateflow prefetch $PREFETCH_TEMPLATEFLOW)"
"${engine[@]}" build "${mounts[@]}" \
  --build-arg VERSION="$version" \
  --build-arg TORCH_VARIANT="${TORCH_VARIANT:-cpu}" \
  --build-arg PREFETCH_TEMPLATEFLOW="$PREFETCH_TEMPLATEFLOW" \
  -t "$tag" "$context"
"${engine[@]}" run --rm --read-only --tmpfs /tmp "$tag" --version
echo "image $tag built in $(( $(date +%s) - start )) s"
