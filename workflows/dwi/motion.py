"""Head-motion and eddy-current correction of a diffusion series by volume registration.

Every volume is registered to a target on the grid of the series with ANTs (antspyx):
b=0 volumes rigidly to the first b=0 image; diffusion-weighted volumes to a robust
target, the mean image of their shell (``target="mean"``), and optionally in a second
pass to the volume's own prediction by a tensor fitted to the first-pass result
(``target="prediction"``, the approach of FSL eddy and SHORELine, simplified). The
registration runs in the voxel frame (image axes scaled by the voxel size), so the
rotation found applies directly to voxel-frame b-vectors. Mattes mutual information is
evaluated on a fifth of the voxels of a dilated brain mask, on a short three-level
pyramid: a few seconds per volume of a whole-brain series on one core.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial

import ants
import numpy as np
import pandas as pd
from scipy import ndimage

from brainscale.workflows.anat.images import read_itk_affine
from brainscale.workflows.dwi.gradients import B0_THRESHOLD, make_gradient_table, rotate_bvecs
from brainscale.workflows.dwi.parallel import fork_map
from brainscale.workflows.dwi.reference import brain_mask
from brainscale.workflows.dwi.rigid_eddy import (  # noqa: F401  (re-exported)
    EDDY_COLUMNS,
    MOTION_COLUMNS,
    rigid_eddy_parameters,
)


def _to_ants(volume: np.ndarray, zooms: tuple[float, float, float]) -> ants.ANTsImage:
    """Wrap a 3D array as an ANTs image in the (scaled) voxel frame."""
    return ants.from_numpy(
        np.ascontiguousarray(volume, dtype=np.float32), spacing=tuple(float(z) for z in zooms)
    )


PYRAMID = ((4, 2), (2, 1), (1, 0))
"""Registration levels, coarse to fine: (shrink factor, smoothing sigma in voxels)."""

ITERATIONS = (100, 50, 20)
"""Iterations of the first, second and third level kept by :func:`_pyramid`."""

METRIC_MASK_DILATION = 2
"""Voxels by which the brain mask is dilated to form the registration metric mask."""

SAMPLING_RATE = 0.2
"""Fraction of the (masked) voxels sampled by the Mattes metric at each iteration."""


def _pyramid(shape: tuple[int, ...], min_size: int = 12) -> dict:
    """Registration levels whose coarsest image keeps at least ``min_size`` voxels per axis.

    The coarsest level kept gets the most iterations, so that a small image registered
    at full resolution only still converges.
    """
    kept = [lvl for lvl in PYRAMID if lvl[0] == 1 or min(shape) / lvl[0] >= min_size]
    return {
        "aff_shrink_factors": tuple(lvl[0] for lvl in kept),
        "aff_iterations": ITERATIONS[: len(kept)],
        "aff_smoothing_sigmas": tuple(lvl[1] for lvl in kept),
    }


def register_volume(
    fixed: np.ndarray,
    moving: np.ndarray,
    zooms: tuple[float, float, float],
    *,
    transform: str = "Rigid",
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Register one volume to a target and resample it onto the target grid.

    Mattes mutual information on a multi-resolution pyramid (:data:`PYRAMID`,
    :data:`ITERATIONS`), sampling :data:`SAMPLING_RATE` of the voxels in ``mask``.

    Parameters
    ----------
    fixed, moving : ndarray, shape (x, y, z)
        Target and volume to align, on the same grid.
    zooms : tuple of float
        Voxel size in mm.
    transform : {"Rigid", "Affine"}
        ANTs transform type (Affine also absorbs eddy-current shears and scalings).
    mask : ndarray of bool, optional
        Region of the target where the metric is evaluated, at every level (a slightly
        dilated brain mask: the brain edges drive the alignment; the background adds
        only time and noise).
    seed : int
        Random seed of the metric sampling.

    Returns
    -------
    aligned : ndarray, shape (x, y, z)
        The moving volume resampled onto the target (linear interpolation).
    matrix : ndarray, shape (4, 4)
        Point mapping from target to moving volume coordinates, in mm along voxel axes.
    """
    # antspyx reads its metric-sampling seed here; ANTs takes 0 as 'seed from the clock'
    ants.config._random_seed = int(seed) + 1
    with tempfile.TemporaryDirectory(prefix="bs_motion_") as tmp:
        reg = ants.registration(
            fixed=_to_ants(fixed, zooms),
            moving=_to_ants(moving, zooms),
            type_of_transform=transform,
            mask=None if mask is None else _to_ants(mask, zooms),
            mask_all_stages=mask is not None,
            aff_metric="mattes",
            aff_sampling=32,
            aff_random_sampling_rate=SAMPLING_RATE,
            **_pyramid(fixed.shape),
            outprefix=os.path.join(tmp, "reg_"),
        )
        matrix = read_itk_affine(reg["fwdtransforms"][0])
        aligned = reg["warpedmovout"].numpy()
    return aligned.astype(np.float32), matrix


def motion_parameters(
    matrices: np.ndarray,
    center: np.ndarray | None = None,
    *,
    pe_axis: int | None = None,
    bvals: np.ndarray | None = None,
    bvecs: np.ndarray | None = None,
) -> pd.DataFrame:
    """Convert per-volume transforms to rigid motion, eddy terms and framewise displacement.

    Only the rigid part of each transform is motion
    (:func:`brainscale.workflows.dwi.rigid_eddy.rigid_eddy_parameters`); the eddy-current
    scaling, shears and offset along the phase-encoding axis are reported apart.

    Parameters
    ----------
    matrices : ndarray, shape (n, 4, 4)
        Target-to-volume point mappings (mm).
    center : ndarray, shape (3,), optional
        Point (mm, same space) whose displacement is reported as the translation, as
        MCFLIRT and fMRIPrep report motion about the volume centre. Without it the
        translation is that of the space's origin, which for a grid-corner origin adds
        ``rotation x 100+ mm`` of spurious translation to every rotated volume.
    pe_axis : int, optional
        Voxel axis of phase encoding (default: inferred from the transforms).
    bvals, bvecs : ndarray, optional
        b-values and applied b-vectors, to separate the eddy offset from PE motion.

    Returns
    -------
    pandas.DataFrame
        Columns ``trans_x`` .. ``rot_z`` (mm, radians; rotation ``R = Rz Ry Rx``),
        ``framewise_displacement`` (Power et al. 2012, 50 mm sphere, from the rigid part
        only; NaN for the first volume) and ``eddy_*``
        (:data:`~brainscale.workflows.dwi.rigid_eddy.EDDY_COLUMNS`).
    """
    return rigid_eddy_parameters(matrices, center, pe_axis=pe_axis, bvals=bvals,
                                 bvecs=bvecs)[1]


def _predict_tensor_signal(
    data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Predict every volume from a tensor fitted to the series (the registration target)."""
    from dipy.reconst.dti import TensorModel

    gtab = make_gradient_table(bvals, bvecs)
    fit = TensorModel(gtab, fit_method="WLS").fit(data, mask=mask)
    s0 = np.mean(data[..., gtab.b0s_mask], axis=-1)
    pred = fit.predict(gtab, S0=s0)
    pred[~mask] = data[~mask]
    return np.nan_to_num(pred).astype(np.float32)


def _register_many(corrected, matrices, targets, indices, *, data, transform, n_jobs, **kwargs):
    """Register ``data[..., indices]`` to their targets, in parallel processes if asked.

    ``kwargs`` (``zooms``, ``mask``, ``seed``) go to :func:`register_volume`; the aligned
    volumes and their matrices are written into ``corrected`` and ``matrices``.
    """
    register = partial(register_volume, transform=transform, **kwargs)
    results = fork_map(register, targets, [data[..., idx] for idx in indices], n_jobs=n_jobs)
    for idx, (aligned, matrix) in zip(indices, results, strict=True):
        corrected[..., idx], matrices[idx] = aligned, matrix


def correct_motion(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    zooms: tuple[float, float, float],
    *,
    target: str = "mean",
    dw_transform: str = "Affine",
    mask: np.ndarray | None = None,
    pe_axis: int | None = None,
    pe_sign: np.ndarray | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Correct head motion and eddy-current distortions; rotate the b-vectors.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Diffusion series.
    bvals : ndarray, shape (n,)
        b-values.
    bvecs : ndarray, shape (n, 3)
        Voxel-frame b-vectors.
    zooms : tuple of float
        Voxel size in mm.
    target : {"mean", "prediction"}
        Target of diffusion-weighted volumes: the mean of their shell, or (two passes) the
        tensor prediction of each volume from the first-pass corrected series.
    dw_transform : {"Rigid", "Affine"}
        Transform of diffusion-weighted volumes (Affine models eddy currents).
    mask : ndarray of bool, optional
        Brain mask on the grid of the series (default: computed from the first b=0 with
        :func:`brainscale.workflows.dwi.reference.brain_mask`). Dilated by
        :data:`METRIC_MASK_DILATION` voxels it restricts the registration metric; it
        also masks the tensor prediction; its centroid is the brain centre about which
        motion is reported.
    pe_axis : int, optional
        Voxel axis of phase encoding, along which eddy currents displace the image
        (default: inferred from the transforms,
        :func:`brainscale.workflows.dwi.rigid_eddy.infer_pe_axis`).
    pe_sign : ndarray, shape (n,), optional
        PE polarity of each volume (combined reversed-PE series), for the eddy offset.
    seed : int
        Random seed of the registrations.
    n_jobs : int
        Volumes registered in parallel (worker processes).

    Returns
    -------
    corrected : ndarray, shape (x, y, z, n)
        Aligned series.
    rotated_bvecs : ndarray, shape (n, 3)
        b-vectors rotated by each volume's head rotation (the rigid part of its transform).
    motion : pandas.DataFrame
        Per-volume rigid motion, framewise displacement from it alone, and the eddy terms
        (:func:`motion_parameters`).
    """
    if target not in ("mean", "prediction"):
        raise ValueError(f"unknown motion-correction target {target!r}")
    data = np.asarray(data, dtype=np.float32)
    b0s = np.asarray(bvals) <= B0_THRESHOLD
    if not b0s.any():
        raise ValueError("motion correction needs at least one b=0 volume")
    n_vol = data.shape[-1]
    corrected = np.empty_like(data)
    matrices = np.tile(np.eye(4), (n_vol, 1, 1))
    ref_idx, *other_b0s = np.flatnonzero(b0s)
    b0_ref = data[..., ref_idx]
    if mask is None:
        mask = brain_mask(b0_ref)
    metric_mask = ndimage.binary_dilation(mask, iterations=METRIC_MASK_DILATION)
    register = partial(
        _register_many,
        corrected,
        matrices,
        data=data,
        zooms=zooms,
        mask=metric_mask,
        seed=seed,
        n_jobs=n_jobs,
    )
    corrected[..., ref_idx] = b0_ref  # the first b=0 defines the frame (identity matrix)
    register([b0_ref] * len(other_b0s), other_b0s, transform="Rigid")
    b0_mean = corrected[..., b0s].mean(axis=-1)
    shells = np.round(np.asarray(bvals) / 100.0) * 100.0
    for shell in np.unique(shells[~b0s]):
        members = np.flatnonzero((shells == shell) & ~b0s)
        # bring the shell mean onto the b=0 reference so that all volumes share one frame
        shell_mean = data[..., members].mean(axis=-1)
        shell_target, _ = register_volume(
            b0_mean, shell_mean, zooms, transform="Rigid", mask=metric_mask, seed=seed
        )
        register([shell_target] * len(members), members, transform=dw_transform)
    split = partial(rigid_eddy_parameters, center=_brain_centre(mask, zooms), bvals=bvals,
                    bvecs=bvecs, pe_sign=pe_sign)
    rotations, params = split(matrices, pe_axis=pe_axis)  # pe_axis None: inferred
    if target == "prediction" and (~b0s).sum() >= 6:
        predicted = _predict_tensor_signal(corrected, bvals, rotate_bvecs(bvecs, rotations), mask)
        weighted = np.flatnonzero(~b0s)
        register([predicted[..., idx] for idx in weighted], weighted, transform=dw_transform)
        rotations, params = split(matrices, pe_axis=pe_axis)
    return corrected, rotate_bvecs(bvecs, rotations), params


def _brain_centre(mask: np.ndarray, zooms: tuple[float, float, float]) -> np.ndarray:
    """Centroid (mm, voxel-axis frame) of the brain mask; the grid centre if it is empty."""
    mask = np.asarray(mask, dtype=bool)
    index = (np.argwhere(mask).mean(axis=0) if mask.any()
             else (np.asarray(mask.shape) - 1) / 2)
    return index * np.asarray(zooms, dtype=float)
