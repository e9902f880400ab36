"""Benchmark ComBat and the graph metrics against neuroCombat and bctpy (issue 6).

Prints, per step, the wall time, the process CPU time (what matters on a shared
machine) and the peak resident memory, then the speed ratios against neuroCombat and
bctpy computed on the same data (a subset, said so in each line: the references are
too slow for the whole cohort).

- ComBat: a synthetic cohort of ``--participants`` x ``--features`` float32 values
  (default 10,000 x 79,800: the edges of 400-region connectomes) with site, age and
  sex effects; parametric fit+transform on all of it, non-parametric on
  ``--nonparametric-features`` columns (its prior is quadratic in the features:
  extrapolated). neuroCombat runs on the first ``--neurocombat-participants`` x
  ``--neurocombat-features`` of the same table.
- Graph metrics: ``--connectomes`` modular correlation matrices of ``--regions``
  regions, proportional threshold ``--threshold``, weighted. The default metrics
  (everything but small-worldness) run on every connectome; small-worldness
  (``--n-random`` random networks each) on the first ``--small-world-sample``, and is
  extrapolated. bctpy computes the same metrics on the first ``--bct-sample``.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_group_harmonize_graph.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import time
import warnings

import numpy as np
import pandas as pd

from brainscale.workflows.group.graph import graph_metrics, prepare_connectome
from brainscale.workflows.group.graph_random import SWAPS_PER_EDGE
from brainscale.workflows.group.harmonize import ComBat

TARGET_PARTICIPANTS = 10_000
TARGET_FEATURES = 79_800  # edges of a 400-region connectome


def peak_gb() -> float:
    """Peak resident memory of this process (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def report(stage: str, wall: float, cpu: float, extra: str = "") -> None:
    """Print one step: wall and CPU seconds, peak memory, and a comment."""
    print(
        f"{stage:<46s} wall {wall:8.2f} s  cpu {cpu:8.2f} s  peak {peak_gb():5.2f} GB  {extra}",
        flush=True,
    )


def timed(function, *args, **kwargs):
    """Call ``function``; return its result, wall seconds and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def cohort(n: int, p: int, n_sites: int, seed: int = 0):
    """Float32 features with site (location and scale), age and sex effects."""
    rng = np.random.default_rng(seed)
    site = rng.integers(0, n_sites, n)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    values = rng.standard_normal((n, p), dtype=np.float32)
    values *= (0.5 + site / n_sites)[:, None].astype(np.float32)
    values += (site[:, None] * 0.3 + 0.01 * age[:, None] + 0.2 * sex[:, None]).astype(np.float32)
    covars = pd.DataFrame({"site": site, "age": age, "sex": sex})
    return pd.DataFrame(values, columns=[f"edge{j}" for j in range(p)], copy=False), covars


def bench_combat(args) -> None:
    print(f"== ComBat: {args.participants} participants x {args.features} features")
    (features, covars), wall, cpu = timed(cohort, args.participants, args.features, args.sites)
    report("generate float32 cohort (not a step)", wall, cpu)
    model = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"])
    harmonized, wall, cpu = timed(model.fit_transform, features, covars)
    report("ComBat parametric fit_transform", wall, cpu, "all participants and features")
    ours_per_entry = cpu / features.size
    del harmonized
    if "neurocombat" not in args.skip:
        bench_neurocombat(args, features, covars, ours_per_entry)
    small = features.iloc[:, : args.nonparametric_features]
    model = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"], parametric=False)
    _, wall, cpu = timed(model.fit_transform, small, covars)
    scale = (args.features / args.nonparametric_features) ** 2
    report(
        f"ComBat non-parametric, {args.nonparametric_features} features",
        wall,
        cpu,
        f"-> {args.features} features: ~{cpu * scale / 60:.0f} CPU-min (quadratic)",
    )


def bench_neurocombat(args, features: pd.DataFrame, covars: pd.DataFrame, ours: float) -> None:
    """neuroCombat on a corner of the same table; ratio of CPU time per value."""
    try:
        from neuroCombat import neuroCombat
    except ImportError:
        print("neuroCombat not installed: no comparison")
        return
    rows = slice(0, args.neurocombat_participants)
    for parametric, n_features in ((True, args.neurocombat_features), (False, 300)):
        label = "parametric" if parametric else "non-parametric"
        part = features.iloc[rows, :n_features].astype(np.float64)
        part_covars = covars.iloc[rows].reset_index(drop=True)
        part.index = part_covars.index
        model = ComBat(
            "site", categorical_cols=["sex"], continuous_cols=["age"], parametric=parametric
        )
        mine, _, ours_cpu = timed(model.fit_transform, part, part_covars)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, wall, cpu = timed(
                neuroCombat,
                dat=part.to_numpy().T,
                covars=part_covars,
                batch_col="site",
                categorical_cols=["sex"],
                continuous_cols=["age"],
                parametric=parametric,
            )
        difference = np.abs(mine.to_numpy().T - theirs["data"]).max()
        extra = (
            f"ours {ours_cpu:.2f} s: speed ratio x{cpu / ours_cpu:.0f}, max |diff| {difference:.1e}"
        )
        if parametric:
            whole = cpu / part.size * args.participants * args.features
            extra += (
                f"; neuroCombat on the whole table ~{whole / 60:.0f} CPU-min "
                f"(linear), ratio x{cpu / part.size / ours:.0f} vs ours at full size"
            )
        report(f"neuroCombat {label}, {part.shape[0]} x {n_features} subset", wall, cpu, extra)


def connectome(n_regions: int, seed: int) -> np.ndarray:
    """Correlation matrix of 200 time points with 8 modules (has negative values)."""
    rng = np.random.default_rng(seed)
    module = np.arange(n_regions) % 8
    shared = rng.standard_normal((200, 8))
    series = 0.7 * shared[:, module] + rng.standard_normal((200, n_regions))
    return np.corrcoef(series.T)


def bench_graph(args) -> tuple[float, float]:
    """Graph metrics on every connectome; return CPU seconds per connectome and random network."""
    print(
        f"== graph metrics: {args.connectomes} connectomes x {args.regions} regions, "
        f"proportional threshold {args.threshold}, weighted"
    )
    options = {"threshold": args.threshold, "n_random": 0}
    wall = cpu = 0.0
    global_rows = []
    for seed in range(args.connectomes):
        matrix = connectome(args.regions, seed)
        result, seconds, cpu_seconds = timed(graph_metrics, matrix, **options)
        wall, cpu = wall + seconds, cpu + cpu_seconds
        global_rows.append(result.global_metrics)
        if (seed + 1) % max(1, args.connectomes // 10) == 0:
            print(
                f"   {seed + 1} connectomes: {cpu / (seed + 1) * 1000:.0f} ms CPU each", flush=True
            )
    per_connectome = cpu / args.connectomes
    report(
        f"graph_metrics, {args.connectomes} connectomes",
        wall,
        cpu,
        f"{per_connectome * 1000:.0f} ms each (no small-worldness); "
        f"{TARGET_PARTICIPANTS}: ~{per_connectome * TARGET_PARTICIPANTS / 60:.1f} CPU-min",
    )
    table = pd.DataFrame(global_rows)
    print(
        table[["density", "clustering", "global_efficiency", "local_efficiency", "modularity"]]
        .describe()
        .loc[["mean", "std"]]
        .round(4)
        .to_string()
    )

    sample = min(args.small_world_sample, args.connectomes)
    small_world = {**options, "n_random": args.n_random}
    sigmas, wall, cpu = [], 0.0, 0.0
    for seed in range(sample):
        result, seconds, cpu_seconds = timed(
            graph_metrics, connectome(args.regions, seed), **small_world
        )
        wall, cpu = wall + seconds, cpu + cpu_seconds
        sigmas.append(result.global_metrics["small_world_sigma"])
    extra_cost = cpu / sample - per_connectome
    target_min = (per_connectome + extra_cost) * TARGET_PARTICIPANTS / 60
    report(
        f"with small-worldness ({args.n_random} random), {sample} connectomes",
        wall,
        cpu,
        f"+{extra_cost * 1000:.0f} ms each ({extra_cost / args.n_random * 1000:.0f} per random "
        f"network); {TARGET_PARTICIPANTS}: ~{target_min:.0f} CPU-min; "
        f"sigma {np.mean(sigmas):.3f} +- {np.std(sigmas):.3f}",
    )
    return per_connectome, extra_cost / args.n_random


def bench_bct(args, ours_per_connectome: float, ours_per_random: float) -> None:
    """bctpy on the first connectomes of the same set; speed ratios."""
    try:
        import bct
    except ImportError:
        print("bctpy not installed: no comparison")
        return
    sample = min(args.bct_sample, args.connectomes)
    print(f"== bctpy on the first {sample} of the same connectomes")
    totals: dict[str, list[float]] = {}
    for seed in range(sample):
        matrix = prepare_connectome(connectome(args.regions, seed), threshold=args.threshold)
        normalized = bct.normalize(matrix)
        steps = {
            "degrees_und+strengths_und": lambda m=matrix: (
                bct.degrees_und(m),
                bct.strengths_und(m),
            ),
            "clustering_coef_wu": lambda w=normalized: bct.clustering_coef_wu(w),
            "distance_wei+charpath": lambda w=normalized: bct.charpath(
                bct.distance_wei(bct.invert(w))[0], include_infinite=False
            ),
            "efficiency_wei(local=True)": lambda w=normalized: bct.efficiency_wei(w, local=True),
            "community_louvain+participation_coef": lambda m=matrix: bct.participation_coef(
                m, bct.community_louvain(m, seed=0)[0]
            ),
            "one random network (randmio_und, C, L)": lambda w=normalized: (
                lambda r: (
                    bct.clustering_coef_wu(r),
                    bct.charpath(bct.distance_wei(bct.invert(r))[0], include_infinite=False),
                )
            )(bct.randmio_und(w, SWAPS_PER_EDGE, seed=0)[0]),
        }
        for name, step in steps.items():
            _, wall, cpu = timed(step)
            previous = totals.get(name, [0.0, 0.0])
            totals[name] = [previous[0] + wall / sample, previous[1] + cpu / sample]
    for name, (wall, cpu) in totals.items():
        report(f"bctpy {name}", wall, cpu, "per connectome")
    default_wall, default = np.sum(
        [times for name, times in totals.items() if not name.startswith("one random")], axis=0
    )
    random_wall, random = totals["one random network (randmio_und, C, L)"]
    report(
        "bctpy, default metrics, one connectome",
        default_wall,
        default,
        f"speed ratio x{default / ours_per_connectome:.0f}; "
        f"{TARGET_PARTICIPANTS} connectomes: ~{default * TARGET_PARTICIPANTS / 3600:.0f} CPU-h",
    )
    report(
        "bctpy, one random network of small-worldness",
        random_wall,
        random,
        f"speed ratio x{random / ours_per_random:.0f} (same {SWAPS_PER_EDGE:g} swaps per edge)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=TARGET_PARTICIPANTS)
    parser.add_argument("--features", type=int, default=TARGET_FEATURES)
    parser.add_argument("--nonparametric-features", type=int, default=2_000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--neurocombat-participants", type=int, default=2_000)
    parser.add_argument("--neurocombat-features", type=int, default=2_000)
    parser.add_argument("--connectomes", type=int, default=TARGET_PARTICIPANTS)
    parser.add_argument("--regions", type=int, default=400)
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--n-random", type=int, default=10)
    parser.add_argument("--small-world-sample", type=int, default=50)
    parser.add_argument("--bct-sample", type=int, default=2)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["combat", "neurocombat", "graph", "bct"]
    )
    args = parser.parse_args()
    if "combat" not in args.skip:
        bench_combat(args)
    if "graph" not in args.skip:
        per_connectome, per_random = bench_graph(args)
        if "bct" not in args.skip:
            bench_bct(args, per_connectome, per_random)
    print(f"peak memory (ru_maxrss): {peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
