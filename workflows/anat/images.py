"""Conversions between nibabel and ANTsPy images, small resampling helpers, seeded ANTs.

:func:`read_itk_affine` is the one reader of ITK affine transform files (matrix,
translation and centre) for every modality.

It also holds :class:`TemplateImages`, the template and its tissue priors as the
numeric functions receive them: they never fetch templates themselves (the Nipype
interfaces take them from :mod:`brainscale.resources` and pass them in).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage


@dataclass(frozen=True, eq=False)
class TemplateImages:
    """A skull-stripped T1w template with its tissue priors, on one grid.

    Attributes
    ----------
    t1w : nibabel image
        Skull-stripped T1w template (0 outside the brain).
    gm, wm, csf : nibabel images
        Tissue probability maps on the same grid.
    mask : nibabel image
        Intracranial (brain + CSF) mask of the template.
    """

    t1w: nib.spatialimages.SpatialImage
    gm: nib.spatialimages.SpatialImage
    wm: nib.spatialimages.SpatialImage
    csf: nib.spatialimages.SpatialImage
    mask: nib.spatialimages.SpatialImage

    @property
    def resolution(self) -> float:
        """Voxel size of the template grid in mm (largest axis)."""
        return float(max(self.t1w.header.get_zooms()[:3]))

    def probseg(self, label: str) -> nib.spatialimages.SpatialImage:
        """Return the prior of ``label`` (``"CSF"``, ``"GM"`` or ``"WM"``)."""
        return {"CSF": self.csf, "GM": self.gm, "WM": self.wm}[label]

    @functools.cached_property
    def intracranial_volume_mm3(self) -> float:
        """Volume of :attr:`mask` in mm^3 (the template's intracranial volume)."""
        return float(np.count_nonzero(np.asarray(self.mask.dataobj))) * voxel_volume(self.mask)

    @functools.cached_property
    def brain_mask(self) -> nib.Nifti1Image:
        """Tight brain mask: GM+WM > 0.5, closed over 4 mm, holes (ventricles) filled."""
        gm = self.gm.get_fdata(dtype=np.float32)
        wm = self.wm.get_fdata(dtype=np.float32)
        iters = max(1, round(4 / self.resolution))
        tight = ndimage.binary_fill_holes(ndimage.binary_closing(gm + wm > 0.5,
                                                                 iterations=iters))
        return like(tight.astype(np.uint8), self.t1w)


def ants_registration(fixed: ants.ANTsImage, moving: ants.ANTsImage, seed: int,
                      **kwargs) -> dict:
    """Run :func:`ants.registration` with a fixed seed of its metric sampling.

    ANTsPy ignores a ``random_seed`` keyword (it swallows unknown keywords): it reads
    the seed from ``ants.config._random_seed`` and ANTs takes 0 as "seed from the
    clock". Without this, two runs of the same registration differ. The result is
    bit-identical for the same inputs, seed and ITK thread count.

    Parameters
    ----------
    fixed, moving : ants.ANTsImage
        Images to register.
    seed : int
        Non-negative seed; ANTs receives ``seed + 1``.
    **kwargs
        Passed to :func:`ants.registration`.

    Returns
    -------
    dict
        ANTsPy's registration result.
    """
    previous = ants.config._random_seed
    ants.config._random_seed = int(seed) + 1
    try:
        return ants.registration(fixed, moving, **kwargs)
    finally:
        ants.config._random_seed = previous


def read_itk_affine(xfm) -> np.ndarray:
    """Read an ITK affine transform file as a 4x4 matrix on LPS points.

    ITK stores the linear part ``A`` and the translation ``t`` as parameters and the
    centre ``c`` as fixed parameters, and maps a point ``x`` to ``A (x - c) + t + c``;
    the matrix returned does the same: ``[[A, t + c - A c], [0, 1]]``.

    Parameters
    ----------
    xfm : path-like
        ``.mat`` or ``.txt`` affine transform (ANTs' ``GenericAffine``, or any
        ``AffineTransform``/``MatrixOffsetTransformBase`` with 12 parameters).

    Returns
    -------
    numpy.ndarray of shape (4, 4)
        The transform of LPS points (mm); RAS callers conjugate it with
        ``diag(-1, -1, 1, 1)``.
    """
    transform = ants.read_transform(str(xfm))
    params = np.asarray(transform.parameters, dtype=float)
    center = np.asarray(transform.fixed_parameters, dtype=float)
    linear = params[:9].reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = params[9:12] + center - linear @ center
    return matrix


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


def crop_to_mask(img: nib.spatialimages.SpatialImage, mask: nib.spatialimages.SpatialImage,
                 margin_mm: float) -> nib.Nifti1Image:
    """Crop an image to the box around a mask on the same grid, widened by ``margin_mm``.

    Parameters
    ----------
    img, mask : nibabel images
        Image and mask on one grid.
    margin_mm : float
        Margin kept on each side.

    Returns
    -------
    nibabel.Nifti1Image
        The cropped image (world coordinates kept).
    """
    zooms = np.linalg.norm(img.affine[:3, :3], axis=0)
    box = bounding_box(np.asarray(mask.dataobj) > 0, np.ceil(margin_mm / zooms).astype(int))
    return like(np.asarray(img.dataobj)[box], img.slicer[box])
