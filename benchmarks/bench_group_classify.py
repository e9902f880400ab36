"""Benchmark the group level: collection, ComBat, a nested cross-validated classifier.

Writes a synthetic derivatives tree (N participants x R-region connectomes as
``_relmat.tsv`` files, 4 sites with a site effect, a diagnosis effect on 10 edges),
then times each stage (wall and process CPU time: the machine may be shared) and
prints the peak resident memory after it. The issue's target is
``--n-subjects 10000 --n-regions 400`` (about 12 GB of TSV files, written to
``--workdir`` or a temporary folder that is removed afterwards).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_group_classify.py --n-subjects 10000 --n-regions 400

The classifier is :func:`brainscale.workflows.group.classify.evaluate_model`'s logistic regression,
evaluated leave-one-site-out, with ComBat, univariate screening (``--max-features``)
and scaling fitted in every training fold and ``C`` chosen by an inner 3-fold CV
(``--grid``). ``--torch`` also trains the MLP and BrainNetCNN (CPU, and CUDA when
present).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.workflows.group.classify import MAX_FEATURES, evaluate_model
from brainscale.workflows.group.collect import collect_group_data, edge_names
from brainscale.workflows.group.harmonize import ComBat

N_SITES = 4
#: Strings of every value the synthetic matrices hold (4 decimals in [-1, 1]): writing
#: 10,000 files with a look-up is ~10x faster than formatting each float.
_DECIMALS = 10_000
_FORMATTED = np.array([f"{v / _DECIMALS:.4f}" for v in range(-_DECIMALS, _DECIMALS + 1)])


def peak_gb() -> float:
    """Peak resident memory of this process (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


class Stage:
    """Context manager printing the wall time, CPU time and peak memory of a stage."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall
        self.cpu_s = time.process_time() - self.cpu
        print(
            f"{self.name:<44s} wall {self.wall_s:8.1f} s  cpu {self.cpu_s:8.1f} s  "
            f"peak RSS {peak_gb():5.2f} GB",
            flush=True,
        )


def write_tree(root: Path, n_subjects: int, n_regions: int, seed: int) -> None:
    """Write ``participants.tsv`` and one functional ``_relmat.tsv`` per participant."""
    rng = np.random.default_rng(seed)
    regions = [f"region{i:03d}" for i in range(n_regions)]
    sites = np.arange(n_subjects) % N_SITES
    diagnosis = rng.integers(0, 2, n_subjects)
    site_offset = rng.normal(0, 0.1, (N_SITES, n_regions, n_regions)).astype(np.float32)
    header = "node\t" + "\t".join(regions) + "\n"
    for i in range(n_subjects):
        noise = rng.normal(0, 0.2, (n_regions, n_regions)).astype(np.float32)
        matrix = noise + site_offset[sites[i]]
        matrix[:5, :5] += 0.2 * diagnosis[i]
        matrix = np.clip((matrix + matrix.T) / 2, -1, 1)
        np.fill_diagonal(matrix, 1.0)
        cells = _FORMATTED[np.rint(matrix * _DECIMALS).astype(np.int32) + _DECIMALS]
        body = "".join(
            f"{name}\t" + "\t".join(row) + "\n"
            for name, row in zip(regions, cells.tolist(), strict=True)
        )
        folder = root / f"sub-{i:05d}" / "func"
        folder.mkdir(parents=True)
        path = folder / f"sub-{i:05d}_task-rest_atlas-Bench_meas-PearsonCorrelation_relmat.tsv"
        path.write_text(header + body)
    pd.DataFrame(
        {
            "participant_id": [f"sub-{i:05d}" for i in range(n_subjects)],
            "site": [f"site{s}" for s in sites],
            "diagnosis": np.where(diagnosis == 1, "patient", "control"),
            "age": rng.uniform(20, 80, n_subjects).round(1),
        }
    ).to_csv(root / "participants.tsv", sep="\t", index=False)


def time_torch(model_class, X, y, device: str, epochs: int) -> float:
    """Seconds to train a torch model for ``epochs`` epochs."""
    import torch

    model = model_class(epochs=epochs, device=device, batch_size=64)
    start = time.perf_counter()
    model.fit(X, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_torch(X: np.ndarray, y: np.ndarray, epochs: int, brainnetcnn: bool) -> None:
    """Train the torch models on the CPU (and CUDA when present)."""
    import torch

    from brainscale.workflows.group.models import BrainNetCNNClassifier, TorchMLPClassifier

    for model_class in [TorchMLPClassifier] + ([BrainNetCNNClassifier] if brainnetcnn else []):
        time_torch(model_class, X[:64], y[:64], "cpu", 1)  # warm-up
        cpu = time_torch(model_class, X, y, "cpu", epochs)
        line = f"{model_class.__name__:<22s} {epochs} epochs  CPU {cpu:8.2f} s"
        if torch.cuda.is_available():
            time_torch(model_class, X[:64], y[:64], "cuda", 1)  # warm-up
            gpu = time_torch(model_class, X, y, "cuda", epochs)
            line += f"  CUDA {gpu:8.2f} s  speed-up x{cpu / gpu:.1f}"
        print(line + f"   peak RSS {peak_gb():6.2f} GB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=400)
    parser.add_argument("--n-regions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="C values")
    parser.add_argument("--max-features", type=int, default=MAX_FEATURES)
    parser.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the tree here")
    parser.add_argument("--torch", action="store_true", help="also time the torch models")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--skip-brainnetcnn", action="store_true")
    args = parser.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_group_")) / "derivatives"
    n_edges = args.n_regions * (args.n_regions - 1) // 2
    print(f"{args.n_subjects} participants x {args.n_regions} regions ({n_edges} edges)")
    try:
        if (root / "participants.tsv").is_file():
            print(f"reusing the derivatives tree in {root}")
        else:
            with Stage("generate synthetic derivatives (not a step)"):
                write_tree(root, args.n_subjects, args.n_regions, args.seed)

        participants = pd.read_csv(root / "participants.tsv", sep="\t")
        with Stage("collect (read the TSVs -> edge table)") as collect:
            data = collect_group_data(root, participants)
            conn = next(iter(data.connectomes.values()))
            edges = pd.DataFrame(
                conn.edges,
                index=conn.subjects["participant_id"].to_numpy(),
                columns=edge_names(conn.regions),
                copy=False,
            )
        covars = participants.set_index("participant_id").loc[edges.index]
        with Stage("ComBat fit+transform (all edges)") as combat:
            harmonized = ComBat("site", continuous_cols=("age",)).fit_transform(
                edges, covars[["site", "age"]]
            )
        del harmonized
        with Stage("nested CV logreg (leave-site-out)") as classify:
            result = evaluate_model(
                edges,
                covars["diagnosis"],
                covars=covars,
                model="logreg",
                site_col="site",
                covariates=["age"],
                seed=args.seed,
                n_bootstrap=200,
                param_grid={"C": args.grid},
                max_features=args.max_features,
            )
        print(result.metrics.round(3).to_string(index=False))
        print("notes:", *result.notes)
        chosen = result.final_model.named_steps["model"].C
        print(f"C grid {args.grid}: chosen {chosen} on all rows")
        print(
            f"summary: collection {collect.wall_s / 60:.1f} min, ComBat {combat.wall_s / 60:.1f} "
            f"min, classifier {classify.wall_s / 60:.1f} min (wall); peak RSS {peak_gb():.2f} GB"
        )
        if args.torch:
            labels = covars["diagnosis"].to_numpy()
            bench_torch(edges.to_numpy(), labels, args.epochs, not args.skip_brainnetcnn)
    finally:
        if args.workdir is None:
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
