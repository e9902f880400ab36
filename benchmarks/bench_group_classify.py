"""Benchmark the group level: collection, ComBat, a cross-validated classifier, torch models.

Writes a synthetic derivatives tree (N participants x R-region connectomes as
``_relmat.tsv`` files, 4 sites with a site effect and a diagnosis effect), then times
each stage and prints the peak resident memory after it. The issue's target is
``--n-subjects 10000 --n-regions 400``; the defaults are small enough for a laptop.

    python benchmarks/bench_group_classify.py --n-subjects 1000 --n-regions 400
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
import torch

from workflows.group.classify import evaluate_model
from workflows.group.collect import collect_group_data
from workflows.group.harmonize import ComBat
from workflows.group.models import BrainNetCNNClassifier, TorchMLPClassifier


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def report(stage: str, start: float) -> float:
    elapsed = time.perf_counter() - start
    print(f"{stage:<34s} {elapsed:9.2f} s   peak RSS {peak_gb():6.2f} GB", flush=True)
    return elapsed


def write_tree(root: Path, n_subjects: int, n_regions: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    regions = [f"region{i:03d}" for i in range(n_regions)]
    sites = np.array([f"site{i % 4}" for i in range(n_subjects)])
    diagnosis = rng.integers(0, 2, n_subjects)
    site_offset = {s: rng.normal(0, 0.1, (n_regions, n_regions)) for s in np.unique(sites)}
    header = "node\t" + "\t".join(regions) + "\n"
    for i in range(n_subjects):
        noise = rng.normal(0, 0.2, (n_regions, n_regions)).astype(np.float32)
        matrix = (noise + noise.T) / 2 + site_offset[sites[i]]
        matrix[:5, :5] += 0.2 * diagnosis[i]
        matrix = (matrix + matrix.T) / 2
        np.fill_diagonal(matrix, 1.0)
        folder = root / f"sub-{i:05d}" / "func"
        folder.mkdir(parents=True)
        path = folder / f"sub-{i:05d}_task-rest_atlas-Bench_meas-PearsonCorrelation_relmat.tsv"
        body = "".join(
            f"{name}\t" + "\t".join(f"{v:.5f}" for v in row) + "\n"
            for name, row in zip(regions, matrix, strict=True)
        )
        path.write_text(header + body)
    pd.DataFrame(
        {
            "participant_id": [f"sub-{i:05d}" for i in range(n_subjects)],
            "site": sites,
            "diagnosis": np.where(diagnosis == 1, "patient", "control"),
            "age": rng.uniform(20, 80, n_subjects).round(1),
        }
    ).to_csv(root / "participants.tsv", sep="\t", index=False)


def time_torch(model_class, X, y, device: str, epochs: int) -> float:
    model = model_class(epochs=epochs, device=device, batch_size=64)
    start = time.perf_counter()
    model.fit(X, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=400)
    parser.add_argument("--n-regions", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the tree here")
    parser.add_argument(
        "--skip-brainnetcnn",
        action="store_true",
        help="BrainNetCNN holds batch x 8 x R x R activations (and their gradients)",
    )
    args = parser.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_group_")) / "derivatives"
    n_edges = args.n_regions * (args.n_regions - 1) // 2
    print(f"{args.n_subjects} participants x {args.n_regions} regions ({n_edges} edges)")
    try:
        if (root / "participants.tsv").is_file():
            print(f"reusing the derivatives tree in {root}")
        else:
            start = time.perf_counter()
            write_tree(root, args.n_subjects, args.n_regions, args.seed)
            report("generate synthetic derivatives", start)

        participants = pd.read_csv(root / "participants.tsv", sep="\t")
        start = time.perf_counter()
        data = collect_group_data(root, participants)
        conn = next(iter(data.connectomes.values()))
        edges = conn.edge_table().drop(columns=["participant_id", "session_id"])
        edges.index = conn.subjects["participant_id"].to_numpy()
        report("collect (read TSVs -> edge table)", start)

        covars = participants.set_index("participant_id").loc[edges.index]
        start = time.perf_counter()
        ComBat("site", continuous_cols=("age",)).fit_transform(edges, covars[["site", "age"]])
        report("ComBat fit+transform (all edges)", start)

        start = time.perf_counter()
        result = evaluate_model(
            edges,
            covars["diagnosis"],
            covars=covars,
            model="logreg",
            site_col="site",
            covariates=["age"],
            seed=args.seed,
            n_bootstrap=200,
            param_grid={"C": [0.01]},
        )
        report("leave-site-out logreg + ComBat", start)
        print(result.metrics.round(3).to_string(index=False))

        X, y = edges.to_numpy(), covars["diagnosis"].to_numpy()
        torch_models = [TorchMLPClassifier] + (
            [] if args.skip_brainnetcnn else [BrainNetCNNClassifier]
        )
        for model_class in torch_models:
            time_torch(model_class, X[:64], y[:64], "cpu", 1)  # warm-up
            cpu = time_torch(model_class, X, y, "cpu", args.epochs)
            line = f"{model_class.__name__:<22s} {args.epochs} epochs  CPU {cpu:8.2f} s"
            if torch.cuda.is_available():
                time_torch(model_class, X[:64], y[:64], "cuda", 1)  # warm-up
                gpu = time_torch(model_class, X, y, "cuda", args.epochs)
                line += f"  CUDA {gpu:8.2f} s  speed-up x{cpu / gpu:.1f}"
            print(line + f"   peak RSS {peak_gb():6.2f} GB", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
