"""Benchmark the image models: training time per epoch and peak memory, CPU (or CUDA).

Each configuration runs in its own process (so that the peak resident memory is its
own): a memory-mapped ``(n, voxels)`` float32 cohort on the template brain mask at 2 mm
or block-averaged to 4 mm (:mod:`brainscale.workflows.group.voxel_inputs`), then

1. the per-voxel standardization pass over ``--rows`` rows (reads the memory map),
2. ``--batches`` training mini-batches of ``--batch-size`` maps (one ``fit`` of one epoch
   with no validation split, minus the standardization pass),

and extrapolates to one epoch over 80 % of ``n`` (the training rows of a 5-fold split):
``epoch = (0.8 n / batch) x time per batch + 0.8 n x standardization time per row``.
Wall times depend on what else runs on the machine: ``fit_cpu_s_per_batch`` is the
process CPU time of the fit (all threads) per batch, for comparison.
Only the rows the timed steps read are filled; the rest of the memory map is a sparse
file (reading real rows adds disk time, not compute; it is measured by stage 1's rate).

    OMP_NUM_THREADS=2 python benchmarks/bench_image_models.py                 # both sizes
    OMP_NUM_THREADS=2 python benchmarks/bench_image_models.py --sizes 500:4   # one size

The ViT uses 4-voxel patches at 4 mm and 8-voxel patches at 2 mm (the same 1,200-odd
tokens: 4-voxel patches at 2 mm would need ~9,600 tokens, whose attention matrices do
not fit in memory at batch 16).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainscale.resources import get_template_mask
from brainscale.workflows.group.image_models import SFCNClassifier, ViTClassifier
from brainscale.workflows.group.voxel_inputs import NO_SESSION, VoxelData, block_downsample


def peak_gb() -> float:
    """Peak resident memory of this process (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cohort(n: int, resolution: int, filled: int, folder: Path, seed: int = 0) -> VoxelData:
    """A memory-mapped cohort on the template mask with ``filled`` rows of random maps."""
    mask = np.asarray(get_template_mask(2).dataobj) > 0
    affine = get_template_mask(2).affine
    if resolution == 4:
        mask = block_downsample(mask.astype(np.float32), 2) >= 0.5
    path = folder / f"bench_{n}_{resolution}mm.npy"
    values = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                       shape=(n, int(mask.sum())))
    rng = np.random.default_rng(seed)
    for row in range(filled):
        values[row] = rng.normal(0.5, 0.2, size=values.shape[1]).astype(np.float32)
    values.flush()
    del values
    rows = pd.DataFrame({"participant_id": [f"sub-{i:05d}" for i in range(n)],
                         "session_id": NO_SESSION})
    return VoxelData(np.load(path, mmap_mode="r"), mask, affine, rows)


def run_one(n: int, resolution: int, model: str, batches: int, batch_size: int, device: str,
            folder: Path) -> dict:
    """Time one configuration in this process; return the numbers."""
    rows = batches * batch_size
    start = time.perf_counter()
    data = cohort(n, resolution, rows, folder)
    build_s = time.perf_counter() - start
    y = np.tile(["control", "patient"], rows // 2 + 1)[:rows]
    if model == "sfcn":
        estimator = SFCNClassifier(source=data, epochs=1, batch_size=batch_size,
                                   validation_fraction=0.0, device=device)
    else:
        estimator = ViTClassifier(source=data, patch_size=4 if resolution == 4 else 8,
                                  epochs=1, batch_size=batch_size, validation_fraction=0.0,
                                  device=device)
    pointers = data.row_pointers().iloc[:rows]
    estimator._set_grid(data.values.shape[1])
    read = estimator._reader(pointers)[0]
    start = time.perf_counter()
    estimator._fit_standardization(read, np.arange(rows))
    stats_s = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    estimator.fit(pointers, y)
    if estimator.device_.type == "cuda":
        torch.cuda.synchronize()
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    batch_s = max(fit_s - stats_s, 0.0) / batches
    n_train = int(0.8 * n)
    epoch_s = math.ceil(n_train / batch_size) * batch_s + n_train * stats_s / rows
    return {"n": n, "resolution_mm": resolution, "model": model, "voxels": data.values.shape[1],
            "grid": list(estimator.volume_shape_), "device": str(estimator.device_),
            "threads": torch.get_num_threads(), "timed_batches": batches,
            "batch_size": batch_size, "build_s": round(build_s, 2),
            "standardize_s_per_row": round(stats_s / rows, 5),
            "train_s_per_batch": round(batch_s, 3), "epoch_s_extrapolated": round(epoch_s, 1),
            "fit_cpu_s_per_batch": round(fit_cpu_s / batches, 3),
            "memmap_gb": round(n * data.values.shape[1] * 4 / 1024**3, 2),
            "peak_rss_gb": round(peak_gb(), 2)}


def main(argv=None) -> None:
    """Run every configuration in a child process and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["500:4", "10000:2"],
                        help="N:RESOLUTION_MM pairs (resolution 2 or 4)")
    parser.add_argument("--models", nargs="*", default=["sfcn", "vit"])
    parser.add_argument("--batches", type=int, default=8, help="timed mini-batches")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--single", nargs=3, metavar=("N", "RES", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        if args.single:
            n, resolution, model = int(args.single[0]), int(args.single[1]), args.single[2]
            print(json.dumps(run_one(n, resolution, model, args.batches, args.batch_size,
                                     args.device, Path(folder))))
            return
        for size in args.sizes:
            n, resolution = (int(v) for v in size.split(":"))
            for model in args.models:
                command = [sys.executable, __file__, "--single", str(n), str(resolution), model,
                           "--batches", str(args.batches), "--batch-size", str(args.batch_size),
                           "--device", args.device, "--workdir", folder]
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = result.stdout.strip().splitlines()
                print(lines[-1] if result.returncode == 0 and lines else
                      f"{size} {model}: failed: {result.stderr.strip().splitlines()[-1:]}",
                      flush=True)


if __name__ == "__main__":
    main()
