"""Cohort connectivity states from participant time series written like the participant level.

Truth: four participants whose parcel series switch between three known covariance
states; the states recovered across the cohort match the true state of every window
(adjusted Rand index >= 0.8, Allen et al. 2014's procedure), the centroids resemble the
true correlation matrices, and the metrics table joins the group feature tables.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from brainscale.workflows.group.collect import read_connectome
from brainscale.workflows.group.states import dynamic_state_features
from tests.unit.func.test_dynamic_connectivity import state_covariances, switching_series

TR = 2.0


def _write_participants(root, n_subjects=4):
    covariances = state_covariances()
    regions = [f"region{k:02d}" for k in range(len(covariances[0]))]
    truths = {}
    for subject in range(n_subjects):
        lengths = np.random.default_rng(100 + subject).integers(50, 90, size=6)
        series, truth = switching_series(covariances, lengths, seed=subject)
        series[5] = np.nan  # a censored volume
        func = root / f"sub-{subject + 1:02d}" / "func"
        func.mkdir(parents=True)
        stem = f"sub-{subject + 1:02d}_task-rest"
        pd.DataFrame(series, columns=regions).to_csv(
            func / f"{stem}_atlas-Toy_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
        (func / f"{stem}_space-MNI152NLin2009aSym_res-2_desc-preproc_bold.json").write_text(
            json.dumps({"RepetitionTime": TR}))
        truths[stem] = truth
    return covariances, regions, truths


def test_cohort_states_recover_known_switches(tmp_path):
    covariances, regions, truths = _write_participants(tmp_path / "out")
    notes = []
    tables, figures = dynamic_state_features(tmp_path / "out", tmp_path / "out" / "group",
                                             n_states=3, seed=0, notes=notes)
    assert list(tables) == ["func_task-rest_atlas-Toy_states"] and not notes
    states_dir = tmp_path / "out" / "group" / "states"
    found, expected = [], []
    for stem, truth in truths.items():
        sequence = pd.read_csv(states_dir / f"{stem}_atlas-Toy_desc-states_timeseries.tsv",
                               sep="\t")
        index = np.round(sequence["window_center_s"].to_numpy() / TR - 0.5).astype(int)
        found.append(sequence["state"].to_numpy())
        expected.append(truth[index])
    assert adjusted_rand_score(np.concatenate(expected), np.concatenate(found)) >= 0.8

    true_corr = [c / np.sqrt(np.outer(np.diag(c), np.diag(c))) for c in covariances]
    rows, cols = np.triu_indices(len(regions), k=1)
    for k in range(3):
        names, centroid = read_connectome(
            states_dir / f"task-rest_atlas-Toy_meas-PearsonCorrelation_desc-state{k + 1}_relmat.tsv")
        assert names == regions
        best = max(np.corrcoef(centroid[rows, cols], t[rows, cols])[0, 1] for t in true_corr)
        assert best > 0.9  # each centroid is one of the true states

    table = tables["func_task-rest_atlas-Toy_states"]
    assert list(table["participant_id"]) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    occupancy = table[[f"fractional_occupancy_state{k}" for k in (1, 2, 3)]].sum(axis=1)
    assert np.allclose(occupancy, 1.0)
    transitions = table[[f"transition_state1_to_state{j}" for j in (1, 2, 3)]].sum(axis=1)
    assert np.allclose(transitions, 1.0)
    # true segments last 50-90 volumes (100-180 s); windows blur the switches, so the
    # mean dwell time is of that order, far from the 2 s of a random sequence
    dwell = table[[f"mean_dwell_time_s_state{k}" for k in (1, 2, 3)]].to_numpy()
    assert 40.0 < np.nanmean(np.where(dwell > 0, dwell, np.nan)) < 300.0
    assert (tmp_path / "out" / "group" / "figures" / "task-rest_atlas-Toy_states.svg").is_file()
    assert figures


def test_run_without_repetition_time_or_too_short_is_noted(tmp_path):
    func = tmp_path / "out" / "sub-01" / "func"
    func.mkdir(parents=True)
    pd.DataFrame(np.zeros((10, 3)), columns=list("abc")).to_csv(
        func / "sub-01_task-rest_atlas-Toy_timeseries.tsv", sep="\t", index=False)
    notes = []
    tables, _ = dynamic_state_features(tmp_path / "out", tmp_path / "group", notes=notes)
    assert tables == {} and "no RepetitionTime" in notes[0]
    (func / "sub-01_task-rest_atlas-Toy_timeseries.json").write_text('{"RepetitionTime": 2}')
    notes = []
    tables, _ = dynamic_state_features(tmp_path / "out", tmp_path / "group", notes=notes)
    assert tables == {} and any("fewer than one tapered window" in n for n in notes)


@pytest.mark.parametrize("n_states", [2, 4])
def test_number_of_states_sets_the_table_columns(tmp_path, n_states):
    _write_participants(tmp_path / "out", n_subjects=2)
    tables, _ = dynamic_state_features(tmp_path / "out", tmp_path / "group", n_states=n_states)
    table = tables["func_task-rest_atlas-Toy_states"]
    assert sum(c.startswith("fractional_occupancy") for c in table.columns) == n_states
    assert sum(c.startswith("transition_") for c in table.columns) == n_states ** 2


def test_run_group_joins_state_metrics_and_reports_them(tmp_path):
    """The group level writes the states, adds their table to the feature sets and the report."""
    from brainscale.workflows.func.connectivity import pearson_matrix, relmat_frame
    from brainscale.workflows.group.run import run_group

    out = tmp_path / "out"
    _, regions, truths = _write_participants(out)
    for stem in truths:
        func = out / stem.split("_")[0] / "func"
        series = pd.read_csv(func / f"{stem}_atlas-Toy_timeseries.tsv", sep="\t").dropna()
        relmat_frame(pearson_matrix(series.to_numpy()), regions).to_csv(
            func / f"{stem}_atlas-Toy_meas-PearsonCorrelation_relmat.tsv", sep="\t",
            index=False)
    participants = tmp_path / "participants.tsv"
    pd.DataFrame({"participant_id": [f"sub-0{k}" for k in range(1, 5)],
                  "site": ["a", "a", "b", "b"]}).to_csv(participants, sep="\t", index=False)
    report = run_group(out, participants, harmonize_by=None, covariates=[], target=None,
                       seed=0, n_permutations=9, dfc_states=3, qc_exclude="none")
    features = pd.read_csv(out / "group" / "features" / "func_task-rest_atlas-Toy_states.tsv",
                           sep="\t")
    assert len(features) == 4 and "fractional_occupancy_state3" in features.columns
    text = report.read_text()
    assert "Brain states" in text and "task-rest_atlas-Toy_states.svg" in text
