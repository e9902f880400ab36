"""Spatial normalization to the embedded MNI152 2009a template (affine + SyN, antspyx).

Registration runs on the skull-stripped image at the template's 2 mm resolution
(``antsRegistrationSyNQuick[s]``: rigid, affine, then symmetric normalization;
Avants et al., 2008), initialised by the rigid head alignment. The affine and the
warp are composed into one displacement field in each direction:

* forward (T1w -> MNI, ``mode-image``): a field on the template grid, used as
  ``ants.apply_transforms(fixed=template, moving=t1w, transformlist=[forward])``;
* inverse (MNI -> T1w): a field on a 2 mm copy of the native grid, used as
  ``ants.apply_transforms(fixed=t1w, moving=atlas, transformlist=[inverse])``.

ITK stores displacement vectors in LPS coordinates (see :func:`displacement_ras`).
"""

from __future__ import annotations

import shutil

import ants
import nibabel as nib
import numpy as np

from brainscale.resources import get_template
from workflows.anat.brain_extraction import initial_brain_mask, rigid_head_alignment
from workflows.anat.images import resample_to_resolution, to_ants, to_nibabel


def register_brain_to_template(
    brain: ants.ANTsImage,
    template_brain: ants.ANTsImage,
    out_prefix: str,
    initial_xfm: str | None = None,
    seed: int = 0,
    transform: str = "antsRegistrationSyNQuick[s]",
) -> tuple[str, str]:
    """Register a skull-stripped image to the template and compose the transforms.

    Parameters
    ----------
    brain : ants.ANTsImage
        Skull-stripped moving image (any resolution; ~2 mm is fast).
    template_brain : ants.ANTsImage
        Skull-stripped template (fixed).
    out_prefix : str
        Prefix of the output files; each call needs its own prefix (ANTsPy lists the
        outputs by globbing it).
    initial_xfm : str, optional
        ITK transform to start from (e.g. the rigid head alignment).
    seed : int
        Random seed of the metric sampling (reproducibility).
    transform : str
        ANTsPy ``type_of_transform``.

    Returns
    -------
    forward : str
        Displacement field (.nii.gz) T1w -> template on the template grid.
    inverse : str
        Displacement field template -> T1w on the grid of ``brain``.
    """
    reg = ants.registration(template_brain, brain, type_of_transform=transform,
                            initial_transform=initial_xfm, outprefix=f"{out_prefix}reg_",
                            random_seed=seed)
    forward = ants.apply_transforms(template_brain, brain, reg["fwdtransforms"],
                                    compose=f"{out_prefix}fwd_")
    invert = [t.endswith(".mat") for t in reg["invtransforms"]]
    inverse = ants.apply_transforms(brain, template_brain, reg["invtransforms"],
                                    whichtoinvert=invert, compose=f"{out_prefix}inv_")
    out_fwd, out_inv = f"{out_prefix}forward_xfm.nii.gz", f"{out_prefix}inverse_xfm.nii.gz"
    shutil.move(forward, out_fwd)
    shutil.move(inverse, out_inv)
    return out_fwd, out_inv


def apply_displacement(
    moving: nib.spatialimages.SpatialImage,
    reference: nib.spatialimages.SpatialImage,
    xfm: str,
    interpolation: str = "linear",
) -> nib.Nifti1Image:
    """Resample ``moving`` onto the grid of ``reference`` through a displacement field.

    Parameters
    ----------
    moving, reference : nibabel images
        Image to warp and grid to warp it onto.
    xfm : str
        Displacement-field transform (ANTs/ITK) mapping reference points to moving points.
    interpolation : {"linear", "nearestNeighbor", "genericLabel", "bSpline"}
        ANTs interpolator.

    Returns
    -------
    nibabel.Nifti1Image
        Float32 image on the reference grid.
    """
    out = ants.apply_transforms(to_ants(reference), to_ants(moving), [xfm],
                                interpolator=interpolation)
    return to_nibabel(out)


def displacement_ras(xfm: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an ITK displacement field as RAS vectors.

    Parameters
    ----------
    xfm : str
        Path to the field (5D NIfTI, vectors in LPS mm).

    Returns
    -------
    vectors : numpy.ndarray
        ``(X, Y, Z, 3)`` displacements in RAS mm.
    affine : numpy.ndarray
        Voxel-to-RAS affine of the field's grid.
    """
    img = nib.load(xfm)
    vec = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3] + (3,))
    return vec * np.array([-1.0, -1.0, 1.0], dtype=np.float32), img.affine


def downsample(img: ants.ANTsImage, resolution: float = 2.0) -> ants.ANTsImage:
    """Return ``img`` resampled to ``resolution`` mm unless it is already that coarse."""
    if min(img.spacing) >= resolution - 1e-3:
        return img
    return resample_to_resolution(img, resolution)


def normalize_head_to_template(t1w: nib.spatialimages.SpatialImage, out_prefix: str,
                               seed: int = 0) -> tuple[str, str]:
    """Normalize a bias-corrected full-head T1w to the template (rigid, brain mask, SyN).

    Parameters
    ----------
    t1w : nibabel image
        Bias-corrected T1w (native grid, with or without skull).
    out_prefix : str
        Prefix for the intermediate and output transform files.
    seed : int
        Random seed of ANTs' metric sampling.

    Returns
    -------
    forward, inverse : str
        Composed displacement fields (see :func:`register_brain_to_template`).
    """
    low = downsample(to_ants(t1w), 2.0)
    rigid = rigid_head_alignment(low, out_prefix, seed=seed)
    brain_mask = initial_brain_mask(low, rigid).astype(np.float32)
    brain = low * ants.from_numpy(brain_mask, origin=low.origin, spacing=low.spacing,
                                  direction=low.direction)
    return register_brain_to_template(brain, to_ants(get_template(2)), out_prefix,
                                      initial_xfm=rigid, seed=seed)
