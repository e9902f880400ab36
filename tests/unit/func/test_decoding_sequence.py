"""The temporal convolutional classifier beside the linear baseline, on the same folds.

Truth: two conditions activate the same two parcels with the same mean amplitude but in
opposite temporal order. A pattern per sample (the window mean) carries no information,
so the linear baseline is at chance; the order is visible in the time course, so the
sequence model decodes it. CPU and CUDA agree within floating-point tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainscale.workflows.func import decoding, decoding_models
from brainscale.workflows.group.sequence_model import TemporalConvClassifier, flatten_windows

N_TIME, N_PARCELS = 8, 6


def ordered_windows(n_per_class: int = 40, seed: int = 0):
    """Windows where class 'ab' has parcel 0 then parcel 1 active, class 'ba' the reverse."""
    rng = np.random.default_rng(seed)
    bump = np.exp(-0.5 * ((np.arange(N_TIME) - 2.0) / 1.0) ** 2)
    late = np.roll(bump, 3)
    windows, labels = [], []
    for label in ("ab", "ba"):
        for _ in range(n_per_class):
            window = rng.standard_normal((N_TIME, N_PARCELS)) * 0.5
            first, second = (0, 1) if label == "ab" else (1, 0)
            window[:, first] += 1.5 * bump
            window[:, second] += 1.5 * late
            windows.append(window)
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.asarray(windows)[order], np.asarray(labels)[order]


def _patterns(windows, labels):
    n = len(labels)
    times = np.arange(n) * 30.0  # samples 30 s apart: gap folds keep them all
    return decoding.Patterns(windows.mean(axis=1), labels, times, np.zeros(n, int),
                             np.arange(n), [f"p{k}" for k in range(N_PARCELS)])


def test_sequence_model_sees_order_the_linear_baseline_cannot():
    windows, labels = ordered_windows()
    patterns = _patterns(windows, labels)
    folds = decoding.time_respecting_folds(patterns, n_folds=4, gap_s=16.0)
    baseline = decoding_models.evaluate_decoder(patterns, decoding_models.build_classifier("logreg"), folds,
                                         n_permutations=0)
    sequence = decoding.Patterns(flatten_windows(windows), labels, patterns.times,
                                 patterns.runs, patterns.blocks)
    model = TemporalConvClassifier(n_timepoints=N_TIME, device="cpu", seed=0, epochs=40)
    result = decoding_models.evaluate_decoder(sequence, model, folds, n_permutations=0)
    assert baseline.balanced_accuracy < 0.7   # chance is 0.5: the means are equal
    assert result.balanced_accuracy > 0.85
    assert [len(t) for _, t in folds] == [20, 20, 20, 20]


def test_sequence_model_is_reproducible_and_sklearn_compatible():
    from sklearn.base import clone

    windows, labels = ordered_windows(20, seed=1)
    X = flatten_windows(windows)
    first = TemporalConvClassifier(n_timepoints=N_TIME, device="cpu", epochs=10).fit(X, labels)
    second = clone(first).fit(X, labels)
    assert np.allclose(first.predict_proba(X), second.predict_proba(X))
    assert set(first.predict(X)) <= {"ab", "ba"}
    assert first.feature_importances_.shape == (N_TIME * N_PARCELS,)
    with pytest.raises(ValueError, match="timepoints"):
        TemporalConvClassifier(n_timepoints=7, device="cpu").fit(X, labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    windows, labels = ordered_windows(20, seed=2)
    X = flatten_windows(windows)
    cpu = TemporalConvClassifier(n_timepoints=N_TIME, device="cpu", epochs=20).fit(X, labels)
    gpu = TemporalConvClassifier(n_timepoints=N_TIME, device="cuda", epochs=20).fit(X, labels)
    assert np.allclose(cpu.predict_proba(X), gpu.predict_proba(X), atol=1e-3)
