"""Dynamic functional connectivity: tapered sliding windows, k-means states, state metrics.

Following Allen et al. (2014): windowed correlations with a rectangular window convolved
with a Gaussian (the taper; defaults 44 s and sigma 6 s, i.e. 22 and 3 TRs at TR 2 s),
slid by one step; Fisher-z edges of every window of every participant clustered by
k-means, initialised from each participant's exemplar windows (local maxima of the
variance of the windowed connectivity); each window labelled by its nearest centroid.
Per participant: the state sequence, fractional occupancy, mean dwell time and the
transition matrix.

References
----------
Allen EA, Damaraju E, Plis SM, Erhardt EB, Eichele T, Calhoun VD (2014). Tracking
whole-brain connectivity dynamics in the resting state. Cerebral Cortex 24:663-676.
Hutchison RM et al. (2013). Dynamic functional connectivity: promise, issues, and
interpretations. NeuroImage 80:360-378.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import argrelextrema
from scipy.special import ndtr
from sklearn.cluster import KMeans

WINDOW_S = 44.0
STEP_S = 2.0
TAPER_SIGMA_S = 6.0
N_STATES = 4


def tapered_window(length: int, sigma: float) -> np.ndarray:
    """Rectangle of ``length`` samples convolved with a Gaussian of ``sigma`` samples.

    The support is the rectangle extended by ``3 sigma`` on both sides; the weights are
    the exact convolution (differences of normal CDFs), with a maximum of ~1.
    """
    pad = int(np.ceil(3 * sigma))
    t = np.arange(-pad, length + pad) + 0.5
    if sigma <= 0:
        return np.ones(length)
    return ndtr((t - 0.0) / sigma) - ndtr((t - length) / sigma)


def weighted_correlation(series: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns of ``series`` with sample ``weights``.

    Rows with a non-finite value get weight 0; columns without spread are NaN.
    """
    finite = np.all(np.isfinite(series), axis=1)
    w = np.where(finite, weights, 0.0)
    x = np.where(finite[:, None], series, 0.0)
    total = w.sum()
    mean = (w @ x) / total
    centred = x - mean
    cov = (centred * w[:, None]).T @ centred / total
    scale = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(scale, scale)
    corr[:, scale <= 1e-12 * max(scale.max(), 1e-30)] = np.nan
    corr[scale <= 1e-12 * max(scale.max(), 1e-30), :] = np.nan
    return np.clip((corr + corr.T) / 2.0, -1.0, 1.0)


def sliding_window_connectivity(
    timeseries: np.ndarray, tr: float, *, window_s: float = WINDOW_S, step_s: float = STEP_S,
    taper_sigma_s: float = TAPER_SIGMA_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Tapered sliding-window correlation matrices.

    Parameters
    ----------
    timeseries : numpy.ndarray of shape (T, N)
        Denoised parcel time series; censored volumes are NaN rows (weight 0).
    tr : float
        Repetition time (s).
    window_s, step_s, taper_sigma_s : float
        Window length, step and Gaussian taper width, in seconds (rounded to volumes).

    Returns
    -------
    numpy.ndarray, numpy.ndarray
        Window centres (s from the first volume's acquisition) and the
        ``(n_windows, N, N)`` correlation matrices.

    Raises
    ------
    ValueError
        When the run is shorter than one window.
    """
    length = max(int(round(window_s / tr)), 3)
    step = max(int(round(step_s / tr)), 1)
    weights = tapered_window(length, taper_sigma_s / tr)
    support = len(weights)
    n_volumes = timeseries.shape[0]
    if n_volumes < support:
        raise ValueError(f"{n_volumes} volumes are fewer than one tapered window ({support})")
    starts = np.arange(0, n_volumes - support + 1, step)
    matrices = np.stack([weighted_correlation(timeseries[s:s + support], weights)
                         for s in starts])
    centres = (starts + (support - 1) / 2.0) * tr
    return centres, matrices


def window_edges(matrices: np.ndarray) -> np.ndarray:
    """Fisher-z upper-triangle edges of windowed matrices: ``(W, N, N) -> (W, N(N-1)/2)``."""
    rows, cols = np.triu_indices(matrices.shape[-1], k=1)
    return np.arctanh(np.clip(matrices[:, rows, cols], -1 + 1e-7, 1 - 1e-7))


def exemplar_windows(edges: np.ndarray) -> np.ndarray:
    """Return the windows where the variance across edges has a local maximum."""
    spread = edges.var(axis=1)
    peaks = argrelextrema(spread, np.greater)[0]
    return peaks if len(peaks) else np.array([int(np.argmax(spread))])


@dataclass
class StateModel:
    """Connectivity states of a cohort.

    Attributes
    ----------
    centroids : numpy.ndarray of shape (n_states, n_edges)
        Fisher-z centroids, ordered by decreasing overall occupancy.
    sequences : list of numpy.ndarray
        The state (0-based) of every window, one array per participant.
    """

    centroids: np.ndarray
    sequences: list[np.ndarray]

    @property
    def n_states(self) -> int:
        """Number of states."""
        return len(self.centroids)


def cluster_states(edges: list[np.ndarray], n_states: int = N_STATES, seed: int = 0,
                   n_init: int = 10) -> StateModel:
    """k-means states across a cohort (Allen et al. 2014), exemplar-initialised.

    Parameters
    ----------
    edges : list of numpy.ndarray of shape (n_windows_i, n_edges)
        Fisher-z windowed edges of each participant (:func:`window_edges`).
    n_states : int
        Number of states k.
    seed : int
        Random state of k-means.
    n_init : int
        Restarts of the exemplar clustering.

    Returns
    -------
    StateModel
        States relabelled by decreasing occupancy (state 0 is the most frequent).

    Raises
    ------
    ValueError
        When there are fewer windows than states.
    """
    stacked = np.vstack(edges)
    finite = np.all(np.isfinite(stacked), axis=0)
    stacked = stacked[:, finite]
    if len(stacked) < n_states:
        raise ValueError(f"{len(stacked)} windows cannot form {n_states} states")
    exemplars = np.vstack([e[exemplar_windows(e)][:, finite] for e in edges])
    if len(exemplars) >= n_states:
        init = KMeans(n_states, n_init=n_init, random_state=seed).fit(exemplars).cluster_centers_
        kmeans = KMeans(n_states, init=init, n_init=1, random_state=seed).fit(stacked)
    else:
        kmeans = KMeans(n_states, n_init=n_init, random_state=seed).fit(stacked)
    order = np.argsort(-np.bincount(kmeans.labels_, minlength=n_states), kind="stable")
    relabel = np.empty(n_states, dtype=int)
    relabel[order] = np.arange(n_states)
    centroids = np.full((n_states, len(finite)), np.nan)
    centroids[:, finite] = kmeans.cluster_centers_[order]
    labels, start = relabel[kmeans.labels_], 0
    sequences = []
    for e in edges:
        sequences.append(labels[start:start + len(e)])
        start += len(e)
    return StateModel(centroids, sequences)


def assign_states(edges: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Label each window with its nearest centroid (Euclidean, finite edges)."""
    finite = np.all(np.isfinite(centroids), axis=0) & np.all(np.isfinite(edges), axis=0)
    distance = ((edges[:, None, finite] - centroids[None, :, finite]) ** 2).sum(axis=2)
    return distance.argmin(axis=1)


def state_metrics(sequence: np.ndarray, n_states: int, step_s: float) -> dict[str, np.ndarray]:
    """Fractional occupancy, mean dwell time, transition matrix and number of transitions.

    Parameters
    ----------
    sequence : numpy.ndarray of int
        State of each window (0-based).
    n_states : int
        Number of states.
    step_s : float
        Time between windows (s): dwell times are in seconds.

    Returns
    -------
    dict
        ``fractional_occupancy`` (n_states,), ``mean_dwell_time_s`` (n_states,; 0 for a
        state never visited), ``transition_probability`` (n_states, n_states; row i: the
        probability of the next window's state given state i, 0 rows for unvisited
        states), ``n_transitions`` (int).
    """
    sequence = np.asarray(sequence, dtype=int)
    occupancy = np.bincount(sequence, minlength=n_states) / len(sequence)
    change = np.flatnonzero(np.diff(sequence)) + 1
    bounds = np.concatenate([[0], change, [len(sequence)]])
    run_states, run_lengths = sequence[bounds[:-1]], np.diff(bounds)
    dwell = np.zeros(n_states)
    for state in range(n_states):
        lengths = run_lengths[run_states == state]
        dwell[state] = lengths.mean() * step_s if len(lengths) else 0.0
    counts = np.zeros((n_states, n_states))
    np.add.at(counts, (sequence[:-1], sequence[1:]), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    probability = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return {"fractional_occupancy": occupancy, "mean_dwell_time_s": dwell,
            "transition_probability": probability, "n_transitions": int(len(change))}


def edges_to_matrix(edges: np.ndarray, n_regions: int, diagonal: float = np.nan) -> np.ndarray:
    """Rebuild a symmetric matrix from upper-triangle edges."""
    matrix = np.full((n_regions, n_regions), diagonal, dtype=float)
    rows, cols = np.triu_indices(n_regions, k=1)
    matrix[rows, cols] = edges
    matrix[cols, rows] = edges
    return matrix
