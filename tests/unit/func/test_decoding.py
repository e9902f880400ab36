"""Decoding task conditions within a participant: synthetic BOLD with planted patterns.

Truth: condition-specific patterns planted in block-design BOLD are decoded above chance;
with the patterns removed (a task response shared by every condition and slow,
autocorrelated noise remain) the time-respecting folds give chance, while shuffled
K-fold on the same trials does not (the leakage that the gap removes; Mumford et al.
2014, Varoquaux et al. 2017).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from brainscale.errors import InputDataError
from brainscale.workflows.func import decoding, decoding_models

TR = 2.0
CONDITIONS = ("face", "house", "body", "object")


def block_events(n_repeats: int = 3, trials_per_block: int = 16, rest_s: float = 8.0,
                 lead_s: float = 12.0) -> pd.DataFrame:
    """A one-back-like design: blocks of 1 s trials, conditions in a shuffled order per cycle."""
    rng = np.random.default_rng(7)
    rows, t = [], lead_s
    for _ in range(n_repeats):
        for condition in rng.permutation(CONDITIONS):
            for _ in range(trials_per_block):
                rows.append({"onset": t, "duration": 0.9, "trial_type": condition})
                t += 1.0
            t += rest_s
    return pd.DataFrame(rows)


def synthetic_run(events: pd.DataFrame, *, n_features: int = 30, pattern_amplitude: float = 1.0,
                  rho: float = 0.9, noise: float = 1.0, seed: int = 0,
                  pattern_seed: int | None = None):
    """BOLD-like series: shared task response + planted condition patterns + AR(1) noise.

    ``pattern_seed`` draws the condition patterns (default ``seed``); participants given
    one ``pattern_seed`` share their patterns.
    """
    rng = np.random.default_rng(seed)
    n_volumes = int(np.ceil((events["onset"].max() + 20.0) / TR))
    regressors = decoding.trial_regressors(events, n_volumes, TR)
    shared = rng.normal(1.0, 0.2, n_features)
    pattern_rng = rng if pattern_seed is None else np.random.default_rng(pattern_seed)
    patterns = {c: pattern_rng.standard_normal(n_features) for c in CONDITIONS}
    planted = np.stack([patterns[c] for c in events["trial_type"]])
    signal = regressors @ (shared[None, :] + pattern_amplitude * planted)
    innovations = rng.standard_normal((n_volumes, n_features)) * noise
    ar = np.empty_like(innovations)
    ar[0] = innovations[0]
    for t in range(1, n_volumes):
        ar[t] = rho * ar[t - 1] + np.sqrt(1 - rho**2) * innovations[t]
    drift = np.linspace(0, 3, n_volumes)[:, None] * rng.standard_normal(n_features)
    return 100.0 + signal + ar * 1.5 + drift


def _patterns(amplitude, seed, kind="lss"):
    events = decoding.select_events(block_events())
    data = synthetic_run(events, pattern_amplitude=amplitude, seed=seed)
    return decoding.extract_patterns(data, events, TR, kind=kind)


def test_lss_equals_one_least_squares_fit_per_trial():
    """The 2 x 2 shortcut gives the betas of Mumford et al.'s one-GLM-per-trial definition."""
    events = decoding.select_events(block_events(n_repeats=1))
    n_volumes = 80
    rng = np.random.default_rng(0)
    regressors = decoding.trial_regressors(events, n_volumes, TR)
    motion = rng.standard_normal((n_volumes, 6))
    data = (regressors @ rng.standard_normal((len(events), 3)) + 50.0
            + np.linspace(0, 2, n_volumes)[:, None] + rng.standard_normal((n_volumes, 3)))
    betas = decoding.lss_betas(data, events, TR, confounds=motion, n_nonsteady=2)
    nuisance = decoding.nuisance_design(n_volumes, TR, motion)
    keep = slice(2, None)
    for trial in (0, 17, len(events) - 1):
        others = regressors.sum(axis=1) - regressors[:, trial]
        design = np.column_stack([regressors[:, trial], others, nuisance])[keep]
        reference, *_ = np.linalg.lstsq(design, data[keep], rcond=None)
        assert np.allclose(betas[trial], reference[0], rtol=1e-6, atol=1e-8)
    # noise-free data with one amplitude: every LSS beta is that amplitude
    equal = regressors @ np.full((len(events), 3), 2.0) + 50.0
    assert np.allclose(decoding.lss_betas(equal, events, TR), 2.0, atol=1e-6)


def test_gap_folds_keep_training_samples_away_from_test_samples():
    patterns = _patterns(1.0, 0)
    folds = decoding.time_respecting_folds(patterns, n_folds=4, gap_s=16.0)
    assert len(folds) == 4
    covered = np.sort(np.concatenate([test for _, test in folds]))
    assert np.array_equal(covered, np.arange(len(patterns.labels)))
    for train, test in folds:
        gaps = np.abs(patterns.times[train][:, None] - patterns.times[test][None, :])
        assert gaps.min() >= 16.0
        assert not set(train) & set(test)


def test_leave_one_run_out_with_several_runs():
    parts = [_patterns(1.0, seed) for seed in (0, 1)]
    for run, part in enumerate(parts):
        part.runs[:] = run
    patterns = decoding.concat_patterns(parts)
    folds = decoding.time_respecting_folds(patterns)
    assert len(folds) == 2
    assert set(patterns.runs[folds[0][1]]) == {0} and set(patterns.runs[folds[0][0]]) == {1}
    assert len(np.unique(patterns.blocks)) == 2 * len(np.unique(parts[0].blocks))


@pytest.mark.parametrize("model", decoding_models.MODELS)
def test_planted_patterns_are_decoded_above_chance(model):
    patterns = _patterns(1.0, 0)
    folds = decoding.time_respecting_folds(patterns, n_folds=3)
    n_permutations = 19 if model == "logreg" else 0  # the forest's are slow: one model is enough
    result = decoding_models.evaluate_decoder(patterns, decoding_models.build_classifier(model), folds,
                                       model=model, n_permutations=n_permutations, seed=0)
    assert result.chance == pytest.approx(0.25)
    assert result.balanced_accuracy > 0.6
    if n_permutations:
        assert result.p_value == pytest.approx(1 / 20)  # no permutation reaches it
    assert result.confusion.sum() == len(patterns.labels)
    assert np.trace(result.confusion) / result.confusion.sum() > 0.6
    n_rows = 4 if model != "rf" else 1
    assert result.weights.shape == (n_rows, patterns.values.shape[1])


def test_block_patterns_are_decoded_above_chance():
    patterns = _patterns(1.0, 0, kind="block")
    assert len(patterns.labels) == 12
    folds = decoding.time_respecting_folds(patterns, n_folds=3, gap_s=16.0)
    result = decoding_models.evaluate_decoder(patterns, decoding_models.build_classifier("logreg"), folds,
                                       n_permutations=0)
    assert result.balanced_accuracy > 0.6


def test_no_leakage_without_patterns():
    """Patterns removed: gap folds are at chance; shuffled K-fold (the leak) is not."""
    gap_scores, naive_scores, p_values = [], [], []
    for seed in range(6):
        patterns = _patterns(0.0, seed)
        folds = decoding.time_respecting_folds(patterns, n_folds=3)
        result = decoding_models.evaluate_decoder(patterns, decoding_models.build_classifier("logreg"), folds,
                                           n_permutations=19, seed=seed)
        gap_scores.append(result.balanced_accuracy)
        p_values.append(result.p_value)
        shuffled = StratifiedKFold(3, shuffle=True, random_state=seed)
        predicted = cross_val_predict(decoding_models.build_classifier("logreg"), patterns.values,
                                      patterns.labels, cv=shuffled)
        naive_scores.append(balanced_accuracy_score(patterns.labels, predicted))
    # chance is 0.25; the standard error of the mean of 6 scores on 12 blocks is ~0.06
    assert 0.12 < np.mean(gap_scores) < 0.38
    assert np.mean(np.asarray(p_values) < 0.05) <= 0.25
    assert np.mean(naive_scores) > 0.5  # neighbouring trials share noise: the leak is real


def test_permutation_keeps_blocks_whole():
    patterns = _patterns(1.0, 0)
    shuffled = decoding_models.permute_blocks(patterns.labels, patterns.blocks, patterns.runs,
                                       np.random.default_rng(0))
    for block in np.unique(patterns.blocks):
        assert len(set(shuffled[patterns.blocks == block])) == 1
    assert sorted(shuffled) == sorted(patterns.labels)


def test_unknown_condition_is_a_clear_error():
    with pytest.raises(InputDataError, match="not in the events"):
        decoding.select_events(block_events(), ["face", "tools"])
    with pytest.raises(InputDataError, match="two conditions"):
        decoding.select_events(block_events(), ["face"])


@pytest.mark.parametrize("model", decoding_models.LINEAR_MODELS)
def test_row_space_fit_equals_the_full_fit(model):
    """More voxels than trials: the projected fit has the same weights and decisions."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from brainscale.workflows.group.classify import build_model

    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 400))
    y = np.repeat(["a", "b", "c"], 20)
    X[:, :10] += (y == "a")[:, None] * 0.8
    tight = {"tol": 1e-10, "max_iter": 200000}  # exact optima, so that the two can be compared
    fast = decoding_models.build_classifier(model)
    fast[-1].set_params(**tight)
    full = make_pipeline(StandardScaler(), build_model(model, "classification")[0])
    full[-1].set_params(**tight)
    fast.fit(X, y)
    full.fit(X, y)
    assert fast.named_steps["rowspaceprojection"].components_.shape == (59, 400)
    test = rng.standard_normal((30, 400))
    assert np.allclose(fast.decision_function(test), full.decision_function(test), atol=1e-6)
    weights, kind = decoding_models.model_weights(fast, ["a", "b", "c"])
    assert kind == "weight" and weights.shape == (3, 400)
    assert np.allclose(weights, full[-1].coef_, atol=1e-6)
