"""One-shot resampling: head motion, BOLD-to-anatomy and anatomy-to-template in one step.

For every target voxel the composed mapping target -> (displacement field) -> T1w ->
(coregistration) -> BOLD reference -> (head motion of volume t) -> BOLD voxel is
evaluated, and each volume is interpolated once, in float32. Slice-timing correction runs
in memory first, and a susceptibility voxel-shift map, when given, is the last link.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nilearn.image import resample_to_img
from scipy import ndimage

from brainscale.workflows.func import sdc
from brainscale.workflows.func.slice_timing import correct_slice_timing, slice_timing_plan

_LPS_SIGN = np.array([-1.0, -1.0, 1.0])

TARGET_MASK_THRESHOLD = 0.5
"""Brain-mask fraction (after partial-volume resampling) above which a target voxel is brain."""

RESTRICT_DILATION_VOXELS = 3
"""The resampled BOLD covers the target brain mask dilated by this many voxels."""

FIELD_OF_VIEW_COVERAGE = 0.999
"""Trilinear weight of the BOLD field of view above which a target voxel is covered."""


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


def resample_to_grid(img: nib.spatialimages.SpatialImage, like: nib.spatialimages.SpatialImage,
                     interpolation: str) -> nib.Nifti1Image:
    """Resample an image onto the grid of another (nilearn), masks included.

    Parameters
    ----------
    img : nibabel image
        Image to resample.
    like : nibabel image
        Image whose grid (shape, affine) is the target.
    interpolation : str
        ``"nearest"``, ``"linear"`` or ``"continuous"``; a binary mask interpolated
        continuously gives its partial-volume fraction, on purpose.

    Returns
    -------
    nibabel.Nifti1Image
    """
    with warnings.catch_warnings():  # masks are interpolated on purpose (partial volume)
        warnings.filterwarnings("ignore", message="Resampling binary images")
        return resample_to_img(img, like, interpolation=interpolation, force_resample=True,
                               copy_header=True)


def target_brain_mask(
    mask_img: nib.spatialimages.SpatialImage,
    shape: tuple[int, ...],
    affine: np.ndarray,
    threshold: float = TARGET_MASK_THRESHOLD,
    dilation: int = RESTRICT_DILATION_VOXELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a brain mask onto a target grid and dilate it into the resampling region.

    Parameters
    ----------
    mask_img : nibabel image
        Brain mask (or brain probability) on any grid.
    shape, affine
        Target grid.
    threshold : float
        A target voxel is brain when the mask's partial-volume fraction there exceeds it.
    dilation : int
        Iterations of the binary dilation (6-connected) of the brain mask.

    Returns
    -------
    brain : numpy.ndarray of bool, shape ``shape``
        Brain mask on the target grid.
    restrict : numpy.ndarray of bool, shape ``shape``
        ``brain`` dilated by ``dilation`` voxels: the voxels that are resampled.
    """
    grid = nib.Nifti1Image(np.zeros(shape, np.uint8), affine)
    fraction = nib.Nifti1Image(np.asarray(mask_img.dataobj, np.float32), mask_img.affine)
    brain = np.asarray(resample_to_grid(fraction, grid, "continuous").dataobj) > threshold
    return brain, ndimage.binary_dilation(brain, iterations=dilation)


def field_of_view_mask(ref_shape: tuple[int, ...], bold_affine: np.ndarray,
                       ref_points: np.ndarray) -> np.ndarray:
    """Flag the points (3, N) that lie inside the BOLD field of view.

    Parameters
    ----------
    ref_shape : tuple of int
        Shape (X, Y, Z) of the BOLD grid.
    bold_affine : numpy.ndarray of shape (4, 4)
        Voxel-to-world affine of the BOLD grid.
    ref_points : numpy.ndarray of shape (3, N)
        Points in BOLD-reference world coordinates.

    Returns
    -------
    numpy.ndarray of shape (N,), bool
        True where the trilinear weight of the field of view exceeds
        :data:`FIELD_OF_VIEW_COVERAGE` (all eight neighbours lie inside it).
    """
    return resample_series(np.ones(ref_shape, np.float32), bold_affine, ref_points, None,
                           1) > FIELD_OF_VIEW_COVERAGE


@dataclass
class ResampledBold:
    """A BOLD run resampled onto a target grid."""

    bold: np.ndarray
    """(X, Y, Z, T) float32 series on the target grid."""
    boldref: np.ndarray
    """(X, Y, Z) float32 BOLD reference on the target grid."""
    mask: np.ndarray
    """(X, Y, Z) bool brain mask within the BOLD field of view."""
    affine: np.ndarray
    """Voxel-to-world affine of the target grid."""


def resample_bold_run(
    bold_img: nib.spatialimages.SpatialImage,
    boldref: np.ndarray,
    motion_matrices: np.ndarray,
    anat2boldref: np.ndarray,
    target: nib.spatialimages.SpatialImage,
    *,
    metadata: dict,
    repetition_time: float,
    source_name: str = "",
    bold_resolution: bool = False,
    target_mask: nib.spatialimages.SpatialImage | None = None,
    displacement_field: nib.spatialimages.SpatialImage | None = None,
    vsm: np.ndarray | None = None,
    pe_direction: str | None = None,
    order: int = 3,
) -> ResampledBold:
    """Slice-timing correct a BOLD run in memory, then resample every volume once to a target.

    Parameters
    ----------
    bold_img : nibabel image
        Raw 4D BOLD run (its data are read here, once).
    boldref : numpy.ndarray of shape (X, Y, Z), float32
        BOLD reference on the run's grid.
    motion_matrices : numpy.ndarray of shape (T, 4, 4)
        Reference-to-volume rigid matrices.
    anat2boldref : numpy.ndarray of shape (4, 4)
        Maps an anatomical point to the BOLD reference.
    target : nibabel image
        Image whose grid is the target.
    metadata : dict
        BIDS sidecar of the run (``SliceTiming``).
    repetition_time : float
        RepetitionTime (s).
    source_name : str
        Raw BOLD file name for messages.
    bold_resolution : bool
        Resample the target grid to the BOLD voxel size first.
    target_mask : nibabel image, optional
        Brain mask in target space; restricts the output to its dilation
        (:func:`target_brain_mask`) and the mask to the brain.
    displacement_field : nibabel image, optional
        Template-to-T1w ITK/ANTs displacement field.
    vsm : numpy.ndarray of shape (X, Y, Z), optional
        Voxel-shift map (voxels) on the BOLD reference grid, with ``pe_direction``.
    pe_direction : str, optional
        BIDS PhaseEncodingDirection of the run.
    order : int
        Spline order of the interpolation.

    Returns
    -------
    ResampledBold
    """
    tr = repetition_time
    data = np.asarray(bold_img.dataobj, dtype=np.float32)
    plan = slice_timing_plan(metadata, bold_img.shape, tr, source_name)
    if plan is not None:
        data = correct_slice_timing(data, plan[0], plan[1], tr, plan[2])
    if bold_resolution:
        shape, affine = grid_at_resolution(target, bold_img.header.get_zooms()[:3])
    else:
        shape, affine = target.shape[:3], target.affine
    if target_mask is not None:
        brain, restrict = target_brain_mask(target_mask, shape, affine)
    else:
        brain = restrict = None
    points = grid_points(shape, affine, restrict)
    field = field_affine = None
    if displacement_field is not None:
        field, field_affine = load_displacement_field(displacement_field)
    ref_points = target_to_boldref(points, anat2boldref, field, field_affine)
    del field
    if vsm is not None:
        axis, _ = sdc.pe_axis_and_sign(pe_direction)
        ref_points = sdc.distort_points(ref_points, bold_img.affine, vsm, axis)
    values = resample_series(data, bold_img.affine, ref_points, motion_matrices, order)
    del data
    out = fill_grid(values, shape, restrict)
    del values
    ref_values = resample_series(boldref, bold_img.affine, ref_points, None, order)
    coverage = fill_grid(field_of_view_mask(boldref.shape, bold_img.affine, ref_points), shape,
                         restrict)
    mask = coverage if brain is None else brain & coverage
    return ResampledBold(out, fill_grid(ref_values, shape, restrict), mask, affine)
