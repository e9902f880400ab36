"""Head-motion and eddy-current correction of a diffusion series by volume registration.

Every volume is registered to a target on the grid of the series with ANTs (antspyx):
b=0 volumes rigidly to the mean b=0 image; diffusion-weighted volumes to a robust
target, the mean image of their shell (``target="mean"``), and optionally in a second
pass to the volume's own prediction by a tensor fitted to the first-pass result
(``target="prediction"``, the approach of FSL eddy and SHORELine, simplified). The
registration runs in the voxel frame (image axes scaled by the voxel size), so the
rotation found applies directly to voxel-frame b-vectors.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial

import ants
import numpy as np
import pandas as pd

from workflows.dwi.gradients import B0_THRESHOLD, make_gradient_table, rotate_bvecs, rotation_part

MOTION_COLUMNS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
"""fMRIPrep confound names of the six rigid-body parameters (mm, radians)."""

HEAD_RADIUS_MM = 50.0
"""Sphere radius converting rotations to displacements in framewise displacement."""


def _to_ants(volume: np.ndarray, zooms: tuple[float, float, float]) -> ants.ANTsImage:
    """Wrap a 3D array as an ANTs image in the (scaled) voxel frame."""
    return ants.from_numpy(
        np.ascontiguousarray(volume, dtype=np.float32), spacing=tuple(float(z) for z in zooms)
    )


def _pyramid(shape: tuple[int, ...], min_size: int = 12) -> dict:
    """Registration levels whose coarsest image keeps at least ``min_size`` voxels per axis."""
    levels = [(4, 200, 2), (2, 100, 1), (1, 50, 0)]
    kept = [lvl for lvl in levels if lvl[0] == 1 or min(shape) / lvl[0] >= min_size]
    return {
        "aff_shrink_factors": tuple(lvl[0] for lvl in kept),
        "aff_iterations": tuple(lvl[1] for lvl in kept),
        "aff_smoothing_sigmas": tuple(lvl[2] for lvl in kept),
    }


def register_volume(
    fixed: np.ndarray,
    moving: np.ndarray,
    zooms: tuple[float, float, float],
    *,
    transform: str = "Rigid",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Register one volume to a target and resample it onto the target grid.

    Parameters
    ----------
    fixed, moving : ndarray, shape (x, y, z)
        Target and volume to align, on the same grid.
    zooms : tuple of float
        Voxel size in mm.
    transform : {"Rigid", "Affine"}
        ANTs transform type (Affine also absorbs eddy-current shears and scalings).
    seed : int
        Random seed of the metric sampling.

    Returns
    -------
    aligned : ndarray, shape (x, y, z)
        The moving volume resampled onto the target (linear interpolation).
    matrix : ndarray, shape (4, 4)
        Point mapping from target to moving volume coordinates, in mm along voxel axes.
    """
    ants.config._random_seed = int(seed)  # antspyx reads its metric-sampling seed here
    with tempfile.TemporaryDirectory(prefix="bs_motion_") as tmp:
        reg = ants.registration(
            fixed=_to_ants(fixed, zooms),
            moving=_to_ants(moving, zooms),
            type_of_transform=transform,
            aff_metric="mattes",
            aff_sampling=32,
            aff_random_sampling_rate=0.5,
            **_pyramid(fixed.shape),
            outprefix=os.path.join(tmp, "reg_"),
        )
        tx = ants.read_transform(reg["fwdtransforms"][0])
        params = np.asarray(tx.parameters, dtype=float)
        center = np.asarray(tx.fixed_parameters, dtype=float)
        aligned = reg["warpedmovout"].numpy()
    linear = params[:9].reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = params[9:12] + center - linear @ center
    return aligned.astype(np.float32), matrix


def motion_parameters(matrices: np.ndarray) -> pd.DataFrame:
    """Convert per-volume transforms to translations, Euler angles and framewise displacement.

    Parameters
    ----------
    matrices : ndarray, shape (n, 4, 4)
        Target-to-volume point mappings (mm).

    Returns
    -------
    pandas.DataFrame
        Columns ``trans_x`` .. ``rot_z`` (mm, radians; rotation ``R = Rz Ry Rx``) and
        ``framewise_displacement`` (Power et al. 2012, 50 mm sphere; NaN for the first volume).
    """
    rows = []
    for mat in matrices:
        rot = rotation_part(mat[:3, :3])
        rx = np.arctan2(rot[2, 1], rot[2, 2])
        ry = np.arcsin(-np.clip(rot[2, 0], -1, 1))
        rz = np.arctan2(rot[1, 0], rot[0, 0])
        rows.append([*mat[:3, 3], rx, ry, rz])
    frame = pd.DataFrame(rows, columns=MOTION_COLUMNS)
    diffs = frame.diff().abs()
    fd = diffs[MOTION_COLUMNS[:3]].sum(axis=1) + HEAD_RADIUS_MM * diffs[MOTION_COLUMNS[3:]].sum(
        axis=1
    )
    fd.iloc[0] = np.nan
    frame["framewise_displacement"] = fd
    return frame


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


def _register_many(corrected, matrices, targets, data, indices, zooms, transform, seed, n_jobs):
    """Register ``data[..., indices]`` to their targets, in parallel processes if asked."""
    moving = [data[..., idx] for idx in indices]
    if n_jobs > 1 and len(indices) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(
                pool.map(
                    partial(register_volume, zooms=zooms, transform=transform, seed=seed),
                    targets,
                    moving,
                )
            )
    else:
        results = [
            register_volume(t, m, zooms, transform=transform, seed=seed)
            for t, m in zip(targets, moving, strict=True)
        ]
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
        Brain mask for the tensor prediction (default: mean b=0 above its 20th percentile).
    seed : int
        Random seed of the registrations.
    n_jobs : int
        Volumes registered in parallel (worker processes).

    Returns
    -------
    corrected : ndarray, shape (x, y, z, n)
        Aligned series.
    rotated_bvecs : ndarray, shape (n, 3)
        b-vectors rotated by each volume's rotation.
    motion : pandas.DataFrame
        Per-volume motion parameters and framewise displacement.
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
    b0_ref = data[..., np.flatnonzero(b0s)[0]]
    for idx in np.flatnonzero(b0s):
        corrected[..., idx], matrices[idx] = register_volume(
            b0_ref, data[..., idx], zooms, transform="Rigid", seed=seed
        )
    b0_mean = corrected[..., b0s].mean(axis=-1)
    shells = np.round(np.asarray(bvals) / 100.0) * 100.0
    for shell in np.unique(shells[~b0s]):
        members = np.flatnonzero((shells == shell) & ~b0s)
        shell_target = data[..., members].mean(axis=-1)
        # bring the shell mean onto the b=0 reference so that all volumes share one frame
        shell_target, _ = register_volume(
            b0_mean, shell_target, zooms, transform="Rigid", seed=seed
        )
        _register_many(
            corrected,
            matrices,
            [shell_target] * len(members),
            data,
            members,
            zooms,
            dw_transform,
            seed,
            n_jobs,
        )
    rotated = rotate_bvecs(bvecs, matrices[:, :3, :3])
    if target == "prediction" and (~b0s).sum() >= 6:
        if mask is None:
            mask = b0_mean > np.percentile(b0_mean, 20)
        predicted = _predict_tensor_signal(corrected, bvals, rotated, mask)
        weighted = np.flatnonzero(~b0s)
        _register_many(
            corrected,
            matrices,
            [predicted[..., idx] for idx in weighted],
            data,
            weighted,
            zooms,
            dw_transform,
            seed,
            n_jobs,
        )
        rotated = rotate_bvecs(bvecs, matrices[:, :3, :3])
    return corrected, rotated, motion_parameters(matrices)
