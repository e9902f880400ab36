"""Benchmark the permutation test of a nested leave-site-out classifier (issue 14).

A synthetic cohort in memory (``--n-subjects`` x ``--n-regions`` connectome edges,
float32, ``--n-sites`` sites with a per-site location and scale effect on every edge,
a diagnosis effect on 40 edges, age as a protected covariate) goes through
:func:`brainscale.workflows.group.classify.evaluate_model` exactly as the group level runs it:
logistic regression with its default ``C`` grid chosen by the inner CV, ComBat and
univariate screening (5,000 features) fitted inside every training fold,
leave-one-site-out outer CV. Stages timed (wall and process CPU; peak RSS):

1. the observed nested CV (no permutation);
2. ``--loop-permutations`` permutations the plain way (the nested CV repeated per
   permutation, what the group level did before), giving CPU seconds per permutation;
3. ``--n-permutations`` permutations through the shared engine
   (:mod:`brainscale.workflows.group.classify_permutation`), in this process, with the CPU time
   of its shared part (the in-fold ComBat fits) measured apart;
4. with ``--n-jobs N`` > 1, the same on N workers (wall time is only meaningful on
   an otherwise idle machine).

Stages are timed in process CPU seconds so that a busy shared machine does not
distort them; the summary extrapolates to 100 permutations (shared part + 100 x the
per-permutation part) and to 2 cores (the outer folds are independent, so the CPU
time halves on 2 workers). The issue's target: 1,100 x 20,000, 20 sites, 100
permutations in <= 30 min on 2 cores, >= 8x the plain loop.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_group_permutations.py \\
        --n-subjects 1100 --n-regions 200 --n-sites 20 --n-permutations 100 --n-jobs 2
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from brainscale.workflows.group import classify_permutation
from brainscale.workflows.group.classify import evaluate_model


def peak_gb() -> float:
    """Peak resident memory of this process (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_cohort(n_subjects: int, n_regions: int, n_sites: int, seed: int):
    """Edges (float32 DataFrame) and covariates with site, age and diagnosis effects."""
    rng = np.random.default_rng(seed)
    n_edges = n_regions * (n_regions - 1) // 2
    sites = np.arange(n_subjects) % n_sites
    diagnosis = rng.integers(0, 2, n_subjects)
    age = rng.uniform(7, 60, n_subjects)
    edges = rng.normal(0, 1, (n_subjects, n_edges)).astype(np.float32)
    edges *= rng.uniform(0.7, 1.4, (n_sites, n_edges)).astype(np.float32)[sites]
    edges += rng.normal(0, 0.5, (n_sites, n_edges)).astype(np.float32)[sites]
    edges[:, :40] += 0.35 * diagnosis[:, None]
    edges += (0.01 * (age - 30)).astype(np.float32)[:, None]
    index = pd.Index([f"sub-{i:05d}" for i in range(n_subjects)])
    covars = pd.DataFrame(
        {
            "site": [f"site{s:02d}" for s in sites],
            "age": age,
            "diagnosis": np.where(diagnosis == 1, "ASD", "TD"),
        },
        index=index,
    )
    return pd.DataFrame(edges, index=index, copy=False), covars


def timed(label: str, **kwargs):
    """Run evaluate_model with ``kwargs``; print and return (process CPU s, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate_model(**kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{label:<52s} cpu {cpu:8.1f} s  wall {wall:8.1f} s  peak RSS {peak_gb():5.2f} GB",
        flush=True,
    )
    return cpu, result


class SharedWork:
    """Times the label-free part of the engine (the in-fold ComBat fits it shares)."""

    def __init__(self):
        self.cpu_s = 0.0
        self.original = classify_permutation._FoldData.__init__

    def __enter__(self):
        def timed_init(data, *args, **kwargs):
            start = time.process_time()
            self.original(data, *args, **kwargs)
            self.cpu_s += time.process_time() - start

        classify_permutation._FoldData.__init__ = timed_init
        return self

    def __exit__(self, *exc):
        classify_permutation._FoldData.__init__ = self.original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=1100)
    parser.add_argument("--n-regions", type=int, default=200)
    parser.add_argument("--n-sites", type=int, default=20)
    parser.add_argument("--n-permutations", type=int, default=100)
    parser.add_argument("--loop-permutations", type=int, default=1)
    parser.add_argument("--n-jobs", type=int, default=1, help="workers of a final timed run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    features, covars = synthetic_cohort(args.n_subjects, args.n_regions, args.n_sites, args.seed)
    print(
        f"{args.n_subjects} participants x {features.shape[1]} edges, {args.n_sites} sites",
        flush=True,
    )
    common = {
        "features": features,
        "target": covars["diagnosis"],
        "covars": covars,
        "model": "logreg",
        "site_col": "site",
        "continuous": ["age"],
        "cv": "leave-site-out",
        "n_bootstrap": 200,
        "seed": args.seed,
        "progress": False,
    }
    observed_s, observed = timed("observed nested CV", **common)
    print(observed.metrics.round(3).to_string(index=False), flush=True)
    loop_s, _ = timed(
        f"plain loop, {args.loop_permutations} permutation(s)",
        n_permutations=args.loop_permutations,
        permutation_method="loop",
        **common,
    )
    per_loop = (loop_s - observed_s) / args.loop_permutations
    with SharedWork() as shared:
        engine_s, result = timed(
            f"shared engine, {args.n_permutations} permutations",
            n_permutations=args.n_permutations,
            **common,
        )
    engine_s -= observed_s
    per_perm = (engine_s - shared.cpu_s) / args.n_permutations
    print(
        f"  p-value {result.p_value:.4f}; shared ComBat fits {shared.cpu_s:.1f} s, "
        f"{per_perm:.2f} s per permutation",
        flush=True,
    )
    if args.n_jobs > 1:
        timed(
            f"shared engine, {args.n_permutations} permutations, {args.n_jobs} jobs",
            n_permutations=args.n_permutations,
            n_jobs=args.n_jobs,
            **common,
        )
    loop_100 = observed_s + 100 * per_loop
    shared_100 = observed_s + shared.cpu_s + 100 * per_perm
    print(
        f"summary (CPU seconds, 100 permutations): plain loop {loop_100 / 60:.1f} min "
        f"({per_loop:.1f} s/permutation); shared engine {shared_100 / 60:.1f} min "
        f"({shared.cpu_s:.0f} s shared + {per_perm:.2f} s/permutation) = "
        f"{shared_100 / 120:.1f} min on 2 cores (folds are independent: CPU / 2); "
        f"speed-up x{loop_100 / shared_100:.1f} on 1 core, x{2 * loop_100 / shared_100:.1f} "
        f"with 2 workers vs the former serial loop; peak RSS {peak_gb():.2f} GB",
        flush=True,
    )


if __name__ == "__main__":
    main()
