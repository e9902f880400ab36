"""Decoding across participants (leave-participant-out, leave-site-out) and across runs.

Truth: participants share planted condition patterns (each with its own noise, drift and
overall response), so a decoder trained on the others decodes a held-out participant or
site above chance; without the patterns it is at chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainscale.workflows.func import decoding
from brainscale.workflows.group.decoding import group_decoding
from tests.unit.func.test_decoding import TR, block_events, synthetic_run


def _write(root, amplitude, n_subjects=4, two_runs_for=None):
    events = decoding.select_events(block_events())
    for subject in range(n_subjects):
        func = root / f"sub-{subject + 1:02d}" / "func"
        func.mkdir(parents=True)
        runs = 2 if subject == two_runs_for else 1
        for run in range(runs):
            data = synthetic_run(events, pattern_amplitude=amplitude, seed=10 * subject + run,
                                 pattern_seed=99)
            patterns = decoding.extract_patterns(data, events, TR, kind="lss",
                                                 feature_names=[f"p{k}" for k in range(30)])
            run_entity = f"_run-{run + 1}" if runs > 1 else ""
            patterns.table().drop(columns="run").to_csv(
                func / f"sub-{subject + 1:02d}_task-oneback{run_entity}_atlas-Toy_desc-lss_"
                       "patterns.tsv", sep="\t", index=False)


def test_shared_patterns_are_decoded_in_held_out_participants_and_sites(tmp_path):
    _write(tmp_path / "out", 1.0, two_runs_for=0)
    sites = pd.Series(["a", "a", "b", "b"], index=[f"sub-0{k}" for k in range(1, 5)])
    table = group_decoding(tmp_path / "out", tmp_path / "group", sites=sites,
                           models=("logreg",), n_permutations=19)
    group = table[table["scope"] == "group"].set_index("cv")
    assert set(group.index) == {"lopo", "loso"}
    assert (group["balanced_accuracy"] > 0.6).all()
    assert (group["permutation_p"] <= 0.05 + 1e-9).all()
    assert group.loc["lopo", "n_folds"] == 4 and group.loc["loso", "n_folds"] == 2
    loro = table[table["cv"] == "loro"]
    assert list(loro["scope"]) == ["sub-01"] and loro["n_folds"].iloc[0] == 2
    assert loro["balanced_accuracy"].iloc[0] > 0.6
    confusion = pd.read_csv(tmp_path / "group" / "decoding"
                            / "task-oneback_atlas-Toy_desc-lss_cv-lopo_model-logreg_confusion.tsv",
                            sep="\t")
    assert confusion.drop(columns="trial_type").to_numpy().sum() == 4 * 192 + 192


def test_without_patterns_held_out_participants_are_at_chance(tmp_path):
    _write(tmp_path / "out", 0.0, n_subjects=6)
    table = group_decoding(tmp_path / "out", tmp_path / "group", models=("logreg",),
                           n_permutations=19)
    assert table["balanced_accuracy"].iloc[0] == pytest.approx(0.25, abs=0.1)
    assert table["permutation_p"].iloc[0] > 0.05


def test_single_participant_is_noted(tmp_path):
    _write(tmp_path / "out", 1.0, n_subjects=1)
    notes = []
    table = group_decoding(tmp_path / "out", tmp_path / "group", notes=notes)
    assert table.empty and "two participants" in notes[0]


def test_group_folds_leave_groups_out_and_cap_their_number():
    from brainscale.workflows.group.decoding import group_folds

    groups = np.repeat([f"sub-{k:02d}" for k in range(25)], 3)
    folds = group_folds(groups)
    assert len(folds) == 10
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([t for _, t in folds])) == list(range(75))
    assert len(group_folds(groups[:12])) == 4  # 4 participants: leave one out
