"""Thermal-noise removal (MP-PCA or Patch2Self) and Gibbs-ringing removal for DWI."""

from __future__ import annotations

from functools import partial

import numpy as np
from dipy.denoise.gibbs import gibbs_removal
from scipy import ndimage

from brainscale.workflows.dwi.mppca import mppca
from brainscale.workflows.dwi.parallel import fork_map
from brainscale.workflows.dwi.reference import brain_mask, mean_b0

DENOISE_METHODS = ("mppca", "patch2self", "none")
"""Accepted values of ``method`` in :func:`denoise_dwi`."""


def denoise_dwi(
    data: np.ndarray,
    bvals: np.ndarray,
    *,
    method: str = "mppca",
    mask: np.ndarray | None = None,
    patch_radius: int = 2,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove thermal noise from a 4D diffusion series.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series.
    bvals : ndarray, shape (n,)
        b-values (used by Patch2Self).
    method : {"mppca", "patch2self", "none"}
        MP-PCA (Veraart et al. 2016; :mod:`brainscale.workflows.dwi.mppca`, dipy's estimator
        vectorized) or Patch2Self (Fadnavis et al. 2020).
    mask : ndarray of bool, optional
        Voxels to denoise (MP-PCA only; a head mask saves most of the time). Voxels
        outside keep their values.
    patch_radius : int
        MP-PCA patch radius in voxels (grown until the patch has more voxels than the
        series has volumes).
    n_threads : int
        Threads of MP-PCA.

    Returns
    -------
    denoised : ndarray, shape (x, y, z, n)
        Denoised series, float32.
    sigma : ndarray, shape (x, y, z)
        Estimated noise standard deviation (MP-PCA), NaN otherwise.
    """
    data = np.asarray(data, dtype=np.float32)
    sigma = np.full(data.shape[:3], np.nan, dtype=np.float32)
    if method == "mppca":
        # MP-PCA separates noise only with more patch voxels than volumes: grow the patch.
        radius = patch_radius
        while (2 * radius + 1) ** 3 - 1 < data.shape[-1]:
            radius += 1
        denoised, sigma = mppca(data, mask, patch_radius=radius, n_threads=n_threads)
    elif method == "patch2self":
        from dipy.denoise.patch2self import patch2self

        denoised = patch2self(
            data,
            np.asarray(bvals),
            model="ols",
            shift_intensity=True,
            clip_negative_vals=False,
            verbose=False,
        )
    elif method == "none":
        denoised = data
    else:
        raise ValueError(f"unknown denoising method {method!r}; use one of {DENOISE_METHODS}")
    return np.clip(np.asarray(denoised, dtype=np.float32), 0, None), np.asarray(sigma, np.float32)


def remove_gibbs_ringing(data: np.ndarray, *, slice_axis: int = 2, n_jobs: int = 1) -> np.ndarray:
    """Remove Gibbs ringing by local subvoxel shifts (Kellner et al. 2016).

    Parameters
    ----------
    data : ndarray, shape (x, y, z) or (x, y, z, n)
        Image or series; ringing is removed within slices normal to ``slice_axis``.
    slice_axis : int
        Acquisition slice axis.
    n_jobs : int
        Processes sharing the volumes of a series (each slice is corrected on its own,
        so the result does not depend on it).

    Returns
    -------
    ndarray
        Corrected copy, float32, clipped at zero.
    """
    data = np.array(data, dtype=np.float32)
    correct = partial(gibbs_removal, slice_axis=slice_axis, inplace=False)
    if data.ndim == 4 and n_jobs > 1:
        chunks = np.array_split(np.arange(data.shape[3]), min(n_jobs, data.shape[3]))
        out = np.concatenate(
            fork_map(correct, [data[..., c] for c in chunks], n_jobs=n_jobs), axis=3
        )
    else:
        out = correct(data)
    return np.clip(out, 0, None).astype(np.float32)


HEAD_MASK_DILATION = 4
"""Voxels by which the b=0 brain mask is grown into the head mask that MP-PCA denoises."""


def head_mask(data: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Brain mask of the mean b=0 grown by :data:`HEAD_MASK_DILATION` voxels.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series.
    bvals : ndarray, shape (n,)
        b-values.

    Returns
    -------
    ndarray of bool, shape (x, y, z)
        The voxels worth denoising (brain and a margin around it).
    """
    return ndimage.binary_dilation(brain_mask(mean_b0(data, bvals)), iterations=HEAD_MASK_DILATION)


def denoise_series(
    data: np.ndarray,
    bvals: np.ndarray,
    *,
    method: str = "mppca",
    gibbs: bool = True,
    slice_axis: int = 2,
    n_jobs: int = 1,
) -> np.ndarray:
    """Denoise a series inside its head mask, then remove its Gibbs ringing.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series (float32).
    bvals : ndarray, shape (n,)
        b-values.
    method : {"mppca", "patch2self", "none"}
        See :func:`denoise_dwi`.
    gibbs : bool
        Remove Gibbs ringing (:func:`remove_gibbs_ringing`) after denoising.
    slice_axis : int
        Acquisition slice axis.
    n_jobs : int
        MP-PCA threads and Gibbs-removal processes.

    Returns
    -------
    ndarray, shape (x, y, z, n)
        The corrected series, float32.
    """
    data, _ = denoise_dwi(
        data, bvals, method=method, mask=head_mask(data, bvals), n_threads=n_jobs
    )
    if gibbs:
        data = remove_gibbs_ringing(data, slice_axis=slice_axis, n_jobs=n_jobs)
    return data
