"""Benchmark the scale-out paths: concurrent array tasks and S3 staging (moto).

    python benchmarks/scale_out.py [--tasks 8] [--workdir DIR]

Prints wall time per stage and peak memory (ru_maxrss of this process and of its
children). Array tasks run the participant level with ``--reports-only`` (selection,
array mapping and every shared write, without the image processing).
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


def stage(name: str, started: float) -> float:
    now = time.monotonic()
    print(f"{name:<40s} {now - started:8.1f} s")
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="brainscale-bench-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    binaries = Path(sys.executable).parent
    t = time.monotonic()
    subprocess.run([binaries / "brainscale", "synth", str(root / "bids"), "--subjects",
                    str(args.tasks), "--sites", "2", "--modalities", "anat"], check=True,
                   capture_output=True, env=env)
    t = stage(f"synth ({args.tasks} participants, anat)", t)

    processes = [subprocess.Popen(
        [binaries / "run.py", str(root / "bids"), str(root / "out"), "participant",
         "--reports-only", "--skip-bids-validation", "-w", str(root / f"work{i}")],
        env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for i in range(args.tasks)]
    codes = [p.wait() for p in processes]
    t = stage(f"{args.tasks} concurrent array tasks (exit {set(codes)})", t)

    import boto3
    from moto import mock_aws

    from bids_app.run import main as run_main

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
        code = run_main(["s3://bench/bids", "s3://bench/out", "participant", "--reports-only",
                         "--skip-bids-validation"])
        t = stage(f"S3 stage-in, run, stage-out (exit {code})", t)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory: this process {own:.0f} MB, largest child {children:.0f} MB")
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
