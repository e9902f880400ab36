"""Diffusion tensor fit and the scalar and color maps derived from it."""

from __future__ import annotations

import numpy as np
from dipy.reconst.dti import TensorModel, color_fa

from brainscale.workflows.dwi.gradients import make_gradient_table

TENSOR_PARAMS = ("fa", "md", "ad", "rd")
"""Scalar maps written as ``_model-tensor_param-<p>_dwimap``."""

TENSOR_UNITS = {"fa": "arbitrary", "md": "mm^2/s", "ad": "mm^2/s", "rd": "mm^2/s"}
"""Units of each scalar map (b-values in s/mm^2)."""


def fit_tensor(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    fit_method: str = "WLS",
) -> dict[str, np.ndarray]:
    """Fit a diffusion tensor in every voxel and derive FA, MD, AD, RD and color FA.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Preprocessed diffusion series.
    bvals : ndarray, shape (n,)
        b-values (s/mm^2).
    bvecs : ndarray, shape (n, 3)
        Voxel-frame b-vectors.
    mask : ndarray of bool, optional
        Voxels to fit.
    fit_method : str
        dipy tensor fitting method (``"WLS"``, ``"OLS"``, ``"NLLS"``, ``"RT"``).

    Returns
    -------
    dict of ndarray
        ``fa``, ``md``, ``ad``, ``rd`` (x, y, z); ``v1`` principal eigenvector (x, y, z, 3)
        in the voxel frame; ``colorfa`` (x, y, z, 3) in [0, 1] (red = first voxel axis).
    """
    gtab = make_gradient_table(bvals, bvecs)
    if (~gtab.b0s_mask).sum() < 6:
        raise ValueError("a tensor fit needs at least 6 diffusion-weighted volumes")
    fit = TensorModel(gtab, fit_method=fit_method).fit(
        np.asarray(data, dtype=np.float32), mask=mask
    )
    fa = np.clip(np.nan_to_num(fit.fa), 0.0, 1.0)
    maps = {
        "fa": fa,
        "md": np.nan_to_num(fit.md),
        "ad": np.nan_to_num(fit.ad),
        "rd": np.nan_to_num(fit.rd),
        "v1": np.nan_to_num(fit.evecs[..., 0]),
    }
    maps["colorfa"] = np.clip(color_fa(fa, fit.evecs), 0.0, 1.0)
    return {key: np.asarray(val, dtype=np.float32) for key, val in maps.items()}


def angular_error_deg(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Angle between two axial direction fields, in degrees (sign-invariant).

    Parameters
    ----------
    v1, v2 : ndarray, shape (..., 3)
        Direction fields.

    Returns
    -------
    ndarray, shape (...)
        Angles in [0, 90] degrees.
    """
    n1 = v1 / np.maximum(np.linalg.norm(v1, axis=-1, keepdims=True), 1e-12)
    n2 = v2 / np.maximum(np.linalg.norm(v2, axis=-1, keepdims=True), 1e-12)
    cos = np.clip(np.abs(np.sum(n1 * n2, axis=-1)), 0.0, 1.0)
    return np.degrees(np.arccos(cos))
