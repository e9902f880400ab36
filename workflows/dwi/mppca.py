"""Marchenko-Pastur PCA denoising (Veraart et al. 2016), vectorized over patches.

The same estimator as dipy's :func:`dipy.denoise.localpca.mppca` (``pca_method="eig"``:
a patch around every voxel of the mask, eigenvalues of its covariance classified by the
Marchenko-Pastur law, components under ``tau_factor**2`` times the noise variance
removed, overlapping patch estimates averaged with weights ``1 / (1 + kept)``), but the
patches are processed in batches with NumPy instead of one Python iteration per voxel,
which makes it about ten times faster on whole-brain series.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BATCH_VOXELS = 2048
"""Patches processed together (memory per batch ~ BATCH_VOXELS * patch voxels * volumes)."""


def classify_eigenvalues(evals: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise variance and number of noise components from ascending PCA eigenvalues.

    Vectorized form of the Marchenko-Pastur classification of Veraart et al. (2016), in
    the variant of dipy (``_pca_classifier``): the largest ``c`` such that
    ``L[c] - L[0] <= 4 sqrt((c + 1) / n) mean(L[:c + 1])`` marks the noise bulk.

    Parameters
    ----------
    evals : ndarray, shape (batch, m)
        Eigenvalues of each patch covariance, ascending.
    n_samples : int
        Voxels per patch.

    Returns
    -------
    variance : ndarray, shape (batch,)
        Noise variance of each patch.
    n_noise : ndarray of int, shape (batch,)
        Number of eigenvalues attributed to noise.
    """
    evals = np.asarray(evals, dtype=np.float64)
    if evals.shape[1] > n_samples - 1:  # mean subtraction leaves n - 1 useful eigenvalues
        evals = evals[:, -(n_samples - 1) :]
    m = evals.shape[1]
    counts = np.arange(1, m + 1, dtype=np.float64)
    mean_below = np.cumsum(evals, axis=1) / counts
    gap = evals - evals[:, :1] - 4.0 * np.sqrt(counts / n_samples) * mean_below
    noise = gap <= 0
    last = m - 1 - np.argmax(noise[:, ::-1], axis=1)
    last[~noise.any(axis=1)] = 0
    rows = np.arange(len(evals))
    return mean_below[rows, last], last + 1


def _denoise_batch(patches: np.ndarray, n_samples: int, tau_factor: float):
    """Denoise a batch of patches (batch, samples, volumes); return estimates and weights."""
    mean = patches.mean(axis=1, keepdims=True)
    centred = patches - mean
    cov = np.matmul(centred.transpose(0, 2, 1), centred) / np.float32(n_samples)
    evals, evecs = np.linalg.eigh(cov.astype(np.float64))
    variance, _ = classify_eigenvalues(evals, n_samples)
    keep = evals >= (tau_factor**2 * variance)[:, None]
    signal = evecs * keep[:, None, :]
    projector = np.matmul(signal, evecs.transpose(0, 2, 1)).astype(patches.dtype)
    estimate = np.matmul(centred, projector) + mean
    n_removed = (~keep).sum(axis=1)
    weight = 1.0 / (1.0 + patches.shape[2] - n_removed)
    return estimate, weight, variance


def mppca(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    patch_radius: int = 2,
    batch_voxels: int = BATCH_VOXELS,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Denoise a 4D series with Marchenko-Pastur PCA over local patches.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series.
    mask : ndarray of bool, shape (x, y, z), optional
        Voxels to denoise and patch centres (default: every voxel).
    patch_radius : int
        Patch radius in voxels (the patch has ``(2 r + 1)**3`` voxels; it should exceed
        the number of volumes).
    batch_voxels : int
        Patches per batch (memory/speed trade-off only).
    n_threads : int
        Threads decomposing batches at the same time (NumPy releases the GIL in the
        eigen-decompositions); the result does not depend on it.

    Returns
    -------
    denoised : ndarray, shape (x, y, z, n)
        Denoised series (float32, clipped at zero); voxels outside the mask, or that no
        patch covers, keep their input values.
    sigma : ndarray, shape (x, y, z)
        Noise standard deviation (weighted mean over the patches covering each voxel;
        zero outside the mask).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 4:
        raise ValueError(f"MP-PCA needs a 4D series, got shape {data.shape}")
    shape = data.shape[:3]
    radius = np.array([patch_radius if s > 1 else 0 for s in shape])
    size = 2 * radius + 1
    if np.any(size > np.array(shape)):
        raise ValueError(f"patch of {tuple(size)} voxels does not fit the grid {shape}")
    n_samples = int(np.prod(size))
    n_vol = data.shape[-1]
    tau_factor = 1.0 + np.sqrt(n_vol / n_samples)
    mask = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    valid = np.zeros(shape, dtype=bool)
    inner = tuple(slice(r, s - r) for r, s in zip(radius, shape, strict=True))
    valid[inner] = mask[inner]
    centres = np.argwhere(valid)
    windows = sliding_window_view(data, tuple(size), axis=(0, 1, 2))
    offsets = np.indices(size).reshape(3, -1).T - radius  # same order as the window

    def denoise_batch(batch):
        corner = batch - radius
        patches = windows[corner[:, 0], corner[:, 1], corner[:, 2]]  # (b, n, px, py, pz)
        patches = patches.reshape(len(batch), n_vol, n_samples).transpose(0, 2, 1)
        return batch, *_denoise_batch(patches, n_samples, tau_factor)

    theta = np.zeros(shape, dtype=np.float64)
    theta_x = np.zeros(data.shape, dtype=np.float64)
    theta_var = np.zeros(shape, dtype=np.float64)
    batches = [centres[i : i + batch_voxels] for i in range(0, len(centres), batch_voxels)]
    with ThreadPoolExecutor(max(1, n_threads)) as pool:
        # a few batches in flight at a time keeps the memory bounded
        for group in range(0, len(batches), 2 * max(1, n_threads)):
            todo = batches[group : group + 2 * max(1, n_threads)]
            for batch, estimate, weight, variance in pool.map(denoise_batch, todo):
                # the voxels at one offset from distinct centres are distinct: += is exact
                for k, offset in enumerate(offsets):
                    idx = tuple((batch + offset).T)
                    theta[idx] += weight
                    theta_x[idx] += estimate[:, k, :] * weight[:, None]
                    theta_var[idx] += variance * weight
    inside = mask & (theta > 0)
    denoised = data.copy()
    denoised[inside] = np.clip(theta_x[inside] / theta[inside][:, None], 0, None)
    sigma = np.zeros(shape, dtype=np.float32)
    sigma[inside] = np.sqrt(theta_var[inside] / theta[inside])
    return denoised, sigma
