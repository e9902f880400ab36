"""Conversions between nibabel and ANTsPy images, and small resampling helpers."""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np


def to_ants(img: nib.spatialimages.SpatialImage) -> ants.ANTsImage:
    """Convert a 3D nibabel image to a float32 ANTsPy image (world coordinates kept).

    Parameters
    ----------
    img : nibabel image
        A 3D image.

    Returns
    -------
    ants.ANTsImage
        The same voxels and world geometry.
    """
    out = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    out.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(out)


def to_nibabel(img: ants.ANTsImage, dtype=np.float32) -> nib.Nifti1Image:
    """Convert an ANTsPy image to a nibabel image with RAS+ world coordinates.

    Parameters
    ----------
    img : ants.ANTsImage
        A 3D image.
    dtype : numpy dtype
        Data type of the result.

    Returns
    -------
    nibabel.Nifti1Image
        The same voxels and world geometry.
    """
    out = ants.to_nibabel_nifti(img)
    res = nib.Nifti1Image(np.asarray(out.dataobj).astype(dtype), out.affine)
    res.header.set_xyzt_units("mm")
    return res


def like(data: np.ndarray, reference: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """Wrap an array in an image with the grid of ``reference``.

    Parameters
    ----------
    data : numpy.ndarray
        Array with the shape of ``reference``.
    reference : nibabel image
        Image giving the affine.

    Returns
    -------
    nibabel.Nifti1Image
        The new image (units mm).
    """
    out = nib.Nifti1Image(data, reference.affine)
    out.header.set_xyzt_units("mm")
    return out


def bounding_box(mask: np.ndarray, margin: int | np.ndarray) -> tuple[slice, ...]:
    """Return the slices of the box around a non-empty mask, widened by ``margin`` voxels.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean (or 0/1) array with at least one true voxel.
    margin : int or numpy.ndarray
        Voxels added on each side (one value, or one per axis); the box is clipped to
        the array.

    Returns
    -------
    tuple of slice
        One slice per axis.
    """
    inside = np.argwhere(mask)
    lo = np.maximum(inside.min(axis=0) - margin, 0)
    hi = np.minimum(inside.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def voxel_volume(img: nib.spatialimages.SpatialImage) -> float:
    """Return the volume of one voxel in mm^3."""
    return float(abs(np.linalg.det(img.affine[:3, :3])))


def resample_to_resolution(img: ants.ANTsImage, resolution: float) -> ants.ANTsImage:
    """Resample an ANTsPy image to isotropic voxels with linear interpolation.

    Parameters
    ----------
    img : ants.ANTsImage
        Input image.
    resolution : float
        Voxel size in mm.

    Returns
    -------
    ants.ANTsImage
        The resampled image (same field of view).
    """
    return ants.resample_image(img, (resolution,) * 3, use_voxels=False, interp_type=0)
