"""Distortion correction of the BOLD reference from a phase-difference field map.

The magnitude image gives the brain mask (eroded once where the phase is reliable); the
phase difference becomes a field map in Hz
(:func:`brainscale.workflows.func.sdc.phasediff_to_fieldmap`).
The BOLD reference is registered rigidly to the magnitude image, the field map is sampled
on the reference grid through that transform, scaled by the readout time into a voxel-shift
map, and the reference and its mask are unwarped with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale.workflows.func import reference, registration, sdc
from brainscale.workflows.func.resample import grid_points, resample_series


def magnitude_masks(magnitude: nib.spatialimages.SpatialImage
                    ) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Return the brain mask of a field-map magnitude image and where its phase is reliable.

    Parameters
    ----------
    magnitude : nibabel image
        3D magnitude image of the field map.

    Returns
    -------
    brain : nibabel.Nifti1Image
        ``uint8`` brain mask (:func:`brainscale.workflows.func.reference.compute_bold_mask`).
    reliable : numpy.ndarray of bool
        The brain mask eroded by one voxel (6-connected): the phase near the brain's
        edge is noisy.
    """
    brain = reference.compute_bold_mask(
        nib.Nifti1Image(np.asarray(magnitude.dataobj, np.float32), magnitude.affine))
    return brain, ndimage.binary_erosion(np.asarray(brain.dataobj) > 0)


def field_on_boldref(field: np.ndarray, field_affine: np.ndarray, ref_shape: tuple[int, ...],
                     ref_affine: np.ndarray, boldref2fmap: np.ndarray) -> np.ndarray:
    """Sample a field map (Hz) on the BOLD reference grid through a rigid transform.

    Parameters
    ----------
    field : numpy.ndarray of shape (X, Y, Z)
        Field map on its own grid.
    field_affine : numpy.ndarray of shape (4, 4)
        Voxel-to-world affine of ``field``.
    ref_shape : tuple of int
        Shape of the BOLD reference grid.
    ref_affine : numpy.ndarray of shape (4, 4)
        Voxel-to-world affine of the BOLD reference grid.
    boldref2fmap : numpy.ndarray of shape (4, 4)
        RAS matrix mapping a BOLD-reference world point to the field map's world.

    Returns
    -------
    numpy.ndarray of shape ``ref_shape``, float32
        Trilinear samples, 0 outside the field map's grid.
    """
    points = grid_points(ref_shape, ref_affine)
    return resample_series(
        field.astype(np.float32), field_affine, boldref2fmap[:3, :3] @ points
        + boldref2fmap[:3, 3:4], order=1).reshape(ref_shape)


def unwarp_boldref(boldref: np.ndarray, mask: np.ndarray, affine: np.ndarray, vsm: np.ndarray,
                   axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Undo the distortion of a BOLD reference and its mask with a voxel-shift map.

    Parameters
    ----------
    boldref : numpy.ndarray of shape (X, Y, Z), float32
        Distorted BOLD reference.
    mask : numpy.ndarray of shape (X, Y, Z), float32
        Its brain mask (0/1).
    affine : numpy.ndarray of shape (4, 4)
        Voxel-to-world affine of both.
    vsm : numpy.ndarray of shape (X, Y, Z)
        Voxel shifts along ``axis``: the undistorted voxel ``x`` shows at ``x + vsm(x)``.
    axis : int
        Phase-encoding voxel axis.

    Returns
    -------
    unwarped : numpy.ndarray of shape (X, Y, Z), float32
        Cubic-spline samples of ``boldref`` at ``x + vsm(x)``.
    unwarped_mask : numpy.ndarray of shape (X, Y, Z), bool
        The mask sampled the same way (trilinear), above one half.
    """
    distorted = sdc.distort_points(grid_points(boldref.shape, affine), affine, vsm, axis)
    unwarped = resample_series(boldref, affine, distorted, order=3).reshape(boldref.shape)
    unwarped_mask = resample_series(mask, affine, distorted, order=1).reshape(boldref.shape)
    return unwarped, unwarped_mask > 0.5


@dataclass
class FieldmapCorrection:
    """The outcome of :func:`correct_with_fieldmap`, all on the BOLD reference grid."""

    fieldmap_hz: np.ndarray
    """Field map (Hz)."""
    vsm: np.ndarray
    """Voxel-shift map (voxels along the phase-encoding axis)."""
    boldref: np.ndarray
    """Distortion-corrected BOLD reference (float32)."""
    mask: np.ndarray
    """Brain mask of the corrected reference (bool)."""


def correct_with_fieldmap(
    magnitude: nib.spatialimages.SpatialImage,
    phasediff: nib.spatialimages.SpatialImage,
    echo_time1: float,
    echo_time2: float,
    boldref: nib.spatialimages.SpatialImage,
    bold_mask: nib.spatialimages.SpatialImage,
    total_readout_time: float,
    pe_direction: str,
    *,
    work_dir: str | os.PathLike,
    seed: int = 0,
) -> FieldmapCorrection:
    """Map a phase-difference field map onto the BOLD reference and unwarp the reference.

    Parameters
    ----------
    magnitude, phasediff : nibabel image
        The field map's magnitude and phase-difference images (same grid).
    echo_time1, echo_time2 : float
        Echo times (s) of the phase images.
    boldref, bold_mask : nibabel image
        BOLD reference and its brain mask.
    total_readout_time : float
        TotalReadoutTime (s) of the BOLD run.
    pe_direction : str
        BIDS PhaseEncodingDirection of the BOLD run.
    work_dir : path-like
        Folder for the registration's files (``magnitude_brain.nii.gz``,
        ``boldref_brain.nii.gz``, ``boldref2fmap.txt``).
    seed : int
        Random seed of the registration metric's sampling.

    Returns
    -------
    FieldmapCorrection
    """
    mag_mask, reliable = magnitude_masks(magnitude)
    mag_brain = os.path.join(work_dir, "magnitude_brain.nii.gz")
    nib.save(registration.brain_extract(magnitude, mag_mask), mag_brain)
    field = sdc.phasediff_to_fieldmap(np.asarray(phasediff.dataobj), echo_time1, echo_time2,
                                      reliable)
    ref_brain = os.path.join(work_dir, "boldref_brain.nii.gz")
    nib.save(registration.brain_extract(boldref, bold_mask), ref_brain)
    boldref2fmap = registration.register_boldref(
        ref_brain, mag_brain, os.path.join(work_dir, "boldref2fmap.txt"), transform_type="Rigid",
        seed=seed, working_resolution_mm=0.0)
    field_ref = field_on_boldref(field, phasediff.affine, boldref.shape, boldref.affine,
                                 boldref2fmap)
    vsm, axis = sdc.voxel_shift_map(field_ref, total_readout_time, pe_direction)
    unwarped, unwarped_mask = unwarp_boldref(
        np.asarray(boldref.dataobj, dtype=np.float32),
        np.asarray(bold_mask.dataobj, np.float32), boldref.affine, vsm, axis)
    return FieldmapCorrection(field_ref, vsm, unwarped, unwarped_mask)
