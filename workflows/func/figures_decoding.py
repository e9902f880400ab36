"""Report figures of the brain-state analyses: decoding confusion matrices, state centroids."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from brainscale.writers import save_figure  # noqa: E402


def plot_decoding(results, out_file) -> str:
    """Save one row-normalised confusion matrix per model, titled with its scores (SVG).

    Parameters
    ----------
    results : list of brainscale.workflows.func.decoding_models.DecodingResult
        One per model.
    out_file : path-like
        Destination SVG.

    Returns
    -------
    str
        The written file.
    """
    n = max(len(results), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for ax, result in zip(axes[0], results, strict=False):
        totals = result.confusion.sum(axis=1, keepdims=True)
        rates = np.divide(result.confusion, totals, out=np.zeros(result.confusion.shape),
                          where=totals > 0)
        ax.imshow(rates, vmin=0, vmax=1, cmap="viridis")
        ticks = np.arange(len(result.classes))
        ax.set_xticks(ticks, result.classes, rotation=90, fontsize=7)
        ax.set_yticks(ticks, result.classes, fontsize=7)
        ax.set_xlabel("predicted")
        p = "" if np.isnan(result.p_value) else f", p={result.p_value:.3g}"
        ax.set_title(f"{result.model}: {result.balanced_accuracy:.2f} "
                     f"(chance {result.chance:.2f}{p})", fontsize=8)
    axes[0][0].set_ylabel("true")
    fig.tight_layout()
    save_figure(fig, out_file)
    plt.close(fig)
    return str(out_file)


def plot_state_centroids(centroids: list[np.ndarray], occupancy: np.ndarray, out_file) -> str:
    """Save the state centroid matrices side by side with their cohort occupancy (SVG).

    Parameters
    ----------
    centroids : list of numpy.ndarray of shape (N, N)
        Correlation matrices of the states.
    occupancy : numpy.ndarray
        Fraction of all windows in each state.
    out_file : path-like
        Destination SVG.

    Returns
    -------
    str
        The written file.
    """
    n = len(centroids)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.2), squeeze=False)
    for k, (ax, matrix) in enumerate(zip(axes[0], centroids, strict=True)):
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"state {k + 1} ({100 * occupancy[k]:.0f}%)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="r")
    save_figure(fig, out_file)
    plt.close(fig)
    return str(out_file)
