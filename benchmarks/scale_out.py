"""Benchmark the scale-out paths: concurrent array tasks and S3 staging (moto).

    python benchmarks/scale_out.py [--tasks 8] [--t1w-voxel-mm 2] [--workdir DIR]
                                   [--participant-args="--modalities anat"]

Prints wall time per stage and peak memory (ru_maxrss of this process and of its
children). The array tasks and the S3 run process the synthetic demo data (T1w only)
with the real anatomical pipeline, one process each; ``--participant-args=--reports-only``
measures only selection, array mapping, the shared writes and the staging.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brainscale.bids_app.synth import SynthSpec, generate_dataset


def stage(name: str, started: float) -> float:
    now = time.monotonic()
    print(f"{name:<40s} {now - started:8.1f} s")
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--t1w-voxel-mm", type=float, default=2.0)
    parser.add_argument("--participant-args", default="--modalities anat",
                        help="participant-level options of every task")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    participant = ["--skip-bids-validation", "--nprocs", "1", *args.participant_args.split()]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="brainscale-bench-"))
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg",
                      ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")  # also for the in-process S3 run
    env = dict(os.environ)
    binaries = Path(sys.executable).parent
    t = time.monotonic()
    generate_dataset(root / "bids", SynthSpec(subjects=args.tasks, sites=2, modalities=("anat",),
                                              t1w_voxel_mm=args.t1w_voxel_mm))
    t = stage(f"synth ({args.tasks} participants, T1w {args.t1w_voxel_mm:g} mm)", t)

    processes = [subprocess.Popen(
        [binaries / "run.py", str(root / "bids"), str(root / "out"), "participant",
         *participant, "-w", str(root / f"work{i}")],
        env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for i in range(args.tasks)]
    codes = [p.wait() for p in processes]
    t = stage(f"{args.tasks} concurrent array tasks (exit {set(codes)})", t)

    import boto3
    from moto import mock_aws

    from brainscale.bids_app.run import main as run_main

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", BRAINSCALE_SCRATCH=str(root / "scratch"))
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        for path in (root / "bids").rglob("*"):
            if path.is_file():
                client.upload_file(str(path), "bench", f"bids/{path.relative_to(root / 'bids')}")
        t = stage("upload dataset to (mock) S3", t)
        os.environ["AWS_BATCH_JOB_ARRAY_INDEX"] = "0"
        code = run_main(["s3://bench/bids", "s3://bench/out", "participant", *participant,
                         "-w", str(root / "work-s3")])
        t = stage(f"S3 stage-in, run, stage-out (exit {code})", t)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory: this process {own:.0f} MB, largest child {children:.0f} MB")
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
