"""One decoding analysis: runs -> patterns -> every model on the same time-respecting folds.

This is the single numeric call of the participant-level decoding interface and of the
group-level re-analyses; the pieces are in :mod:`brainscale.workflows.func.decoding`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainscale.workflows.func import decoding, decoding_models

SEQUENCE_MODEL = "tcn"
"""Name of the temporal convolutional classifier.

The model is :mod:`brainscale.workflows.group.sequence_model`'s.
"""
ALL_MODELS = (*decoding_models.MODELS, SEQUENCE_MODEL)


@dataclass
class RunData:
    """The arrays of one run that decoding needs.

    Attributes
    ----------
    series : numpy.ndarray of shape (n_volumes, n_features)
    events : pandas.DataFrame
        ``onset``, ``duration``, ``trial_type``.
    tr : float
    confounds : numpy.ndarray or None
        Nuisance columns (the six motion parameters).
    n_nonsteady : int
    """

    series: np.ndarray
    events: pd.DataFrame
    tr: float
    confounds: np.ndarray | None = None
    n_nonsteady: int = 0


@dataclass
class DecodingAnalysis:
    """Patterns, folds and results of every model."""

    patterns: decoding.Patterns
    folds: list
    results: list[decoding_models.DecodingResult]

    def metrics(self) -> pd.DataFrame:
        """Return the metrics table, one row per model."""
        return pd.DataFrame([r.summary() for r in self.results])


def run_patterns(runs: list[RunData], *, kind: str, conditions: list[str] | None,
                 feature_names: list[str]) -> tuple[decoding.Patterns, list[pd.DataFrame]]:
    """Patterns of every run, stacked (run index = position in ``runs``)."""
    parts, selected = [], []
    for index, run in enumerate(runs):
        events = decoding.select_events(run.events, conditions)
        selected.append(events)
        parts.append(decoding.extract_patterns(
            run.series, events, run.tr, kind=kind, confounds=run.confounds,
            n_nonsteady=run.n_nonsteady, run=index, feature_names=feature_names))
    return decoding.concat_patterns(parts), selected


def sequence_windows(runs: list[RunData], patterns: decoding.Patterns,
                     window_s: float = decoding.HRF_LENGTH_S) -> tuple[np.ndarray, int]:
    """Flat time-series windows after every sample's onset, in the patterns' order."""
    n_timepoints = max(int(np.ceil(window_s / runs[0].tr)), 2)
    windows = []
    for index, run in enumerate(runs):
        in_run = patterns.runs == index
        windows.append(decoding.onset_windows(
            run.series, patterns.times[in_run], run.tr, n_timepoints,
            confounds=run.confounds, n_nonsteady=run.n_nonsteady))
    stacked = np.concatenate(windows)
    return stacked.reshape(len(stacked), -1), n_timepoints


def analyse(patterns: decoding.Patterns, folds, models, *, n_permutations: int, seed: int,
            windows: tuple[np.ndarray, int] | None = None, device: str = "auto",
            sequence_permutations: int = 0) -> list[decoding_models.DecodingResult]:
    """Evaluate every model on the same folds (the sequence model on ``windows``)."""
    results = []
    for model in models:
        if model == SEQUENCE_MODEL:
            if windows is None:
                continue
            from brainscale.workflows.group.sequence_model import TemporalConvClassifier

            flat, n_timepoints = windows
            estimator = TemporalConvClassifier(n_timepoints=n_timepoints, device=device,
                                               seed=seed)
            samples = decoding.Patterns(flat, patterns.labels, patterns.times, patterns.runs,
                                        patterns.blocks)
            results.append(decoding_models.evaluate_decoder(samples, estimator, folds, model=model,
                                                     n_permutations=sequence_permutations,
                                                     seed=seed))
            continue
        n_null = (min(n_permutations, decoding_models.FOREST_PERMUTATIONS) if model == "rf"
                  else n_permutations)
        results.append(decoding_models.evaluate_decoder(
            patterns, decoding_models.build_classifier(model, seed), folds, model=model,
            n_permutations=n_null, seed=seed))
    return results


def default_n_folds(patterns: decoding.Patterns) -> int:
    """Folds of a single run: the blocks of the least repeated condition, within 2-5.

    Every fold then can hold one block of each condition while the others train on the
    remaining repetitions (a one-back localizer with two blocks per category: halves).
    """
    blocks = pd.DataFrame({"label": patterns.labels, "block": patterns.blocks})
    repeats = blocks.drop_duplicates().groupby("label").size().min()
    return int(np.clip(repeats, 2, 5))


def decode_runs(runs: list[RunData], *, feature_names: list[str], kind: str = "lss",
                conditions: list[str] | None = None, models=decoding_models.MODELS,
                n_folds: int | None = None, gap_s: float = decoding.HRF_LENGTH_S,
                n_permutations: int = 100, seed: int = 0, device: str = "auto"
                ) -> DecodingAnalysis:
    """Decode the conditions of one participant's runs of a task.

    Parameters
    ----------
    runs : list of RunData
        One or several runs of one task (several: leave one run out).
    feature_names : list of str
        Names of the series' columns.
    feature_names : list of str
    kind : {"lss", "block"}
        Trial-wise LSS betas or block averages.
    conditions : list of str, optional
        ``trial_type`` values to decode (default all).
    models : sequence of str
        Among :data:`ALL_MODELS`; ``tcn`` (the sequence model) sees the time series
        windows after each onset and is tested by the same folds (its permutation test
        is skipped: it would refit the network ``n_permutations`` times).
    n_folds, gap_s : int or None, float
        Contiguous folds of a single run (default :func:`default_n_folds`) and their gap (s).
    n_permutations : int
        Block permutations per linear/forest model.
    seed : int
        Seed of the permutations, forest and network.
    device : str
        Torch device of the sequence model.

    Returns
    -------
    DecodingAnalysis
    """
    patterns, _ = run_patterns(runs, kind=kind, conditions=conditions,
                               feature_names=feature_names)
    if n_folds is None:
        n_folds = default_n_folds(patterns)
    folds = decoding.time_respecting_folds(patterns, n_folds=n_folds, gap_s=gap_s)
    windows = sequence_windows(runs, patterns) if SEQUENCE_MODEL in models else None
    results = analyse(patterns, folds, models, n_permutations=n_permutations, seed=seed,
                      windows=windows, device=device)
    return DecodingAnalysis(patterns, folds, results)
