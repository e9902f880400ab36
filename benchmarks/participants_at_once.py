"""Benchmark throughput of one command with 1 or more participants at a time.

    python benchmarks/participants_at_once.py [--subjects 4] [--nprocs 2] [--at-once 1 2]
                                              [--modalities func] [--workdir DIR]

For each ``--participants-at-once`` value the same synthetic participants are processed
from scratch (fresh work directory) by one ``run.py ... participant --nprocs N``
command. Prints, per setting: wall time, CPU time of the command and all its children
(user + system, from ``wait4``), CPU use (CPU time / wall time / nprocs), participants
per hour and the peak resident memory of the largest process.

Measured 2026-12-01 on the shared 2-core machine (load average falling from ~8 to ~1
during the runs), 2 synthetic participants, ``--modalities func`` (20-volume BOLD, no
T1w), ``--nprocs 2``::

     at once  exit   wall s    CPU s  CPU use  part./h  peak MB
           1     0    124.4     54.0      22%     57.9      854
           2     0     57.0     35.1      31%    126.4      880

One participant's graph is mostly a chain (reference -> motion -> coregistration ->
resampling -> confounds -> connectivity), so MultiProc keeps few of its processes busy;
two participants side by side fill them. Expectation on 16 cores with 64 GB: the
automatic setting runs 8 participants at once with 2 processes each, i.e. about
8 x the single-participant throughput of a 2-process run, bounded by memory (6 GB
budgeted per participant, an estimate; the largest process here peaks at 0.9 GB) and by
disk I/O. CPU time here is noisy: the machine was shared with other jobs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brainscale.bids_app.synth import SynthSpec, generate_dataset

REPO = Path(__file__).resolve().parents[1]


def run_once(bids_dir: Path, root: Path, nprocs: int, at_once: int,
             extra: list[str]) -> dict:
    """Process every participant with one command; return the measurements."""
    out, work = root / f"out_{at_once}", root / f"work_{at_once}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, str(REPO / "run.py"), str(bids_dir), str(out), "participant",
               "-w", str(work), "--nprocs", str(nprocs), "--participants-at-once",
               str(at_once), *extra]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        print(process.stderr.read().decode()[-2000:], file=sys.stderr)
    cpu = usage.ru_utime + usage.ru_stime
    return {"at_once": at_once, "exit": code, "wall_s": wall, "cpu_s": cpu,
            "cpu_use": cpu / wall / nprocs, "peak_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--at-once", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modalities", nargs="+", default=["func"])
    parser.add_argument("--bold-volumes", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-at-once-"))
    bids_dir = root / "bids"
    started = time.monotonic()
    if not (bids_dir / "participants.tsv").is_file():
        generate_dataset(bids_dir, SynthSpec(subjects=args.subjects, sites=1,
                                             modalities=tuple(args.modalities),
                                             bold_volumes=args.bold_volumes, directions=12))
    print(f"{'synthetic dataset':<28s} {time.monotonic() - started:8.1f} s  ({bids_dir})")
    print(f"{args.subjects} participant(s), --modalities {' '.join(args.modalities)}, "
          f"--nprocs {args.nprocs}, {os.cpu_count()} CPU(s) on this machine")
    print(f"{'at once':>8s} {'exit':>5s} {'wall s':>8s} {'CPU s':>8s} {'CPU use':>8s} "
          f"{'part./h':>8s} {'peak MB':>8s}")
    for at_once in args.at_once:
        result = run_once(bids_dir, root, args.nprocs, at_once,
                          ["--modalities", *args.modalities])
        per_hour = args.subjects / result["wall_s"] * 3600
        print(f"{at_once:>8d} {result['exit']:>5d} {result['wall_s']:>8.1f} "
              f"{result['cpu_s']:>8.1f} {result['cpu_use']:>8.0%} {per_hour:>8.1f} "
              f"{result['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
