#!/bin/bash
# Submit BrainScale on Slurm: one array task per participant, then the dependent group job.
#
#   scripts/slurm/submit.sh BIDS_DIR OUTPUT_DIR [participant options]
#
# Environment (optional):
#   PARTICIPANTS="01 02"     only these participants (default: every sub-* folder of BIDS_DIR)
#   GROUP_ARGS="--target dx" options for the group level only
#   SBATCH_ARGS="-p long"    extra sbatch options for both jobs (also: SBATCH_* variables)
#   BRAINSCALE_CMD           how to start BrainScale (default: run.py; see participant.sbatch)
#   SKIP_GROUP=1             submit the participant array only
# Prints "<array job id> <group job id>".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 2 ]; then
  echo "usage: $0 BIDS_DIR OUTPUT_DIR [participant options]" >&2
  exit 64
fi
bids_dir="$(realpath "$1")" output_dir="$(realpath -m "$2")"
shift 2
if [ -n "${PARTICIPANTS:-}" ]; then
  read -r -a labels <<< "$PARTICIPANTS"
  set -- --participant-label "${labels[@]}" "$@"
else
  mapfile -t labels < <(find "$bids_dir" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' | sort)
fi
count=${#labels[@]}
if [ "$count" -eq 0 ]; then
  echo "no participants (sub-* folders) in $bids_dir" >&2
  exit 66
fi
mkdir -p "$output_dir/logs/slurm"
export BRAINSCALE_CMD="${BRAINSCALE_CMD:-run.py}"
# shellcheck disable=SC2086
array_id=$(sbatch --parsable ${SBATCH_ARGS:-} --array="0-$((count - 1))" \
  --output="$output_dir/logs/slurm/participant_%A_%a.log" \
  "$here/participant.sbatch" "$bids_dir" "$output_dir" "$@")
array_id=${array_id%%;*}
group_id=""
if [ -z "${SKIP_GROUP:-}" ]; then
  # shellcheck disable=SC2086
  group_id=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency="afterok:$array_id" \
    --kill-on-invalid-dep=yes --output="$output_dir/logs/slurm/group_%j.log" \
    "$here/group.sbatch" "$bids_dir" "$output_dir" ${GROUP_ARGS:-})
  group_id=${group_id%%;*}
fi
echo "$array_id $group_id"
