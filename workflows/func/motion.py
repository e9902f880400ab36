"""Head-motion estimation: rigid registration of every BOLD volume to a reference.

A Gauss-Newton (inverse-compositional Lucas-Kanade) estimator of the six rigid
parameters, run coarse-to-fine on Gaussian-smoothed volumes and only on the voxels of a
dilated brain mask, so a 156-volume run takes seconds. Parameters follow fMRIPrep's
convention: ``trans_x``, ``trans_y``, ``trans_z`` in mm and ``rot_x``, ``rot_y``,
``rot_z`` in radians, about the centre of the reference field of view (RAS world axes).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainscale.workflows.rigid_motion import (  # noqa: F401  (MOTION_COLUMNS re-exported)
    MOTION_COLUMNS,
    euler_angles,
    rotation_matrix,
)


def params_to_matrix(params: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Build the 4x4 world (mm) matrix of a rigid motion about ``center``.

    Parameters
    ----------
    params : array-like of shape (6,)
        ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z`` (radians).
    center : array-like of shape (3,)
        Centre of rotation in world coordinates (mm).

    Returns
    -------
    numpy.ndarray of shape (4, 4)
        Maps a point of the reference to where it is found in the moved volume:
        ``y = R (x - center) + center + t``.
    """
    params = np.asarray(params, dtype=float)
    center = np.asarray(center, dtype=float)
    rot = rotation_matrix(params[3:])
    mat = np.eye(4)
    mat[:3, :3] = rot
    mat[:3, 3] = center + params[:3] - rot @ center
    return mat


def matrix_to_params(matrix: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Invert :func:`params_to_matrix`.

    Parameters
    ----------
    matrix : numpy.ndarray of shape (4, 4)
        A rigid world matrix.
    center : array-like of shape (3,)
        Centre of rotation (mm) the parameters are expressed about.

    Returns
    -------
    numpy.ndarray of shape (6,)
        Translations (mm) and rotations (radians).
    """
    rot = matrix[:3, :3]
    center = np.asarray(center, dtype=float)
    trans = matrix[:3, 3] - center + rot @ center
    return np.concatenate([trans, euler_angles(rot)])


def fov_center(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Return the world coordinates (mm) of the centre of a voxel grid."""
    ijk = (np.asarray(shape[:3], dtype=float) - 1.0) / 2.0
    return affine[:3, :3] @ ijk + affine[:3, 3]


class _Level:
    """Precomputed quantities of the reference at one resolution level."""

    def __init__(self, reference, affine, mask, sigma_vox, step, center):
        smooth = ndimage.gaussian_filter(reference.astype(np.float32), sigma_vox)
        ijk = np.argwhere(mask)[::step].T.astype(np.float64)
        self.ijk_h = np.vstack([ijk, np.ones(ijk.shape[1])])
        self.sigma = sigma_vox
        world = (affine @ self.ijk_h)[:3]
        self.ref_values = ndimage.map_coordinates(smooth, ijk, order=1, prefilter=False)
        grads = np.stack(np.gradient(smooth), axis=0)
        grad_vox = np.stack(
            [ndimage.map_coordinates(g, ijk, order=1, prefilter=False) for g in grads]
        )
        grad_world = np.linalg.inv(affine[:3, :3]).T @ grad_vox
        arm = world - center[:, None]
        jac_rot = np.cross(arm.T, grad_world.T).T
        self.jacobian = np.vstack([grad_world, jac_rot]).T
        hessian = self.jacobian.T @ self.jacobian
        self.hessian_inv = np.linalg.inv(hessian + 1e-9 * np.trace(hessian) * np.eye(6))
        self.scale = float(np.std(self.ref_values)) or 1.0


def _register_volume(volume, levels, affine_inv, affine, center, init, n_iter):
    """Estimate one volume's rigid matrix by inverse-compositional Gauss-Newton."""
    matrix = init.copy()
    smoothed = {}
    for level in levels:
        if level.sigma not in smoothed:
            smoothed[level.sigma] = ndimage.gaussian_filter(volume, level.sigma)
        moving = smoothed[level.sigma]
        for _ in range(n_iter):
            vox = (affine_inv @ matrix @ affine @ level.ijk_h)[:3]
            warped = ndimage.map_coordinates(moving, vox, order=1, mode="nearest", prefilter=False)
            # match global intensity (volumes drift and the reference may be a median)
            gain = np.dot(warped, level.ref_values) / max(np.dot(warped, warped), 1e-12)
            error = gain * warped - level.ref_values
            delta = level.hessian_inv @ (level.jacobian.T @ error)
            update = params_to_matrix(delta, center)
            matrix = matrix @ np.linalg.inv(update)
            if np.abs(delta[:3]).max() < 1e-3 and np.abs(delta[3:]).max() < 1e-5:
                break
    return matrix


def estimate_head_motion(
    bold: np.ndarray,
    affine: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    n_iter: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the rigid motion of every volume of a 4D series relative to a reference.

    Parameters
    ----------
    bold : numpy.ndarray of shape (X, Y, Z, T)
        The BOLD series (any numeric dtype).
    affine : numpy.ndarray of shape (4, 4)
        Voxel-to-world (RAS mm) affine shared by ``bold`` and ``reference``.
    reference : numpy.ndarray of shape (X, Y, Z)
        The image every volume is aligned to (the BOLD reference).
    mask : numpy.ndarray of shape (X, Y, Z), optional
        Brain mask of the reference; it is dilated by two voxels. Default: voxels
        brighter than a quarter of the reference's 98th percentile.
    n_iter : int
        Maximum Gauss-Newton iterations per resolution level.

    Returns
    -------
    params : numpy.ndarray of shape (T, 6)
        ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z`` (radians) of each
        volume, about the centre of the field of view.
    matrices : numpy.ndarray of shape (T, 4, 4)
        World matrices mapping a reference point to its position in each volume (the
        pull-back used to resample the volume onto the reference).
    """
    reference = np.asarray(reference, dtype=np.float32)
    if mask is None:
        mask = reference > 0.25 * np.percentile(reference, 98)
    mask = ndimage.binary_dilation(np.asarray(mask, bool), iterations=2)
    center = fov_center(reference.shape, affine)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    coarse_sigma = tuple(float(s) for s in np.maximum(4.0 / zooms, 0.5))
    fine_sigma = tuple(float(s) for s in np.maximum(1.5 / zooms, 0.5))
    levels = [
        _Level(reference, affine, mask, coarse_sigma, 4, center),
        _Level(reference, affine, mask, fine_sigma, 1, center),
    ]
    affine_inv = np.linalg.inv(affine)
    n_vols = bold.shape[3]
    matrices = np.empty((n_vols, 4, 4))
    previous = np.eye(4)
    for t in range(n_vols):
        volume = np.asarray(bold[..., t], dtype=np.float32)
        previous = _register_volume(volume, levels, affine_inv, affine, center, previous, n_iter)
        matrices[t] = previous
    params = np.array([matrix_to_params(m, center) for m in matrices])
    return params, matrices
