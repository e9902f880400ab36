"""Dynamic FC: tapered windows, state recovery from known switches, state metrics.

Truth: series drawn from known covariance states switching at known times are clustered
back into the same states (adjusted Rand index >= 0.8 against the true state at every
window centre), as Allen et al. (2014) do for resting-state data.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from brainscale.workflows.func import dynamic_connectivity as dfc

TR = 2.0


def state_covariances(n_regions: int = 12, n_states: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Block-structured correlation matrices, one community layout per state."""
    rng = np.random.default_rng(seed)
    covariances = []
    for _ in range(n_states):
        modules = rng.integers(0, 3, n_regions)
        corr = np.where(modules[:, None] == modules[None, :], 0.7, -0.1)
        np.fill_diagonal(corr, 1.0)
        eigval, eigvec = np.linalg.eigh(corr)
        covariances.append(eigvec @ np.diag(np.clip(eigval, 0.05, None)) @ eigvec.T)
    return covariances


def switching_series(covariances, segment_lengths, seed: int = 0):
    """Gaussian series whose covariance is state ``s`` during each segment; true states."""
    rng = np.random.default_rng(seed)
    chunks, truth = [], []
    states = rng.permutation(np.resize(np.arange(len(covariances)), len(segment_lengths)))
    for state, length in zip(states, segment_lengths, strict=True):
        chol = np.linalg.cholesky(covariances[state])
        chunks.append(rng.standard_normal((length, len(chol))) @ chol.T)
        truth += [state] * length
    return np.vstack(chunks), np.asarray(truth)


def test_tapered_window_is_a_smoothed_rectangle():
    window = dfc.tapered_window(22, 3.0)
    assert len(window) == 22 + 2 * 9
    assert window.sum() == pytest.approx(22.0, rel=1e-3)  # convolution keeps the area
    assert window.max() == pytest.approx(1.0, abs=1e-3) and window[0] < 0.01
    assert np.allclose(window, window[::-1])


def test_weighted_correlation_reduces_to_pearson():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    assert np.allclose(dfc.weighted_correlation(x, np.ones(50)), np.corrcoef(x, rowvar=False))
    weights = (np.arange(50) < 30).astype(float)
    assert np.allclose(dfc.weighted_correlation(x, weights), np.corrcoef(x[:30], rowvar=False))
    censored = x.copy()
    censored[30:] = np.nan  # NaN rows (censored volumes) weigh 0
    assert np.allclose(dfc.weighted_correlation(censored, np.ones(50)),
                       np.corrcoef(x[:30], rowvar=False))


def test_windows_track_a_known_correlation():
    rng = np.random.default_rng(1)
    common = rng.standard_normal(400)
    series = np.column_stack([common + 0.5 * rng.standard_normal(400) for _ in range(3)])
    centres, matrices = dfc.sliding_window_connectivity(series, TR, window_s=60, step_s=4)
    assert matrices.shape[1:] == (3, 3) and len(centres) == len(matrices)
    assert np.all(np.diff(centres) == pytest.approx(4.0))
    # true correlation 1 / (1 + 0.25) = 0.8
    assert np.median(matrices[:, 0, 1]) == pytest.approx(0.8, abs=0.05)


def test_known_state_switches_are_recovered():
    covariances = state_covariances()
    edges, truths = [], []
    for subject in range(4):
        lengths = np.random.default_rng(100 + subject).integers(50, 90, size=6)
        series, truth = switching_series(covariances, lengths, seed=subject)
        centres, matrices = dfc.sliding_window_connectivity(series, TR)
        edges.append(dfc.window_edges(matrices))
        truths.append(truth[np.round(centres / TR - 0.5).astype(int)])
    model = dfc.cluster_states(edges, n_states=3, seed=0)
    ari = adjusted_rand_score(np.concatenate(truths), np.concatenate(model.sequences))
    assert ari >= 0.8
    assert model.centroids.shape == (3, 12 * 11 // 2)
    occupancy = np.bincount(np.concatenate(model.sequences), minlength=3)
    assert np.all(np.diff(occupancy) <= 0)  # state 0 is the most frequent
    relabelled = dfc.assign_states(edges[0], model.centroids)
    assert np.mean(relabelled == model.sequences[0]) > 0.95


def test_state_metrics_of_a_known_sequence():
    sequence = np.array([0, 0, 0, 1, 1, 0, 0, 2, 2, 2, 2, 0])
    metrics = dfc.state_metrics(sequence, n_states=4, step_s=2.0)
    assert np.allclose(metrics["fractional_occupancy"], [6 / 12, 2 / 12, 4 / 12, 0])
    # state 0 runs of 3, 2, 1 windows -> 2 windows mean -> 4 s
    assert np.allclose(metrics["mean_dwell_time_s"], [4.0, 4.0, 8.0, 0.0])
    assert metrics["n_transitions"] == 4
    probability = metrics["transition_probability"]
    assert np.allclose(probability[0], [3 / 5, 1 / 5, 1 / 5, 0])
    assert np.allclose(probability[2], [1 / 4, 0, 3 / 4, 0])
    assert np.allclose(probability[3], 0)


def test_too_short_run_is_refused():
    with pytest.raises(ValueError, match="fewer than one tapered window"):
        dfc.sliding_window_connectivity(np.zeros((10, 3)), TR)
