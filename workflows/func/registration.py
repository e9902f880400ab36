"""Registration of the BOLD reference with antspyx, and ITK <-> RAS matrix conversion."""

from __future__ import annotations

import os
import tempfile

import ants
import nibabel as nib
import numpy as np

from brainscale.workflows.anat.images import ants_registration, read_itk_affine
from brainscale.workflows.func.resample import resample_to_grid

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_to_ras_matrix(transform_file: str | os.PathLike) -> np.ndarray:
    """Convert an ITK/ANTs affine transform file to a 4x4 RAS world matrix.

    ITK transforms map points of the fixed image to the moving image in LPS
    coordinates, ``y = A (x - c) + t + c``; the returned matrix does the same in RAS.

    Parameters
    ----------
    transform_file : path-like
        ``.mat`` or ``.txt`` affine transform written by ANTs.

    Returns
    -------
    numpy.ndarray of shape (4, 4)
        Maps a fixed-image world point (RAS mm) to the moving image's world point.
    """
    return _LPS @ read_itk_affine(transform_file) @ _LPS


def register_boldref(
    fixed_file: str | os.PathLike,
    moving_file: str | os.PathLike,
    out_transform: str | os.PathLike,
    *,
    transform_type: str = "Rigid",
    fixed_mask_file: str | os.PathLike | None = None,
    seed: int = 0,
    working_resolution_mm: float = 2.0,
) -> np.ndarray:
    """Register the BOLD reference (moving) to an anatomical image (fixed), mutual information.

    Parameters
    ----------
    fixed_file : path-like
        Brain-extracted T1w (or the template for the BOLD-only path).
    moving_file : path-like
        BOLD reference.
    out_transform : path-like
        Where the ITK transform is copied (``.mat``); used as
        ``ants.apply_transforms(fixed=anat, moving=boldref, transformlist=[out_transform])``.
    transform_type : str
        ``"Rigid"`` (BOLD to T1w) or ``"Affine"`` (BOLD-only path to the template).
    fixed_mask_file : path-like, optional
        Mask of the fixed image restricting the metric.
    seed : int
        Random seed of the metric's sampling.
    working_resolution_mm : float
        A finer fixed image is resampled to this voxel size first (the transform is in
        world coordinates, so it applies to the original grid).

    Returns
    -------
    numpy.ndarray of shape (4, 4)
        RAS matrix mapping an anatomical (fixed) world point to the BOLD reference.
    """
    fixed = ants.image_read(str(fixed_file))
    if min(fixed.spacing) < working_resolution_mm:
        # the BOLD reference has ~3 mm voxels: a finer anatomical grid only costs time
        fixed = ants.resample_image(fixed, (working_resolution_mm,) * 3, False, 0)
    moving = ants.image_read(str(moving_file))
    mask = None
    if fixed_mask_file:
        mask = ants.resample_image_to_target(ants.image_read(str(fixed_mask_file)), fixed,
                                             interp_type="nearestNeighbor")
    with tempfile.TemporaryDirectory() as tmp:
        # ANTsPy ignores random_seed=: the helper sets the seed ANTs really reads
        result = ants_registration(
            fixed,
            moving,
            seed,
            type_of_transform=transform_type,
            mask=mask,
            aff_metric="mattes",
            aff_shrink_factors=(4, 2, 1),
            aff_smoothing_sigmas=(2, 1, 0),
            aff_iterations=(500, 250, 50),
            outprefix=os.path.join(tmp, "coreg_"),
        )
        transform = ants.read_transform(result["fwdtransforms"][0])
        ants.write_transform(transform, str(out_transform))
    return itk_to_ras_matrix(out_transform)


def save_matrix(matrix: np.ndarray, path: str | os.PathLike) -> str:
    """Write a 4x4 matrix as text and return the path."""
    np.savetxt(path, matrix, fmt="%.10g")
    return str(path)


def brain_extract(image: nib.Nifti1Image, mask: nib.Nifti1Image) -> nib.Nifti1Image:
    """Zero the voxels outside a mask (same grid), keeping float32 data."""
    data = np.asarray(image.dataobj, dtype=np.float32) * (np.asarray(mask.dataobj) > 0)
    return nib.Nifti1Image(data, image.affine)


def coregistration_brains(
    anat: nib.Nifti1Image,
    anat_mask: nib.Nifti1Image,
    boldref: nib.Nifti1Image,
    bold_mask: nib.Nifti1Image,
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Brain-extract the two images that the coregistration aligns.

    Parameters
    ----------
    anat : nibabel.Nifti1Image
        T1w (or the template on the BOLD-only path).
    anat_mask : nibabel.Nifti1Image
        Its brain mask, on any grid: brought onto the grid of ``anat`` by nearest
        neighbour first (the template's mask may come at another resolution).
    boldref : nibabel.Nifti1Image
        BOLD reference.
    bold_mask : nibabel.Nifti1Image
        Brain mask of the reference, on its grid.

    Returns
    -------
    anat_brain, boldref_brain : nibabel.Nifti1Image
        float32 images, zero outside the masks, on the grids of ``anat`` and ``boldref``.
    """
    anat_brain = brain_extract(anat, resample_to_grid(anat_mask, anat, "nearest"))
    return anat_brain, brain_extract(boldref, bold_mask)
