"""Conformance of T1w images: checks, orientation to RAS, choice of a reference T1w.

What is checked and what is fixed (documented behaviour):

* a 4D image with a single volume is squeezed to 3D; more volumes is an error;
* NaN/inf voxels are set to 0 when they are a small part of the image (< 1 %), an
  error otherwise; a constant (empty) image is an error;
* the voxel axes are reordered/flipped to the closest RAS+ orientation
  (:func:`nibabel.as_closest_canonical`); the world coordinates are unchanged, so this
  is lossless;
* oblique acquisitions keep their oblique affine (no resampling, no loss of
  resolution): every later step works in world coordinates through the affine; the
  obliquity angle is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from brainscale.errors import InputDataError

MAX_NONFINITE_FRACTION = 0.01
"""Largest fraction of NaN/inf voxels that is repaired (set to 0) instead of refused."""


@dataclass(frozen=True)
class ConformReport:
    """What :func:`conform_t1w` found and changed.

    Attributes
    ----------
    original_orientation : str
        Axis codes of the input, e.g. ``"LAS"``.
    obliquity_deg : float
        Largest angle between a voxel axis and its closest world axis, in degrees.
    nonfinite_voxels : int
        Number of NaN/inf voxels set to 0.
    squeezed_4d : bool
        Whether a single-volume 4D image was squeezed to 3D.
    """

    original_orientation: str
    obliquity_deg: float
    nonfinite_voxels: int
    squeezed_4d: bool

    def as_dict(self) -> dict:
        """Return the report as JSON-ready sidecar metadata."""
        return {
            "OriginalOrientation": self.original_orientation,
            "ObliquityDegrees": round(self.obliquity_deg, 3),
            "NonFiniteVoxelsZeroed": self.nonfinite_voxels,
            "Squeezed4D": self.squeezed_4d,
        }


def obliquity_degrees(affine: np.ndarray) -> float:
    """Return the largest angle between a voxel axis and the nearest world axis.

    Parameters
    ----------
    affine : numpy.ndarray
        4x4 voxel-to-world affine.

    Returns
    -------
    float
        Angle in degrees (0 for a plumb acquisition).
    """
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.clip(np.abs(axes).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def conform_t1w(img: nib.spatialimages.SpatialImage, filename: str = "T1w image"
                ) -> tuple[nib.Nifti1Image, ConformReport]:
    """Check a T1w image and return it as a float32 3D RAS+ image.

    Parameters
    ----------
    img : nibabel image
        The T1w image as read from disk.
    filename : str
        Name used in error messages.

    Returns
    -------
    nibabel.Nifti1Image
        3D float32 image, voxel axes in closest RAS+ orientation.
    ConformReport
        What was found and changed.

    Raises
    ------
    brainscale.errors.InputDataError
        For images with more than one volume, mostly non-finite or constant content,
        or a singular affine.
    """
    shape = img.shape
    squeezed = False
    if len(shape) == 4:
        if shape[3] != 1:
            raise InputDataError(f"{filename}: T1w image is 4D with {shape[3]} volumes; "
                                 "expected one 3D volume")
        squeezed = True
    elif len(shape) != 3:
        raise InputDataError(f"{filename}: T1w image has {len(shape)} dimensions {shape}; "
                             "expected 3")
    if min(shape[:3]) < 2:
        raise InputDataError(f"{filename}: T1w image shape {shape} is not a 3D volume")
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputDataError(f"{filename}: the image affine is singular or not finite")
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape[:3])
    finite = np.isfinite(data)
    n_bad = int(finite.size - np.count_nonzero(finite))
    if n_bad > MAX_NONFINITE_FRACTION * data.size:
        raise InputDataError(f"{filename}: {n_bad} of {data.size} voxels are NaN or inf")
    if n_bad:
        data = np.where(finite, data, 0).astype(np.float32)
    if float(data.max()) <= float(data.min()):
        raise InputDataError(f"{filename}: the image is constant (value {data.min()})")
    report = ConformReport(
        original_orientation="".join(nib.aff2axcodes(affine)),
        obliquity_deg=obliquity_degrees(affine),
        nonfinite_voxels=n_bad,
        squeezed_4d=squeezed,
    )
    out = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    out = nib.Nifti1Image(np.asarray(out.dataobj, dtype=np.float32), out.affine)
    out.header.set_xyzt_units("mm")
    return out, report


def load_t1w(path: str) -> nib.spatialimages.SpatialImage:
    """Read a T1w image, turning unreadable files into a clear error.

    Parameters
    ----------
    path : str
        Image file.

    Returns
    -------
    nibabel image
        The (lazily loaded) image.

    Raises
    ------
    brainscale.errors.InputDataError
        When nibabel cannot read the file (empty, truncated, not an image).
    """
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise InputDataError(f"{path}: cannot read the T1w image ({exc})") from exc


def select_reference_t1w(images: list[nib.spatialimages.SpatialImage]) -> int:
    """Choose the T1w to process when a session has several.

    The image with the smallest voxel volume (highest resolution) wins, ties broken by
    the larger field of view and then by order. Averaging is not done because runs
    with different resolutions or head positions would blur the result.

    Parameters
    ----------
    images : list of nibabel images
        The T1w images of a participant (or session).

    Returns
    -------
    int
        Index of the chosen image.

    Raises
    ------
    brainscale.errors.InputDataError
        When the list is empty.
    """
    if not images:
        raise InputDataError("no T1w image given")
    keys = []
    for i, img in enumerate(images):
        zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
        fov = float(np.prod(zooms * np.asarray(img.shape[:3])))
        keys.append((round(float(np.prod(zooms)), 4), -round(fov, 0), i))
    return min(keys)[2]
