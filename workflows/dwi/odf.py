"""Fibre orientation distributions: CSD when the data support it, CSA otherwise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dipy.reconst.csdeconv import ConstrainedSphericalDeconvModel, response_from_mask_ssst
from dipy.reconst.shm import CsaOdfModel

from brainscale.workflows.dwi.gradients import B0_THRESHOLD, detect_shells, make_gradient_table
from brainscale.workflows.dwi.parallel import fork_map

MAX_SH_ORDER = 8


@dataclass
class OrientationModel:
    """Spherical-harmonic orientation distributions fitted to a diffusion series.

    Attributes
    ----------
    method : str
        ``"csd"`` or ``"csa"``.
    sh_order : int
        Maximum spherical-harmonic order.
    shm_coeff : ndarray, shape (x, y, z, n_coeff)
        Coefficients in dipy's default (descoteaux07, legacy) basis.
    shell : float
        b-value of the shell that was modelled.
    response : tuple or None
        CSD single-fibre response (eigenvalues, S0) when ``method == "csd"``.
    """

    method: str
    sh_order: int
    shm_coeff: np.ndarray
    shell: float
    response: tuple | None = None


def max_sh_order(n_directions: int) -> int:
    """Largest even SH order whose coefficient count fits the number of directions.

    Parameters
    ----------
    n_directions : int
        Number of diffusion-weighted directions on the shell.

    Returns
    -------
    int
        Even order in [0, 8]; 0 when fewer than 6 directions.
    """
    order = 0
    while order + 2 <= MAX_SH_ORDER and (order + 3) * (order + 4) // 2 <= n_directions:
        order += 2
    return order


def _fit_coefficients(model, data: np.ndarray, mask: np.ndarray, n_jobs: int) -> np.ndarray:
    """Spherical-harmonic coefficients of a voxelwise dipy model, slabs in parallel."""
    slabs = np.array_split(np.arange(data.shape[2]), max(1, min(n_jobs, data.shape[2])))
    parts = fork_map(
        lambda z: model.fit(data[:, :, z], mask=mask[:, :, z]).shm_coeff, slabs, n_jobs=n_jobs
    )
    return np.concatenate(parts, axis=2)


def fit_orientation_model(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    fa: np.ndarray,
    *,
    response_fa_threshold: float = 0.7,
    n_jobs: int = 1,
) -> OrientationModel:
    """Fit CSD (>= 15 directions on a shell) or CSA (>= 6) to the best-sampled shell.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Preprocessed diffusion series.
    bvals, bvecs : ndarray
        b-values and voxel-frame b-vectors.
    mask : ndarray of bool
        Brain mask.
    fa : ndarray
        Tensor FA, used to choose single-fibre voxels for the CSD response.
    response_fa_threshold : float
        FA above which voxels estimate the response (lowered to the 95th percentile of FA
        in the mask when fewer than 20 voxels qualify).
    n_jobs : int
        Processes fitting slabs of the volume (voxelwise fits: the same coefficients).

    Returns
    -------
    OrientationModel
        The fitted coefficients and model description.
    """
    bvals = np.asarray(bvals, dtype=float)
    shells = [b for b in detect_shells(bvals) if b > 0]
    if not shells:
        raise ValueError("no diffusion-weighted shell to model orientations")
    counts = {b: int(np.sum(np.abs(bvals - b) <= 100)) for b in shells}
    shell = max(shells, key=lambda b: (counts[b], b))
    keep = (bvals <= B0_THRESHOLD) | (np.abs(bvals - shell) <= 100)
    gtab = make_gradient_table(bvals[keep], np.asarray(bvecs)[keep])
    shell_data = np.asarray(data, dtype=np.float32)[..., keep]
    order = max_sh_order(counts[shell])
    if order == 0:
        raise ValueError(f"only {counts[shell]} directions on b={shell}: too few for an ODF")
    if order >= 4:
        threshold = response_fa_threshold
        if np.sum(mask & (fa > threshold)) < 20:
            threshold = float(np.percentile(fa[mask], 95))
        response, _ = response_from_mask_ssst(
            gtab, shell_data, (mask & (fa >= threshold)).astype(np.uint8)
        )
        model = ConstrainedSphericalDeconvModel(gtab, response, sh_order_max=order)
        coeff = _fit_coefficients(model, shell_data, mask, n_jobs)
        return OrientationModel(
            "csd",
            order,
            np.asarray(coeff, np.float32),
            shell,
            (tuple(float(v) for v in response[0]), float(response[1])),
        )
    coeff = _fit_coefficients(CsaOdfModel(gtab, sh_order_max=order), shell_data, mask, n_jobs)
    return OrientationModel("csa", order, np.asarray(coeff, np.float32), shell)
