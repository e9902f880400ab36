"""Synthetic participant-derivatives trees with known values, for the group-level tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REGIONS = ["L_frontal", "R_frontal", "L_parietal", "R_parietal", "L_occipital", "R_occipital"]


@dataclass
class SyntheticCohort:
    """What was written, to compare the collected tables with."""

    root: Path
    participants: pd.DataFrame
    morph: dict = field(default_factory=dict)  # (sub, ses) -> DataFrame index=name
    global_morph: dict = field(default_factory=dict)  # (sub, ses) -> Series
    func: dict = field(default_factory=dict)  # (sub, ses) -> mean matrix over runs
    dwi: dict = field(default_factory=dict)  # (sub, ses) -> matrix
    mean_fd: dict = field(default_factory=dict)  # (sub, ses) -> mean FD over runs


def _write_matrix(path: Path, matrix: np.ndarray) -> None:
    table = pd.DataFrame(matrix, index=pd.Index(REGIONS, name="node"), columns=REGIONS)
    table.to_csv(path, sep="\t", float_format="%.10g")


def _random_correlation(rng, n: int, diagnosis: int, effect: float) -> np.ndarray:
    signals = rng.normal(size=(200, n))
    signals[:, 1] += effect * diagnosis * signals[:, 0]
    matrix = np.corrcoef(signals.T)
    np.fill_diagonal(matrix, 1.0)
    return matrix


def write_cohort(
    root: Path,
    *,
    n_sites: int = 3,
    n_per_site: int = 16,
    sessions: tuple[str, ...] = (),
    site_shift: float = 3.0,
    dx_effect: float = 1.5,
    seed: int = 0,
) -> SyntheticCohort:
    """Write a derivatives tree: morph (site and diagnosis effects), func, dwi, confounds.

    The last participant has no dwi; an extra participant in participants.tsv has no
    derivatives at all; the first participant has two runs of rest.
    """
    rng = np.random.default_rng(seed)
    n = n_sites * n_per_site
    participants = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:03d}" for i in range(n)],
            "site": np.repeat([f"site{k}" for k in range(n_sites)], n_per_site),
            "age": rng.uniform(20, 70, n).round(1),
            "sex": np.tile(["F", "M", "M", "F"], n // 4 + 1)[:n],
            "diagnosis": np.tile(["control", "control", "patient", "patient"], n // 4 + 1)[:n],
        }
    )
    cohort = SyntheticCohort(root, participants)
    site_offset = rng.normal(0, site_shift, (n_sites, len(REGIONS)))
    for i, row in participants.iterrows():
        site = int(row["site"].removeprefix("site"))
        patient = int(row["diagnosis"] == "patient")
        for ses in sessions or ("n/a",):
            key = (row["participant_id"], ses if sessions else "n/a")
            folder = root / row["participant_id"]
            stem = row["participant_id"]
            if sessions:
                folder, stem = folder / ses, f"{stem}_{ses}"
            for modality in ("anat", "func", "dwi"):
                (folder / modality).mkdir(parents=True, exist_ok=True)
            volumes = 5000 + rng.normal(0, 1, len(REGIONS)) * 100 + site_offset[site] * 100
            volumes[:2] -= dx_effect * 100 * patient
            morph = pd.DataFrame(
                {
                    "index": np.arange(1, len(REGIONS) + 1),
                    "name": REGIONS,
                    "gm_volume_mm3": volumes,
                    "thickness_mean_mm": 2.5 + rng.normal(0, 0.1, len(REGIONS)),
                }
            )
            morph.to_csv(folder / "anat" / f"{stem}_atlas-Test_morph.tsv", sep="\t", index=False)
            cohort.morph[key] = morph.set_index("name")
            glob = pd.Series(
                {
                    "etiv_mm3": 1.5e6 + rng.normal(0, 1e4),
                    "tiv_mm3": 1.4e6 + rng.normal(0, 1e4),
                    "gm_volume_mm3": volumes.sum(),
                    "wm_volume_mm3": 4.5e5,
                    "csf_volume_mm3": 2e5,
                    "thickness_mean_mm": 2.5,
                }
            )
            glob.to_frame().T.to_csv(
                folder / "anat" / f"{stem}_desc-brain_morph.tsv", sep="\t", index=False
            )
            cohort.global_morph[key] = glob
            runs = ["run-1", "run-2"] if i == 0 else [None]
            matrices, fds = [], []
            for run in runs:
                run_stem = f"{stem}_task-rest" + (f"_{run}" if run else "")
                matrix = _random_correlation(rng, len(REGIONS), patient, 0.8)
                matrices.append(matrix)
                _write_matrix(
                    folder / "func" / f"{run_stem}_atlas-Test_meas-PearsonCorrelation_relmat.tsv",
                    matrix,
                )
                fd = np.abs(rng.normal(0.2, 0.1, 50))
                confounds = pd.DataFrame({"framewise_displacement": fd, "trans_x": 0.0})
                confounds.loc[0, "framewise_displacement"] = np.nan
                confounds.to_csv(
                    folder / "func" / f"{run_stem}_desc-confounds_timeseries.tsv",
                    sep="\t",
                    index=False,
                    na_rep="n/a",
                )
                fds.append(fd[1:].mean())
            cohort.func[key] = np.mean(matrices, axis=0)
            cohort.mean_fd[key] = float(np.mean(fds))
            if i < n - 1:
                counts = rng.integers(0, 100, (len(REGIONS), len(REGIONS))).astype(float)
                counts = np.triu(counts, 1) + np.triu(counts, 1).T
                _write_matrix(folder / "dwi" / f"{stem}_atlas-Test_meas-count_relmat.tsv", counts)
                cohort.dwi[key] = counts
    extra = pd.DataFrame(
        [
            {
                "participant_id": "sub-nodata",
                "site": "site0",
                "age": 40.0,
                "sex": "F",
                "diagnosis": "control",
            }
        ]
    )
    full = pd.concat([participants, extra], ignore_index=True)
    full.to_csv(root / "participants.tsv", sep="\t", index=False)
    cohort.participants = full
    return cohort


@pytest.fixture
def derivatives_cohort(tmp_path: Path):
    """A factory writing a synthetic derivatives tree under ``tmp_path``."""

    def factory(**kwargs) -> SyntheticCohort:
        return write_cohort(tmp_path / "derivatives", **kwargs)

    return factory


@pytest.fixture(scope="session")
def cohort_writer():
    """:func:`write_cohort` itself, for fixtures with a wider scope than ``tmp_path``."""
    return write_cohort
