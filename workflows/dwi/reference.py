"""Diffusion reference image, brain mask and B1 (receive) bias correction."""

from __future__ import annotations

import ants
import numpy as np
from dipy.segment.mask import median_otsu
from scipy import ndimage

from brainscale.workflows.dwi.gradients import B0_THRESHOLD


def mean_b0(data: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Average the b=0 volumes of a series.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series.
    bvals : ndarray, shape (n,)
        b-values.

    Returns
    -------
    ndarray, shape (x, y, z)
        Mean b=0 image.
    """
    b0s = np.asarray(bvals) <= B0_THRESHOLD
    if not b0s.any():
        raise ValueError("the series has no b=0 volume")
    return np.asarray(data, dtype=np.float32)[..., b0s].mean(axis=-1)


def brain_mask(b0: np.ndarray) -> np.ndarray:
    """Brain mask of a b=0 image by median filtering and Otsu thresholding (dipy).

    Parameters
    ----------
    b0 : ndarray, shape (x, y, z)
        Mean b=0 image.

    Returns
    -------
    ndarray of bool
        The largest connected component, holes filled.
    """
    _, mask = median_otsu(np.asarray(b0, dtype=np.float32), median_radius=2, numpass=2)
    labelled, n_comp = ndimage.label(mask)
    if n_comp > 1:
        sizes = ndimage.sum(mask, labelled, range(1, n_comp + 1))
        mask = labelled == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)


def b1_bias_field(
    b0: np.ndarray, mask: np.ndarray, zooms: tuple[float, float, float]
) -> np.ndarray:
    """Estimate a smooth receive-bias field from the mean b=0 with N4 (ANTs).

    Parameters
    ----------
    b0 : ndarray, shape (x, y, z)
        Mean b=0 image.
    mask : ndarray of bool
        Brain mask.
    zooms : tuple of float
        Voxel size (mm).

    Returns
    -------
    ndarray, shape (x, y, z)
        Multiplicative bias field, normalized to mean 1 in the mask (1 outside it).
    """
    spacing = tuple(float(z) for z in zooms)
    image = ants.from_numpy(np.ascontiguousarray(b0, np.float32) + 1e-3, spacing=spacing)
    weights = ants.from_numpy(np.ascontiguousarray(mask, np.float32), spacing=spacing)
    field = ants.n4_bias_field_correction(
        image, mask=weights, shrink_factor=2, return_bias_field=True
    ).numpy()
    field = np.where(mask, field, np.nan)
    field /= np.nanmean(field)
    return np.nan_to_num(field, nan=1.0).astype(np.float32)


def bias_corrected_series(
    data: np.ndarray, bvals: np.ndarray, zooms: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mask a series from its mean b=0 and divide the series and b=0 by the N4 bias.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series (float32); divided in place.
    bvals : ndarray, shape (n,)
        b-values.
    zooms : tuple of float
        Voxel size (mm).

    Returns
    -------
    series : ndarray, shape (x, y, z, n)
        ``data`` divided by the bias field (the same array).
    b0 : ndarray, shape (x, y, z)
        Mean b=0 of the uncorrected series divided by the bias field.
    mask : ndarray of bool, shape (x, y, z)
        Brain mask (:func:`brain_mask`).
    bias : ndarray, shape (x, y, z)
        Multiplicative bias field (:func:`b1_bias_field`).
    """
    b0 = mean_b0(data, bvals)
    mask = brain_mask(b0)
    bias = b1_bias_field(b0, mask, zooms)
    data /= bias[..., None]
    return data, b0 / bias, mask, bias
