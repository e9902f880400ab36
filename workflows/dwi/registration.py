"""Diffusion-to-anatomy and diffusion-to-template registration (ANTs) and resampling.

Transforms are ANTs files. ``ants.apply_transforms`` composes a ``transformlist``
last-first on points of the fixed image, so resampling an image from template space
into diffusion space through the T1w is ``[std2anat_xfm, dwi2anat]`` with
``whichtoinvert=[False, True]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import ants
import nibabel as nib
import numpy as np

from brainscale.workflows.anat.images import ants_registration


def _read(path: str | os.PathLike) -> ants.ANTsImage:
    """Read an image with ANTs (3D; the first volume of a 4D image)."""
    img = nib.load(str(path))
    if img.ndim > 3:
        raise ValueError(f"{path}: expected a 3D image")
    return ants.image_read(str(path))


def register_dwi_to_anat(
    b0_file: str, t1w_file: str, out_prefix: str, t1w_mask_file: str | None = None,
    seed: int = 0,
) -> str:
    """Rigidly align the diffusion reference to the T1w (mutual information).

    Parameters
    ----------
    b0_file : str
        Mean b=0 image (3D).
    t1w_file : str
        Preprocessed T1w.
    out_prefix : str
        Prefix of the ANTs output files.
    t1w_mask_file : str, optional
        T1w brain mask restricting the metric.
    seed : int
        Seed of the metric sampling (same seed and thread count: identical result).

    Returns
    -------
    str
        ANTs transform file; with ``fixed=T1w`` it maps T1w points to diffusion points,
        so ``ants.apply_transforms(fixed=b0, moving=t1w_image, [it], whichtoinvert=[True])``
        brings T1w-space images into diffusion space.
    """
    fixed = _read(t1w_file)
    if t1w_mask_file:
        fixed = fixed * _read(t1w_mask_file)
    reg = ants_registration(  # seeded: ANTs otherwise seeds its sampling from the clock
        fixed,
        _read(b0_file),
        seed,
        type_of_transform="Rigid",
        aff_metric="mattes",
        outprefix=out_prefix,
    )
    return reg["fwdtransforms"][0]


def register_dwi_to_template(
    b0_file: str, mask_file: str, template_file: str, template_mask_file: str, out_prefix: str,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Align the skull-stripped diffusion reference directly to the template (no T1w).

    Affine then SyN with mutual information, which copes with the inverted T2-like
    contrast of b=0 images against a T1w template.

    Parameters
    ----------
    b0_file, mask_file : str
        Mean b=0 image and its brain mask.
    template_file, template_mask_file : str
        Template T1w and brain mask.
    out_prefix : str
        Prefix of the ANTs output files.
    seed : int
        Seed of the metric sampling (same seed and thread count: identical result).

    Returns
    -------
    forward : list of str
        Transforms for ``fixed=template, moving=dwi``.
    inverse : list of str
        Transforms for ``fixed=dwi, moving=template`` (with ``whichtoinvert`` of ANTs'
        ``invtransforms``: apply with ``whichtoinvert=[True, False]``).
    """
    moving = _read(b0_file) * _read(mask_file)
    fixed = _read(template_file) * _read(template_mask_file)
    reg = ants_registration(
        fixed,
        moving,
        seed,
        type_of_transform="SyN",
        syn_metric="mattes",
        aff_metric="mattes",
        reg_iterations=(40, 20, 0),
        outprefix=out_prefix,
    )
    return list(reg["fwdtransforms"]), list(reg["invtransforms"])


def resample_to_dwi(
    moving_file: str,
    b0_file: str,
    transforms: list[str],
    whichtoinvert: list[bool],
    *,
    labels: bool,
) -> nib.Nifti1Image:
    """Resample an image into diffusion space through ANTs transforms.

    Parameters
    ----------
    moving_file : str
        Image to bring in (atlas, tissue probability, mask).
    b0_file : str
        Diffusion reference (defines the grid).
    transforms : list of str
        ANTs transforms, composed last-first on diffusion-space points.
    whichtoinvert : list of bool
        Which transforms to invert.
    labels : bool
        Nearest-label interpolation (``genericLabel``) instead of linear.

    Returns
    -------
    nibabel.Nifti1Image
        The resampled image on the diffusion grid (int32 labels or float32).
    """
    fixed = ants.image_read(b0_file)
    out = ants.apply_transforms(
        fixed=fixed,
        moving=ants.image_read(moving_file),
        transformlist=list(transforms),
        whichtoinvert=list(whichtoinvert),
        interpolator="genericLabel" if labels else "linear",
    )
    ref = nib.load(b0_file)
    data = out.numpy()
    data = np.rint(data).astype(np.int32) if labels else data.astype(np.float32)
    return nib.Nifti1Image(data, ref.affine)


@dataclass
class DWIRegistration:
    """Atlases and tissue maps brought into diffusion space, and how."""

    atlases: list[nib.Nifti1Image]
    """Atlas label images on the diffusion grid (int32), in the order given."""
    tpms: list[nib.Nifti1Image]
    """[GM, WM, CSF] probabilities on the diffusion grid (with a T1w and its maps)."""
    transforms: list[str]
    """ANTs transforms estimated."""
    meta: dict
    """Sidecar of the diffusion reference (``AtlasRegistration``)."""
    dwi2anat_xfm: str | None = field(default=None)
    """Rigid diffusion-T1w transform (with a T1w)."""


def register_atlases_to_dwi(
    b0_file: str,
    mask_file: str,
    atlas_files: Sequence[str],
    out_prefix: str,
    *,
    t1w_file: str | None = None,
    t1w_mask_file: str | None = None,
    t1w_tpm_files: Sequence[str] = (),
    std2anat_xfm: str | None = None,
    template_file: str | None = None,
    template_mask_file: str | None = None,
    seed: int = 0,
) -> DWIRegistration:
    """Bring template-space atlases (and T1w tissue maps) into diffusion space.

    With a T1w, the diffusion reference is aligned rigidly to it
    (:func:`register_dwi_to_anat`) and the atlases go through the template-to-T1w
    transform of the anatomical workflow and the inverse rigid one. Without, the
    reference is registered to the template directly (:func:`register_dwi_to_template`)
    and the atlases go through the inverse of that registration.

    Parameters
    ----------
    b0_file, mask_file : str
        Diffusion reference and its brain mask.
    atlas_files : sequence of str
        Atlas label images in template space.
    out_prefix : str
        Prefix of the ANTs output files.
    t1w_file, t1w_mask_file : str, optional
        Preprocessed T1w and its brain mask (anatomy available).
    t1w_tpm_files : sequence of str
        [GM, WM, CSF] probabilities in T1w space (with a T1w).
    std2anat_xfm : str, optional
        Template-to-T1w transform (required with a T1w).
    template_file, template_mask_file : str, optional
        Template T1w and brain mask (required without a T1w).
    seed : int
        Seed of the registrations' metric sampling.

    Returns
    -------
    DWIRegistration
        Resampled atlases and tissue maps, the transforms and the sidecar.
    """
    if t1w_file is not None:
        rigid = register_dwi_to_anat(b0_file, t1w_file, out_prefix, t1w_mask_file, seed=seed)
        atlas_chain, atlas_invert = [std2anat_xfm, rigid], [False, True]
        tpms = [
            resample_to_dwi(f, b0_file, [rigid], [True], labels=False) for f in t1w_tpm_files
        ]
        transforms, dwi2anat = [rigid], rigid
        meta = {
            "Description": "bias-corrected mean b=0",
            "AtlasRegistration": "template -> T1w (anatomical workflow) -> DWI (rigid, "
            "mutual information, ANTs)",
        }
    else:
        _, inverse = register_dwi_to_template(
            b0_file, mask_file, template_file, template_mask_file, out_prefix, seed=seed
        )
        atlas_chain, atlas_invert = inverse, [True, False]
        tpms, transforms, dwi2anat = [], inverse, None
        meta = {
            "Description": "bias-corrected mean b=0",
            "AtlasRegistration": "no T1w: mean b=0 registered directly to the template "
            "(affine + SyN, mutual information, ANTs); tracking stops on FA",
        }
    atlases = [
        resample_to_dwi(path, b0_file, atlas_chain, atlas_invert, labels=True)
        for path in atlas_files
    ]
    return DWIRegistration(atlases, tpms, transforms, meta, dwi2anat)
