"""Decoding task conditions from activity patterns within a participant (pure numerics).

Patterns are one row per trial (least-squares-separate betas, Mumford et al. 2012) or one
row per block (the block's mean signal, delayed by the haemodynamic lag). Cross-validation
respects time: leave-one-run-out when there are several runs; with a single run,
contiguous folds with every training sample at least ``gap_s`` seconds (the length of
the haemodynamic response) away from every test sample, so that the slow BOLD response
to one trial cannot leak into the scores of its neighbours. The permutation test shuffles
the labels of whole blocks (within runs), which keeps the temporal autocorrelation of the
null data (Schreiber & Krekelberg 2013).

References
----------
Mumford JA, Turner BO, Ashby FG, Poldrack RA (2012). Deconvolving BOLD activation in
event-related designs for multivoxel pattern classification analyses. NeuroImage 59.
Schreiber K, Krekelberg B (2013). The statistical analysis of multi-voxel patterns in
functional imaging. PLoS One 8:e69328.
Varoquaux G et al. (2017). Assessing and tuning brain decoders: cross-validation,
caveats, and guidelines. NeuroImage 145.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from nilearn.glm.first_level import compute_regressor

from brainscale.errors import InputDataError
from brainscale.workflows.func.confounds import cosine_basis

HRF_LENGTH_S = 16.0
"""Default gap between training and test samples: the canonical HRF's main response
(peak ~5 s, back near baseline by ~15 s; Glover 1999)."""
BLOCK_DELAY_S = 4.0
"""Haemodynamic lag applied to block windows (s)."""
PATTERN_KINDS = ("lss", "block")


@dataclass
class Patterns:
    """Activity patterns with what the cross-validation needs to respect time.

    Attributes
    ----------
    values : numpy.ndarray of shape (n_samples, n_features)
    labels : numpy.ndarray of str
        The condition of each sample.
    times : numpy.ndarray
        Onset of each sample (s from the start of its run).
    runs : numpy.ndarray of int
        Run index of each sample.
    blocks : numpy.ndarray of int
        Block index (contiguous same-condition events), unique across runs.
    feature_names : list of str
    """

    values: np.ndarray
    labels: np.ndarray
    times: np.ndarray
    runs: np.ndarray
    blocks: np.ndarray
    feature_names: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """Return the table: ``run``, ``onset``, ``block``, ``trial_type``, then the features."""
        frame = pd.DataFrame(self.values, columns=self.feature_names)
        frame.insert(0, "trial_type", self.labels)
        frame.insert(0, "block", self.blocks)
        frame.insert(0, "onset", self.times)
        frame.insert(0, "run", self.runs)
        return frame

    @classmethod
    def from_table(cls, frame: pd.DataFrame) -> Patterns:
        """Inverse of :meth:`table`."""
        features = [c for c in frame.columns if c not in ("run", "onset", "block", "trial_type")]
        return cls(frame[features].to_numpy(dtype=float),
                   frame["trial_type"].astype(str).to_numpy(),
                   frame["onset"].to_numpy(dtype=float), frame["run"].to_numpy(dtype=int),
                   frame["block"].to_numpy(dtype=int), features)

    def subset(self, index: np.ndarray) -> Patterns:
        """Return the samples at ``index``."""
        return Patterns(self.values[index], self.labels[index], self.times[index],
                        self.runs[index], self.blocks[index], list(self.feature_names))


def select_events(events: pd.DataFrame, conditions: list[str] | None = None,
                  max_block_gap_s: float = 4.0) -> pd.DataFrame:
    """Keep the events of the decoded conditions and number their blocks.

    A block is a series of events of one condition whose onsets follow each other by at
    most ``max_block_gap_s`` after the previous event's end.

    Parameters
    ----------
    events : pandas.DataFrame
        ``onset``, ``duration``, ``trial_type``.
    conditions : list of str, optional
        ``trial_type`` values to decode (default: all).
    max_block_gap_s : float
        Longest pause inside a block.

    Returns
    -------
    pandas.DataFrame
        Sorted by onset, with a ``block`` column.

    Raises
    ------
    InputDataError
        When fewer than two of the conditions are present.
    """
    events = events.sort_values("onset", ignore_index=True)
    if conditions:
        missing = sorted(set(conditions) - set(events["trial_type"]))
        if missing:
            raise InputDataError(f"--decode-conditions {missing} not in the events "
                                 f"(found {sorted(events['trial_type'].unique())})")
        events = events[events["trial_type"].isin(conditions)].reset_index(drop=True)
    if events["trial_type"].nunique() < 2:
        raise InputDataError("decoding needs at least two conditions in the events")
    ends = (events["onset"] + events["duration"]).shift()
    new_block = (events["trial_type"] != events["trial_type"].shift()) | (
        events["onset"] - ends > max_block_gap_s)
    events["block"] = np.cumsum(new_block.to_numpy()) - 1
    return events


def nuisance_design(n_volumes: int, tr: float, confounds: np.ndarray | None = None
                    ) -> np.ndarray:
    """Return the nuisance regressors: intercept, cosine drifts (128 s) and optional confounds."""
    columns = [np.ones((n_volumes, 1)), cosine_basis(n_volumes, tr)]
    if confounds is not None and confounds.size:
        filled = np.nan_to_num(np.asarray(confounds, dtype=float))
        columns.append(filled - filled.mean(axis=0))
    return np.column_stack(columns)


def _residualize(data: np.ndarray, nuisance: np.ndarray) -> np.ndarray:
    beta, *_ = np.linalg.lstsq(nuisance, data, rcond=None)
    return data - nuisance @ beta


def trial_regressors(events: pd.DataFrame, n_volumes: int, tr: float,
                     slice_time_ref: float = 0.5) -> np.ndarray:
    """Return one Glover-HRF regressor per event, ``(n_volumes, n_events)``."""
    frame_times = (np.arange(n_volumes) + slice_time_ref) * tr
    columns = [compute_regressor(np.array([[row.onset], [row.duration], [1.0]]), "glover",
                                 frame_times, oversampling=16)[0][:, 0]
               for row in events.itertuples()]
    return np.column_stack(columns)


def lss_betas(data: np.ndarray, events: pd.DataFrame, tr: float, *,
              confounds: np.ndarray | None = None, n_nonsteady: int = 0) -> np.ndarray:
    """Least-squares-separate betas: one GLM per trial (Mumford et al. 2012).

    Each trial's model has the trial's regressor, one regressor for all the other
    trials, and the nuisance regressors. By the Frisch-Waugh-Lovell theorem the nuisance
    is removed once from the data and the regressors, after which every trial's fit is a
    2 x 2 solve: the cost is that of one regression, however many trials there are.

    Parameters
    ----------
    data : numpy.ndarray of shape (n_volumes, n_features)
        Parcel or voxel time series.
    events : pandas.DataFrame
        ``onset``, ``duration`` (s from the first volume).
    tr : float
        Repetition time (s).
    confounds : numpy.ndarray, optional
        Nuisance columns (e.g. the six motion parameters).
    n_nonsteady : int
        Leading volumes left out.

    Returns
    -------
    numpy.ndarray of shape (n_events, n_features)
        The trial betas, in the units of ``data`` per unit regressor.
    """
    n_volumes = data.shape[0]
    keep = np.arange(n_nonsteady, n_volumes)
    regressors = trial_regressors(events, n_volumes, tr)[keep]
    nuisance = nuisance_design(n_volumes, tr, confounds)[keep]
    series = _residualize(np.asarray(data, dtype=float)[keep], nuisance)
    trials = _residualize(regressors, nuisance)
    others = trials.sum(axis=1, keepdims=True) - trials
    cross = trials.T @ series                      # x_i' Y
    cross_others = cross.sum(axis=0) - cross       # (sum_j x_j - x_i)' Y
    a = np.einsum("ti,ti->i", trials, trials)
    b = np.einsum("ti,ti->i", trials, others)
    c = np.einsum("ti,ti->i", others, others)
    det = a * c - b * b
    det = np.where(np.abs(det) > 1e-12 * np.maximum(a * c, 1e-30), det, np.nan)
    return (c[:, None] * cross - b[:, None] * cross_others) / det[:, None]


def clean_series(data: np.ndarray, tr: float, *, confounds: np.ndarray | None = None,
                 n_nonsteady: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Remove the nuisance regressors and z-score each column (non-steady volumes dropped).

    Returns
    -------
    numpy.ndarray, numpy.ndarray
        The cleaned ``(n_kept, n_features)`` series and the mid-acquisition time of each
        kept volume (s).
    """
    n_volumes = data.shape[0]
    keep = np.arange(n_nonsteady, n_volumes)
    series = _residualize(np.asarray(data, dtype=float)[keep],
                          nuisance_design(n_volumes, tr, confounds)[keep])
    spread = series.std(axis=0)
    return series / np.where(spread > 0, spread, 1.0), keep * tr + tr / 2.0


def onset_windows(data: np.ndarray, onsets: np.ndarray, tr: float, n_timepoints: int, *,
                  confounds: np.ndarray | None = None, n_nonsteady: int = 0) -> np.ndarray:
    """Return cleaned time-series windows starting at each onset, for the sequence model.

    Volumes past the end of the run are zeros (the mean of the z-scored series), so
    every sample of the patterns gets a window and the folds stay the same.

    Returns
    -------
    numpy.ndarray of shape (n_onsets, n_timepoints, n_features)
    """
    series, times = clean_series(data, tr, confounds=confounds, n_nonsteady=n_nonsteady)
    padded = np.vstack([series, np.zeros((n_timepoints, series.shape[1]))])
    first = np.searchsorted(times, np.asarray(onsets, dtype=float))
    return np.stack([padded[k:k + n_timepoints] for k in first])


def block_patterns(data: np.ndarray, events: pd.DataFrame, tr: float, *,
                   confounds: np.ndarray | None = None, n_nonsteady: int = 0,
                   delay_s: float = BLOCK_DELAY_S) -> tuple[np.ndarray, pd.DataFrame]:
    """Average the (nuisance-cleaned, z-scored) signal over each block, delayed by the HRF lag.

    Returns
    -------
    numpy.ndarray of shape (n_blocks, n_features), pandas.DataFrame
        Block patterns and one row per block (``onset``, ``trial_type``, ``block``).
    """
    series, times = clean_series(data, tr, confounds=confounds, n_nonsteady=n_nonsteady)
    rows, values = [], []
    for block, group in events.groupby("block", sort=True):
        start = group["onset"].min() + delay_s
        stop = (group["onset"] + group["duration"]).max() + delay_s
        inside = (times >= start) & (times <= stop)
        if not inside.any():
            continue
        values.append(series[inside].mean(axis=0))
        rows.append({"onset": float(group["onset"].min()),
                     "trial_type": group["trial_type"].iloc[0], "block": int(block)})
    if not rows:
        raise InputDataError("no block of the decoded conditions falls inside the run")
    return np.vstack(values), pd.DataFrame(rows)


def time_respecting_folds(patterns: Patterns, n_folds: int = 5,
                          gap_s: float = HRF_LENGTH_S) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds that respect time.

    Several runs: leave one run out. One run: ``n_folds`` contiguous folds (by time);
    training keeps only samples at least ``gap_s`` seconds from every test sample.

    Parameters
    ----------
    patterns : Patterns
        Samples with their times and runs.
    n_folds : int
        Folds of a single run.
    gap_s : float
        Smallest distance in time between a training and a test sample (s).

    Returns
    -------
    list of (train_index, test_index)
    """
    runs = np.unique(patterns.runs)
    if len(runs) > 1:
        return [(np.flatnonzero(patterns.runs != run), np.flatnonzero(patterns.runs == run))
                for run in runs]
    order = np.argsort(patterns.times, kind="stable")
    folds = []
    for test in np.array_split(order, n_folds):
        if not len(test):
            continue
        lo, hi = patterns.times[test].min(), patterns.times[test].max()
        distance = np.maximum(lo - patterns.times, patterns.times - hi)
        train = np.flatnonzero(distance >= gap_s)
        if len(np.unique(patterns.labels[train])) >= 2:
            folds.append((train, np.sort(test)))
    if not folds:
        raise InputDataError(f"no fold keeps two conditions for training with a {gap_s:g} s gap")
    return folds


def extract_patterns(data: np.ndarray, events: pd.DataFrame, tr: float, *, kind: str = "lss",
                     confounds: np.ndarray | None = None, n_nonsteady: int = 0, run: int = 0,
                     feature_names: list[str] | None = None) -> Patterns:
    """Trial (``lss``) or block (``block``) patterns of one run.

    Parameters
    ----------
    data : numpy.ndarray of shape (n_volumes, n_features)
        Parcel or voxel time series.
    events : pandas.DataFrame
        From :func:`select_events` (with ``block``).
    tr : float
        Repetition time (s).
    kind : {"lss", "block"}
        Trial betas or block means.
    confounds : numpy.ndarray, optional
        Nuisance columns.
    n_nonsteady : int
        Leading volumes left out.
    run : int
        Run index recorded in the patterns.
    feature_names : list of str, optional
        Names of the columns of ``data``.

    Returns
    -------
    Patterns
        Events ending after the last volume, and features without a finite value in
        every sample, are dropped.
    """
    if kind not in PATTERN_KINDS:
        raise ValueError(f"pattern kind must be one of {PATTERN_KINDS}, not {kind!r}")
    names = list(feature_names) if feature_names is not None else [
        f"feature{k:05d}" for k in range(data.shape[1])]
    inside = events[events["onset"] < data.shape[0] * tr].reset_index(drop=True)
    if kind == "lss":
        values = lss_betas(data, inside, tr, confounds=confounds, n_nonsteady=n_nonsteady)
        rows = inside
    else:
        values, rows = block_patterns(data, inside, tr, confounds=confounds,
                                      n_nonsteady=n_nonsteady)
    valid = np.all(np.isfinite(values), axis=1)
    rows, values = rows[valid].reset_index(drop=True), values[valid]
    return Patterns(values, rows["trial_type"].astype(str).to_numpy(),
                    rows["onset"].to_numpy(dtype=float), np.full(len(rows), run, dtype=int),
                    rows["block"].to_numpy(dtype=int), names)


def concat_patterns(parts: list[Patterns]) -> Patterns:
    """Stack the patterns of several runs; block indices are made unique across runs."""
    offset, blocks = 0, []
    for part in parts:
        blocks.append(part.blocks + offset)
        offset += int(part.blocks.max()) + 1 if len(part.blocks) else 0
    return Patterns(np.vstack([p.values for p in parts]),
                    np.concatenate([p.labels for p in parts]),
                    np.concatenate([p.times for p in parts]),
                    np.concatenate([p.runs for p in parts]), np.concatenate(blocks),
                    list(parts[0].feature_names))
