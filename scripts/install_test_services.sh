#!/usr/bin/env bash
# Install the services that the real-parts tests drive (../shared/RECIPES.md):
# a single-machine Slurm cluster (slurm-wlm, munge) and rootful podman with runc,
# buildah and debootstrap for the container image. Debian/Ubuntu, as root; idempotent.
#   scripts/install_test_services.sh
set -euo pipefail
packages=(slurm-wlm munge podman buildah runc debootstrap)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test services already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "installing ${missing[*]} needs root" >&2
  exit 77
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
