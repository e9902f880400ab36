"""One-shot resampling: head motion, BOLD-to-anatomy and anatomy-to-template in one step.

For every target voxel the composed mapping target -> (displacement field) -> T1w ->
(coregistration) -> BOLD reference -> (head motion of volume t) -> BOLD voxel is
evaluated, and each volume is interpolated once, in float32.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

_LPS_SIGN = np.array([-1.0, -1.0, 1.0])


def grid_points(shape: tuple[int, ...], affine: np.ndarray, mask: np.ndarray | None = None):
    """Return world coordinates (3, N) of the voxels of a grid (of a mask when given)."""
    ijk = np.argwhere(mask).T if mask is not None else np.indices(shape[:3]).reshape(3, -1)
    return affine[:3, :3] @ ijk + affine[:3, 3:4]


def load_displacement_field(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """Read an ITK/ANTs displacement field as RAS vectors (X, Y, Z, 3) and its affine.

    ANTs writes fields as 5D (X, Y, Z, 1, 3) images of LPS displacements; the field at
    a fixed (template) point ``x`` gives the moving (T1w) point ``x + d(x)``.
    """
    data = np.asarray(img.dataobj, dtype=np.float32)
    data = data.reshape(img.shape[:3] + (3,))
    return data * _LPS_SIGN.astype(np.float32), img.affine


def apply_displacement_field(points: np.ndarray, field: np.ndarray, affine: np.ndarray):
    """Map world points (3, N) through a RAS displacement field (trilinear)."""
    vox = np.linalg.inv(affine) @ np.vstack([points, np.ones(points.shape[1])])
    disp = np.stack(
        [ndimage.map_coordinates(field[..., k], vox[:3], order=1, mode="nearest")
         for k in range(3)]
    )
    return points + disp


def target_to_boldref(
    points: np.ndarray,
    anat2boldref: np.ndarray,
    field: np.ndarray | None = None,
    field_affine: np.ndarray | None = None,
) -> np.ndarray:
    """Map target world points to BOLD-reference world points.

    Parameters
    ----------
    points : numpy.ndarray of shape (3, N)
        Target grid points (template or T1w world, RAS mm).
    anat2boldref : numpy.ndarray of shape (4, 4)
        Maps an anatomical (T1w or, on the BOLD-only path, template) point to the
        BOLD reference.
    field, field_affine : optional
        Template-to-T1w displacement field (RAS) applied first.

    Returns
    -------
    numpy.ndarray of shape (3, N)
    """
    if field is not None:
        points = apply_displacement_field(points, field, field_affine)
    return anat2boldref[:3, :3] @ points + anat2boldref[:3, 3:4]


def resample_series(
    bold: np.ndarray,
    bold_affine: np.ndarray,
    ref_points: np.ndarray,
    motion_matrices: np.ndarray | None = None,
    order: int = 1,
) -> np.ndarray:
    """Interpolate every volume once at composed positions.

    Parameters
    ----------
    bold : numpy.ndarray of shape (X, Y, Z, T) or (X, Y, Z)
        Source data (already slice-timing corrected).
    bold_affine : numpy.ndarray of shape (4, 4)
        Voxel-to-world affine of ``bold``.
    ref_points : numpy.ndarray of shape (3, N)
        Target points expressed in BOLD-reference world coordinates.
    motion_matrices : numpy.ndarray of shape (T, 4, 4), optional
        Reference-to-volume rigid matrices (identity when omitted).
    order : int
        Spline order (1 = trilinear).

    Returns
    -------
    numpy.ndarray of shape (N, T) or (N,), float32
    """
    squeeze = bold.ndim == 3
    data = bold[..., None] if squeeze else bold
    n_vols = data.shape[3]
    to_vox = np.linalg.inv(bold_affine)
    points_h = np.vstack([ref_points, np.ones(ref_points.shape[1])])
    out = np.empty((ref_points.shape[1], n_vols), dtype=np.float32)
    for t in range(n_vols):
        mat = to_vox @ (motion_matrices[t] if motion_matrices is not None else np.eye(4))
        vox = (mat @ points_h)[:3]
        volume = np.asarray(data[..., t], dtype=np.float32)
        out[:, t] = ndimage.map_coordinates(
            volume, vox, order=order, mode="constant", cval=0.0, prefilter=order > 1
        )
    return out[:, 0] if squeeze else out


def fill_grid(values: np.ndarray, shape: tuple[int, ...], mask: np.ndarray | None) -> np.ndarray:
    """Place (N, T) or (N,) values at the mask voxels of a grid (zeros elsewhere)."""
    if mask is None:
        return values.reshape(tuple(shape[:3]) + values.shape[1:])
    out = np.zeros(tuple(shape[:3]) + values.shape[1:], dtype=values.dtype)
    out[np.asarray(mask, bool)] = values
    return out


def grid_at_resolution(img: nib.spatialimages.SpatialImage, zooms) -> tuple[tuple, np.ndarray]:
    """Return (shape, affine) of a grid covering ``img``'s field of view at new voxel sizes."""
    old = np.asarray(img.header.get_zooms()[:3], dtype=float)
    new = np.asarray(zooms, dtype=float)[:3]
    shape = tuple(int(n) for n in np.ceil(np.asarray(img.shape[:3]) * old / new))
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] @ np.diag(new / old)
    affine[:3, 3] = img.affine[:3, 3] + img.affine[:3, :3] @ ((new / old - 1) / 2)
    return shape, affine
