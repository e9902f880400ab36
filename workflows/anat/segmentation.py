"""Tissue classification: a Gaussian mixture of intensities weighted by spatial priors.

The model is the one of SPM's unified segmentation and of ANTs Atropos with prior
probability images, without the Markov random field term: for voxel ``i`` and class
``k``, ``p(k | I_i) ∝ prior_k(i) * N(I_i; mu_k, sigma_k)``, with class means and
variances re-estimated by expectation-maximisation (Ashburner & Friston, 2005).

Voxels on a tissue boundary hold a mixture of two tissues. Without a model for them the
GM Gaussian widens to absorb the GM/WM and CSF/GM mixtures on both of its sides and
claims them whole, which inflates GM and thickens the cortex. Optional *mixed classes*
(as in the partial-volume models of Santago & Gage, 1993, and Shattuck et al., 2001)
have their mean halfway between the two pure tissues and the variance of a uniform
mixing fraction; their posterior is shared between the two tissues in proportion to
the fraction estimated from the intensity, so the probability maps become
partial-volume fractions.
"""

from __future__ import annotations

import numpy as np

from brainscale.errors import InputDataError

TISSUES = ("CSF", "GM", "WM")
"""Tissue classes in the order of the discrete segmentation labels 1, 2, 3."""

TISSUE_MIXTURES = ((0, 1), (1, 2))
"""Mixed classes modelled on tissue boundaries: CSF/GM and GM/WM."""


def classify_tissues(
    intensity: np.ndarray,
    priors: np.ndarray,
    mask: np.ndarray,
    n_iter: int = 15,
    prior_floor: float = 1e-3,
    mixtures: tuple[tuple[int, int], ...] = (),
) -> np.ndarray:
    """Estimate class posteriors with a prior-weighted Gaussian mixture.

    Parameters
    ----------
    intensity : numpy.ndarray
        3D intensity image.
    priors : numpy.ndarray
        ``(K, *intensity.shape)`` prior probabilities of the K classes.
    mask : numpy.ndarray
        Boolean 3D mask of the voxels to classify.
    n_iter : int
        Number of EM iterations.
    prior_floor : float
        Small probability added to every prior so that intensities can overrule a
        misregistered prior.
    mixtures : tuple of (int, int)
        Pairs of classes whose boundary voxels get a mixed class (e.g. ``((0, 1), (1, 2))``
        for CSF/GM and GM/WM); its prior is the geometric mean of the two priors.

    Returns
    -------
    numpy.ndarray
        ``(K, *intensity.shape)`` float32 probabilities of the K classes, 0 outside
        ``mask``; they sum to 1 inside the mask. With ``mixtures`` they are tissue
        fractions: a mixed-class voxel is shared between its two tissues.

    Raises
    ------
    brainscale.errors.InputDataError
        When the mask is empty or the shapes disagree.
    """
    if priors.shape[1:] != intensity.shape or mask.shape != intensity.shape:
        raise InputDataError(
            f"priors {priors.shape} / mask {mask.shape} do not match image {intensity.shape}")
    if not mask.any():
        raise InputDataError("the brain mask is empty: cannot classify tissues")
    values = intensity[mask].astype(np.float64)
    scale = float(np.percentile(values, 99)) or 1.0
    values = values / scale
    pure = priors[:, mask].astype(np.float64) + prior_floor
    pure /= pure.sum(axis=0, keepdims=True)
    prior = np.concatenate([pure] + [np.sqrt(pure[[a]] * pure[[b]]) for a, b in mixtures])
    prior /= prior.sum(axis=0, keepdims=True)
    n_pure = len(pure)
    post = prior.copy()
    mean, var = _robust_moments(pure, values)
    if np.ptp(mean) < 0.05 * values.std():
        # uninformative priors: start from intensity quantiles (classes in increasing order)
        mean = np.quantile(values, (np.arange(len(mean)) + 0.5) / len(mean))
        var = np.full(len(mean), values.var() / len(mean) ** 2)
    for iteration in range(n_iter):
        if iteration:
            mean, var = _weighted_moments(post[:n_pure], values)
        all_mean, all_var = _with_mixtures(mean, var, mixtures)
        loglik = -0.5 * (values[None, :] - all_mean[:, None]) ** 2 / all_var[:, None] \
            - 0.5 * np.log(all_var[:, None])
        loglik -= loglik.max(axis=0, keepdims=True)
        post = prior * np.exp(loglik)
        post /= post.sum(axis=0, keepdims=True)
    fractions = post[:n_pure].copy()
    for k, (a, b) in enumerate(mixtures):
        share = np.clip((values - mean[b]) / (mean[a] - mean[b]), 0.0, 1.0)
        fractions[a] += share * post[n_pure + k]
        fractions[b] += (1.0 - share) * post[n_pure + k]
    out = np.zeros(priors.shape, dtype=np.float32)
    out[:, mask] = fractions
    return out


def _robust_moments(prior: np.ndarray, values: np.ndarray,
                    confident: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """Start each class at the median and MAD of the voxels its prior is sure of.

    Prior-weighted means let a class with broad priors (CSF reaches the scalp in a
    blurred template) start on bright non-brain voxels and drift there; medians over
    voxels with ``prior > confident`` do not. Classes with too few such voxels fall
    back to prior-weighted moments.
    """
    mean, var = _weighted_moments(prior, values)
    for k, weights in enumerate(prior):
        sure = values[weights > confident]
        if sure.size >= 100:
            mean[k] = np.median(sure)
            var[k] = max((1.4826 * np.median(np.abs(sure - mean[k]))) ** 2, 1e-6)
    return mean, var


def _with_mixtures(mean: np.ndarray, var: np.ndarray,
                   mixtures: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Append the mean and variance of each mixed class to those of the pure classes.

    A voxel with fraction ``f ~ U(0, 1)`` of tissue a has mean ``(mu_a + mu_b) / 2`` and
    variance ``(var_a + var_b) / 2`` (noise, approximately) plus ``(mu_a - mu_b)^2 / 12``.
    """
    mix_mean = [0.5 * (mean[a] + mean[b]) for a, b in mixtures]
    mix_var = [0.5 * (var[a] + var[b]) + (mean[a] - mean[b]) ** 2 / 12 for a, b in mixtures]
    return np.concatenate([mean, mix_mean]), np.concatenate([var, mix_var])


def bright_non_brain(intensity: np.ndarray, wm_prob: np.ndarray, mask: np.ndarray,
                     n_sd: float = 4.0) -> np.ndarray:
    """Flag voxels far brighter than white matter (scalp fat, vessels) inside a mask.

    Parameters
    ----------
    intensity : numpy.ndarray
        Bias-corrected T1w intensities.
    wm_prob : numpy.ndarray
        White-matter posterior.
    mask : numpy.ndarray
        Boolean brain mask.
    n_sd : float
        Threshold in white-matter standard deviations above its mean.

    Returns
    -------
    numpy.ndarray
        Boolean map of voxels inside ``mask`` brighter than ``mean_WM + n_sd * sd_WM``.
    """
    weight = wm_prob[mask].astype(np.float64)
    values = intensity[mask].astype(np.float64)
    mean = float(np.sum(weight * values) / max(weight.sum(), 1e-6))
    sd = float(np.sqrt(np.sum(weight * (values - mean) ** 2) / max(weight.sum(), 1e-6)))
    return mask & (intensity > mean + n_sd * sd)


def _weighted_moments(post: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weight = post.sum(axis=1) + 1e-12
    mean = (post @ values) / weight
    return mean, np.maximum((post @ values**2) / weight - mean**2, 1e-6)


def discrete_segmentation(posteriors: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Label each masked voxel with its most probable class (1-based), 0 outside.

    Parameters
    ----------
    posteriors : numpy.ndarray
        ``(K, ...)`` class posteriors.
    mask : numpy.ndarray
        Boolean mask.

    Returns
    -------
    numpy.ndarray
        uint8 labels: 0 background, ``k + 1`` for class ``k`` (1 CSF, 2 GM, 3 WM).
    """
    labels = (np.argmax(posteriors, axis=0) + 1).astype(np.uint8)
    labels[~mask] = 0
    return labels
