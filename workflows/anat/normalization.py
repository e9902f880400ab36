"""Spatial normalization to the embedded MNI152 2009a template (affine + SyN, antspyx).

1. *Affine* (12 parameters, mutual information) at 2 mm. A full-head image is aligned
   rigidly to a pseudo-head template, then affinely to the template with the metric
   restricted to the template's brain mask, and a first brain mask is drawn from the
   priors that affine carries (:mod:`brainscale.workflows.anat.brain_extraction`). A pre-stripped
   image is its own brain: started from the translation that matches its centroid to
   the template brain's, it is registered whole (``antsRegistrationSyNQuick[a]``
   levels). The affine's determinant gives the estimated total intracranial volume
   (:func:`estimated_intracranial_volume`).
2. *SyN* (Avants et al., 2008) from that affine onto the template cropped around its
   brain, at ``SYN_RESOLUTION_MM`` for images finer than 1.5 mm (2 mm otherwise:
   :func:`syn_resolution`), with a four-level pyramid whose last level runs at full
   resolution (:data:`SYN_ITERATIONS`; ``antsRegistrationSyNQuick`` stops one level
   coarser, and SyN at 2 mm only left the MNI-space T1w at r = 0.65 with the template).

The affine and the warp are composed into one displacement field in each direction:

* forward (T1w -> MNI, ``mode-image``): a field on the template grid of the finest SyN
  level (1 mm for images finer than 1.5 mm: fMRIPrep too keeps its warp at template
  resolution; sampling the 1 mm warp every 2 mm cost 0.011 of the MNI-space T1w's
  correlation with the template on ds002748 sub-20), used as
  ``ants.apply_transforms(fixed=template, moving=t1w, transformlist=[forward])``;
* inverse (MNI -> T1w): a field on a 2 mm copy of the native grid, used as
  ``ants.apply_transforms(fixed=t1w, moving=atlas, transformlist=[inverse])``.

ITK stores displacement vectors in LPS coordinates (see :func:`displacement_ras`).
Every ANTs call gets the seed (:func:`brainscale.workflows.anat.images.ants_registration`): the
same inputs, seed and thread count give bit-identical fields.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import ants
import nibabel as nib
import numpy as np

from brainscale.workflows.anat.brain_extraction import (
    brain_affine_of_head,
    initial_brain_mask,
    mask_centroid,
    rigid_head_alignment,
    stripped_brain_mask,
    write_translation,
)
from brainscale.workflows.anat.images import (
    TemplateImages,
    ants_registration,
    crop_to_mask,
    read_itk_affine,
    resample_to_resolution,
    to_ants,
    to_nibabel,
)

AFFINE_RESOLUTION_MM = 2.0
"""Voxel size at which the brain is registered affinely."""

SYN_RESOLUTION_MM = 1.0
"""Voxel size of the finest SyN level (the template grid it runs on)."""

SYN_CROP_MARGIN_MM = 4.0
"""Margin around the template's tight brain mask kept on the SyN grid (the rest is cut)."""

SYN_ITERATIONS = (100, 70, 50, 20)
"""SyN iterations at shrink factors 8, 4, 2, 1 of the :data:`SYN_RESOLUTION_MM` grid.

A 1 mm iteration costs a few CPU-s (mutual information on the cropped 1 mm grid). On
ds002748 sub-20 (after N4), 20 iterations at 1 mm instead of 10 raised the MNI-space
T1w's correlation with the template from 0.844 to 0.857 for about 25 s more; a wider
update field (flow sigma 2, step 0.25) gave 0.845, and cross-correlation (radius 2)
gave 0.662 against 0.691 for mutual information at twice the cost (sub-45, earlier N4).
"""


def syn_resolution(img: nib.spatialimages.SpatialImage) -> int:
    """Return the template resolution (mm) of the finest SyN level for an image.

    :data:`SYN_RESOLUTION_MM` for images finer than 1.5 mm, 2 mm otherwise (a 1 mm
    level would only add time for a 2 mm image).
    """
    zooms = np.linalg.norm(np.asarray(img.affine)[:3, :3], axis=0)
    return int(SYN_RESOLUTION_MM) if zooms.min() < 1.5 else 2


@dataclass(frozen=True)
class Normalization:
    """Result of :func:`normalize_to_template`.

    Attributes
    ----------
    forward : str
        Displacement field T1w -> template (on the template grid of the finest SyN level).
    inverse : str
        Displacement field template -> T1w (on a 2 mm copy of the native grid).
    affine : str
        ITK affine (template -> T1w points) of the affine stage, initial alignment
        included.
    """

    forward: str
    inverse: str
    affine: str


def affine_matrix(xfm: str) -> np.ndarray:
    """Return the 3x3 linear part of an ITK affine transform file (LPS axes)."""
    return read_itk_affine(xfm)[:3, :3].copy()


def estimated_intracranial_volume(xfm: str, template_icv_mm3: float) -> float:
    """Estimate total intracranial volume from the affine of the T1w -> template registration.

    The atlas-scaling method of Buckner et al. (2004), the one behind FreeSurfer's
    eTIV: the volume of the template's intracranial region carried into the subject by
    the affine part of the registration, ``|det A| * ICV_template``, where ``A`` maps
    template points to subject points. It depends on the size of the brain outline the
    affine matched, not on how (or whether) the image was skull-stripped.

    Parameters
    ----------
    xfm : str
        ITK affine transform file, template -> subject points (ANTs' forward convention).
    template_icv_mm3 : float
        Intracranial volume of the template (mm^3).

    Returns
    -------
    float
        eTIV in mm^3.
    """
    return float(abs(np.linalg.det(affine_matrix(xfm))) * template_icv_mm3)


def compose_transforms(reg: dict, moving: ants.ANTsImage, template: ants.ANTsImage,
                       native_grid: ants.ANTsImage, out_prefix: str) -> tuple[str, str]:
    """Compose an ANTs registration's transforms into one displacement field each way.

    Parameters
    ----------
    reg : dict
        Result of :func:`ants.registration` (``fwdtransforms``, ``invtransforms``).
    moving : ants.ANTsImage
        The image that was registered.
    template : ants.ANTsImage
        Grid of the forward field.
    native_grid : ants.ANTsImage
        Grid of the inverse field.
    out_prefix : str
        Prefix of the output files.

    Returns
    -------
    forward, inverse : str
        ``<out_prefix>forward_xfm.nii.gz`` and ``<out_prefix>inverse_xfm.nii.gz``.
    """
    forward = ants.apply_transforms(template, moving, reg["fwdtransforms"],
                                    compose=f"{out_prefix}fwd_")
    invert = [t.endswith(".mat") for t in reg["invtransforms"]]
    inverse = ants.apply_transforms(native_grid, template, reg["invtransforms"],
                                    whichtoinvert=invert, compose=f"{out_prefix}inv_")
    out_fwd, out_inv = f"{out_prefix}forward_xfm.nii.gz", f"{out_prefix}inverse_xfm.nii.gz"
    shutil.move(forward, out_fwd)
    shutil.move(inverse, out_inv)
    return out_fwd, out_inv


def register_brain_to_template(
    brain: ants.ANTsImage,
    template_brain: ants.ANTsImage,
    out_prefix: str,
    initial_xfm: str | None = None,
    seed: int = 0,
    transform: str = "antsRegistrationSyNQuick[s]",
) -> tuple[str, str]:
    """Register a skull-stripped image to the template in one ANTs call and compose.

    Parameters
    ----------
    brain : ants.ANTsImage
        Skull-stripped moving image.
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
    reg = ants_registration(template_brain, brain, seed, type_of_transform=transform,
                            initial_transform=initial_xfm, outprefix=f"{out_prefix}reg_")
    return compose_transforms(reg, brain, template_brain, brain, out_prefix)


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


def _masked(img: ants.ANTsImage, mask: np.ndarray) -> ants.ANTsImage:
    return img * ants.from_numpy(mask.astype(np.float32), origin=img.origin,
                                 spacing=img.spacing, direction=img.direction)


def normalize_to_template(
    t1w: nib.spatialimages.SpatialImage,
    template: TemplateImages,
    template_fine: TemplateImages,
    out_prefix: str,
    seed: int = 0,
    skull_stripped: bool = False,
    syn_iterations: tuple[int, ...] = SYN_ITERATIONS,
) -> Normalization:
    """Normalize a bias-corrected T1w (with or without skull) to the template.

    Parameters
    ----------
    t1w : nibabel image
        Bias-corrected T1w (native grid).
    template : TemplateImages
        Template at :data:`AFFINE_RESOLUTION_MM` (rigid and affine stages, field grids).
    template_fine : TemplateImages
        Template at :data:`SYN_RESOLUTION_MM` (SyN).
    out_prefix : str
        Prefix for the intermediate and output transform files.
    seed : int
        Random seed of ANTs' metric sampling.
    skull_stripped : bool
        Whether ``t1w`` is already skull-stripped (no extraction is run).
    syn_iterations : tuple of int
        SyN iterations per level; the last level runs at the template_fine resolution.

    Returns
    -------
    Normalization
        Composed displacement fields and the affine stage's transform.
    """
    native = to_ants(t1w)
    low = downsample(native, AFFINE_RESOLUTION_MM)
    fixed = to_ants(template.t1w)
    affine_xfm = f"{out_prefix}affine.mat"
    if skull_stripped:
        inside = stripped_brain_mask(to_nibabel(low))
        brain_low = _masked(low, inside)
        shift = mask_centroid(inside, to_nibabel(low).affine) - mask_centroid(
            np.asarray(template.mask.dataobj) > 0, template.mask.affine)
        initial = write_translation(shift, f"{out_prefix}init.mat")
        affine = ants_registration(fixed, brain_low, seed,
                                   type_of_transform="antsRegistrationSyNQuick[a]",
                                   initial_transform=initial, outprefix=f"{out_prefix}affine_")
        shutil.copyfile(affine["fwdtransforms"][0], affine_xfm)
    else:
        rigid = rigid_head_alignment(low, template, out_prefix, seed=seed)
        shutil.copyfile(brain_affine_of_head(low, template, rigid, out_prefix, seed=seed),
                        affine_xfm)
        inside = initial_brain_mask(low, affine_xfm, template)
        brain_low = _masked(low, inside)
    moving = downsample(native, SYN_RESOLUTION_MM)
    if skull_stripped:
        brain = moving  # the background is already empty
    else:
        carried = ants.resample_image_to_target(
            ants.from_numpy(inside.astype(np.float32), origin=low.origin, spacing=low.spacing,
                            direction=low.direction), moving, interp_type="linear")
        brain = _masked(moving, carried.numpy() > 0.5)
    syn_fixed = crop_to_mask(template_fine.t1w, template_fine.brain_mask, SYN_CROP_MARGIN_MM)
    syn = ants_registration(to_ants(syn_fixed), brain, seed,
                            type_of_transform="SyNOnly", initial_transform=affine_xfm,
                            reg_iterations=tuple(syn_iterations),
                            outprefix=f"{out_prefix}syn_")
    forward, inverse = compose_transforms(syn, brain, to_ants(template_fine.t1w), brain_low,
                                          out_prefix)
    return Normalization(forward=forward, inverse=inverse, affine=affine_xfm)
