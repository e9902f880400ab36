#!/usr/bin/env bash
# Create .venv and install BrainScale into it (CPU torch, no CUDA wheels).
#   scripts/setup.sh          the application
#   scripts/setup.sh --test   the application and the test tools
# BRAINSCALE_TORCH overrides the torch requirement (e.g. "torch==2.13.0" on CUDA hosts
# with a CUDA wheel index configured); BRAINSCALE_VENV overrides the venv location.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BRAINSCALE_VENV:-.venv}"
torch_spec="${BRAINSCALE_TORCH:-torch==2.13.0}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "BrainScale needs Python >= 3.11" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# Torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
"$venv/bin/python" -m pip install --quiet "$torch_spec"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
"$venv/bin/python" -m pip install --quiet -e ".${extras}"
"$venv/bin/brainscale" --version
