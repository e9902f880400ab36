"""Benchmark ComBat and the graph metrics against neuroCombat and bctpy (issue 6).

Prints wall time per stage (and the process CPU time, which is what matters on a
shared machine), peak memory (ru_maxrss) and speed ratios. Sizes beyond
what fits the machine are measured on a part and extrapolated explicitly (ComBat's
parametric model is linear in features; the non-parametric prior is quadratic;
graph metrics are per connectome).

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

from workflows.group.graph import graph_metrics, prepare_connectome
from workflows.group.harmonize import ComBat

TARGET_PARTICIPANTS = 10_000
TARGET_FEATURES = 79_800  # edges of a 400-region connectome


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


_last_cpu = [time.process_time()]


def report(stage: str, seconds: float, extra: str = "") -> None:
    """Print wall time, CPU time since the previous report, and peak memory."""
    cpu = time.process_time() - _last_cpu[0]
    _last_cpu[0] = time.process_time()
    print(
        f"{stage:<50s} wall {seconds:8.2f} s  cpu {cpu:8.2f} s  peak {peak_gb():5.2f} GB  {extra}",
        flush=True,
    )


def cohort(n: int, p: int, n_sites: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    site = rng.integers(0, n_sites, n)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    values = rng.standard_normal((n, p), dtype=np.float32).astype(dtype, copy=False)
    values *= (0.5 + site / n_sites)[:, None].astype(dtype)
    values += (site[:, None] * 0.3 + 0.01 * age[:, None] + 0.2 * sex[:, None]).astype(dtype)
    covars = pd.DataFrame({"site": site, "age": age, "sex": sex})
    return pd.DataFrame(values, columns=[f"edge{j}" for j in range(p)]), covars


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_combat(args) -> None:
    print(f"== ComBat: {args.participants} participants, {args.sites} sites")
    (features, covars), seconds = timed(cohort, args.participants, args.features, args.sites)
    report(f"generate {args.participants} x {args.features} float32", seconds)
    model = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"])
    _, seconds = timed(model.fit_transform, features, covars)
    scale = TARGET_FEATURES / args.features
    report(
        f"ComBat parametric fit_transform ({args.features} features)",
        seconds,
        f"-> {TARGET_FEATURES} features: ~{seconds * scale:.0f} s (linear extrapolation)",
    )
    del features
    small, covars_small = cohort(args.participants, args.nonparametric_features, args.sites)
    model = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"], parametric=False)
    _, seconds = timed(model.fit_transform, small, covars_small)
    scale = (TARGET_FEATURES / args.nonparametric_features) ** 2
    report(
        f"ComBat non-parametric ({args.nonparametric_features} features)",
        seconds,
        f"-> {TARGET_FEATURES} features: ~{seconds * scale / 60:.0f} min (quadratic extrapolation)",
    )


def bench_neurocombat(args) -> None:
    try:
        from neuroCombat import neuroCombat
    except ImportError:
        print("neuroCombat not installed: no comparison")
        return
    for parametric, n_features in ((True, args.neurocombat_features), (False, 300)):
        label = "parametric" if parametric else "non-parametric"
        features, covars = cohort(
            args.neurocombat_participants, n_features, args.sites, dtype=np.float64
        )
        model = ComBat("site", continuous_cols=["age"], parametric=parametric)
        ours, ours_s = timed(model.fit_transform, features, covars)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, theirs_s = timed(
                neuroCombat,
                dat=features.to_numpy().T,
                covars=covars,
                batch_col="site",
                continuous_cols=["age"],
                parametric=parametric,
            )
        difference = np.abs(ours.to_numpy().T - theirs["data"]).max()
        report(
            f"neuroCombat {label} {args.neurocombat_participants}x{n_features}",
            theirs_s,
            f"ours {ours_s:.2f} s, speed ratio x{theirs_s / ours_s:.0f}, "
            f"max |diff| {difference:.1e} (neuroCombat casts covariates to float32)",
        )


def connectome(n_regions: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    module = np.arange(n_regions) % 8
    shared = rng.standard_normal((200, 8))
    series = 0.7 * shared[:, module] + rng.standard_normal((200, n_regions))
    return np.corrcoef(series.T)


def bench_graph(args) -> None:
    print(
        f"== graph metrics: {args.regions} regions, proportional threshold {args.threshold}, "
        f"{args.n_random} random networks"
    )
    options = {"threshold": args.threshold, "n_random": args.n_random}
    start = time.perf_counter()
    for seed in range(args.graph_sample):
        graph_metrics(connectome(args.regions, seed), **options)
    per_connectome = (time.perf_counter() - start) / args.graph_sample
    report(
        f"graph_metrics, {args.graph_sample} connectomes",
        per_connectome * args.graph_sample,
        f"{per_connectome:.2f} s each -> {args.connectomes}: "
        f"~{per_connectome * args.connectomes / 60:.0f} min on 1 core",
    )
    no_random = {**options, "n_random": 0}
    start = time.perf_counter()
    for seed in range(args.graph_sample):
        graph_metrics(connectome(args.regions, seed), **no_random)
    per_no_random = (time.perf_counter() - start) / args.graph_sample
    report(
        "graph_metrics without small-worldness",
        per_no_random * args.graph_sample,
        f"{per_no_random:.2f} s each",
    )
    bench_bct(args, per_connectome)


def bench_bct(args, ours_per_connectome: float) -> None:
    try:
        import bct
    except ImportError:
        print("bctpy not installed: no comparison")
        return
    matrix = prepare_connectome(connectome(args.regions, 0), threshold=args.threshold)
    normalized = bct.normalize(matrix)
    steps = {
        "degree+strength": lambda: (bct.degrees_und(matrix), bct.strengths_und(matrix)),
        "clustering_coef_wu": lambda: bct.clustering_coef_wu(normalized),
        "distance_wei+charpath+efficiency": lambda: bct.charpath(
            bct.distance_wei(bct.invert(normalized))[0], include_infinite=False
        ),
        "efficiency_wei(local=True)": lambda: bct.efficiency_wei(normalized, local=True),
        "community_louvain+participation": lambda: bct.participation_coef(
            matrix, bct.community_louvain(matrix, seed=0)[0]
        ),
        "one random network (randmio_und+C+L)": lambda: (
            lambda r: (
                bct.clustering_coef_wu(r),
                bct.charpath(bct.distance_wei(bct.invert(r))[0], include_infinite=False),
            )
        )(bct.randmio_und(normalized, 10, seed=0)[0]),
    }
    total = 0.0
    for name, step in steps.items():
        _, seconds = timed(step)
        repeat = args.n_random if name.startswith("one random") else 1
        total += seconds * repeat
        report(f"bctpy {name}", seconds, f"x{repeat}" if repeat > 1 else "")
    report(
        "bctpy, same metrics, one connectome",
        total,
        f"-> speed ratio x{total / ours_per_connectome:.0f}; {args.connectomes} connectomes: "
        f"~{total * args.connectomes / 3600:.0f} h",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=TARGET_PARTICIPANTS)
    parser.add_argument("--features", type=int, default=20_000)
    parser.add_argument("--nonparametric-features", type=int, default=4_000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--neurocombat-participants", type=int, default=2_000)
    parser.add_argument("--neurocombat-features", type=int, default=2_000)
    parser.add_argument("--connectomes", type=int, default=TARGET_PARTICIPANTS)
    parser.add_argument("--regions", type=int, default=400)
    parser.add_argument("--graph-sample", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--n-random", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[], choices=["combat", "neurocombat", "graph"])
    args = parser.parse_args()
    if "combat" not in args.skip:
        bench_combat(args)
    if "neurocombat" not in args.skip:
        bench_neurocombat(args)
    if "graph" not in args.skip:
        bench_graph(args)
    print(f"peak memory (ru_maxrss): {peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
