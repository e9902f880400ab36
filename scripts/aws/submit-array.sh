#!/bin/bash
# Submit BrainScale on AWS Batch: one array child per participant, then the group job.
#
#   scripts/aws/submit-array.sh QUEUE s3://bucket/bids s3://bucket/derivatives
#
# Once: aws batch register-job-definition --cli-input-json file://scripts/aws/job-definition.json
# (edit image, jobRoleArn with read access to the input and write access to the output
# prefix, and resources first). Child i gets AWS_BATCH_JOB_ARRAY_INDEX=i and processes the
# i-th participant of the sorted sub-* list; inputs are staged from S3 to /tmp (the host's
# /scratch) and outputs uploaded when the participant succeeded.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 JOB_QUEUE s3://BUCKET/BIDS s3://BUCKET/DERIVATIVES" >&2
  exit 64
fi
queue=$1 bids=${2%/} out=${3%/}
definition="${JOB_DEFINITION:-brainscale}"
count=$(aws s3 ls "$bids/" | awk '$1 == "PRE" && $2 ~ /^sub-/' | wc -l)
if [ "$count" -eq 0 ]; then
  echo "no sub-* folders under $bids/" >&2
  exit 66
fi
if [ "$count" -ge 2 ]; then  # Batch arrays have at least 2 children
  array=(--array-properties "size=$count")
else
  array=()
fi
participants=$(aws batch submit-job --job-name brainscale-participants --job-queue "$queue" \
  --job-definition "$definition" "${array[@]}" \
  --parameters "bids_dir=$bids,output_dir=$out,level=participant" \
  --query jobId --output text)
# A job that depends on an array job starts once every child succeeded.
group=$(aws batch submit-job --job-name brainscale-group --job-queue "$queue" \
  --job-definition "$definition" --depends-on "jobId=$participants" \
  --parameters "bids_dir=$bids,output_dir=$out,level=group" \
  --query jobId --output text)
echo "$participants $group"
