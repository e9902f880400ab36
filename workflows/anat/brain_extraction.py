"""Brain extraction of full-head T1w images against the skull-stripped MNI template.

The embedded template has no scalp, so a head image cannot be registered to it
directly (the optimiser squeezes the scalp into the brain outline). The steps are:

1. align the head rigidly (no scaling) to a *pseudo-head* template: the template
   brain surrounded by a dark 6 mm skull shell and a bright 6 mm scalp shell, starting
   from a translation that matches the centroids of the upper 110 mm of both heads
   (robust to necks and defacing);
2. carry the template tissue priors into the image with that rigid transform, blurred
   to absorb size differences, and classify voxels into CSF/GM/WM/non-brain
   (:func:`workflows.anat.segmentation.classify_tissues`);
3. keep the largest connected GM+WM component after a morphological opening (which
   cuts thin bridges to the scalp), close it and fill its holes (ventricles).

The brain mask is refined later from the warped template brain mask and the final
tissue classification (:func:`refine_brain_mask`).
"""

from __future__ import annotations

import functools

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale.resources import get_template, get_template_mask, get_template_probseg
from workflows.anat.images import like, to_ants
from workflows.anat.segmentation import classify_tissues

UPPER_HEAD_DEPTH_MM = 110.0
"""Depth below the vertex used to match head centroids."""


@functools.lru_cache(maxsize=2)
def template_brain_mask(resolution: int = 2) -> nib.Nifti1Image:
    """Return a tight brain mask of the template: GM+WM > 0.5, closed, holes filled.

    Parameters
    ----------
    resolution : {1, 2}
        Template resolution in mm.

    Returns
    -------
    nibabel.Nifti1Image
        uint8 mask (includes ventricles, excludes the generous margin of nilearn's mask).
    """
    gm = get_template_probseg("GM", resolution).get_fdata()
    wm = get_template_probseg("WM", resolution).get_fdata()
    iters = max(1, round(4 / resolution))
    tight = ndimage.binary_fill_holes(ndimage.binary_closing(gm + wm > 0.5, iterations=iters))
    return like(tight.astype(np.uint8), get_template(resolution))


@functools.lru_cache(maxsize=2)
def pseudo_head_template(resolution: int = 2) -> nib.Nifti1Image:
    """Return the template brain wrapped in synthetic skull (dark) and scalp (bright) shells.

    Parameters
    ----------
    resolution : {1, 2}
        Template resolution in mm.

    Returns
    -------
    nibabel.Nifti1Image
        Float32 image on the template grid.
    """
    template = get_template(resolution)
    inside = get_template_mask(resolution).get_fdata() > 0
    dist = ndimage.distance_transform_edt(~inside, sampling=float(resolution))
    data = template.get_fdata().astype(np.float32)
    data[(dist > 0) & (dist <= 6)] = 0.05
    data[(dist > 6) & (dist <= 12)] = 0.8
    return like(data, template)


def head_mask(img: ants.ANTsImage) -> np.ndarray:
    """Return a boolean head mask (Otsu-like threshold with ANTs' cleanup)."""
    return ants.get_mask(img, low_thresh=None, cleanup=2).numpy() > 0


def upper_head_centroid(mask: np.ndarray, affine: np.ndarray,
                        depth: float = UPPER_HEAD_DEPTH_MM) -> np.ndarray:
    """Return the RAS centroid of a head mask's upper part (within ``depth`` of the vertex).

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean head mask.
    affine : numpy.ndarray
        Voxel-to-RAS affine.
    depth : float
        Thickness (mm) of the slab below the highest head voxel that is averaged.

    Returns
    -------
    numpy.ndarray
        ``(3,)`` RAS coordinates in mm.
    """
    xyz = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    return xyz[xyz[:, 2] > xyz[:, 2].max() - depth].mean(axis=0)


def _ras_to_lps(vec: np.ndarray) -> np.ndarray:
    return np.asarray(vec, dtype=float) * np.array([-1.0, -1.0, 1.0])


def rigid_head_alignment(head: ants.ANTsImage, out_prefix: str, seed: int = 0) -> str:
    """Rigidly align a (bias-corrected, ~2 mm) head image to the pseudo-head template.

    Parameters
    ----------
    head : ants.ANTsImage
        Full-head T1w image.
    out_prefix : str
        Prefix of ANTs output files (its folder should hold nothing else with it).
    seed : int
        Random seed of the metric sampling.

    Returns
    -------
    str
        Path of the ITK rigid transform (template -> head, ANTs "forward" convention).
    """
    pseudo = pseudo_head_template(2)
    fixed = to_ants(pseudo)
    tpl_head = ndimage.distance_transform_edt(
        get_template_mask(2).get_fdata() == 0, sampling=2.0) <= 12
    moving_affine = ants.to_nibabel_nifti(head).affine
    shift = upper_head_centroid(head_mask(head), moving_affine) - upper_head_centroid(
        tpl_head, pseudo.affine)
    init = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                      translation=list(_ras_to_lps(shift)))
    init_path = f"{out_prefix}init.mat"
    ants.write_transform(init, init_path)
    fixed_mask = to_ants(like((tpl_head | ndimage.binary_dilation(tpl_head, iterations=2))
                              .astype(np.float32), pseudo))
    reg = ants.registration(fixed, head, type_of_transform="Rigid", initial_transform=init_path,
                            mask=fixed_mask, outprefix=f"{out_prefix}rigid_", random_seed=seed)
    return reg["fwdtransforms"][0]


def initial_brain_mask(head: ants.ANTsImage, rigid_xfm: str) -> np.ndarray:
    """Return a first brain mask of a head image from rigidly carried priors and intensities.

    Parameters
    ----------
    head : ants.ANTsImage
        Bias-corrected full-head image (~2 mm).
    rigid_xfm : str
        Transform from :func:`rigid_head_alignment`.

    Returns
    -------
    numpy.ndarray
        Boolean brain mask on the grid of ``head``.
    """
    priors = []
    for label in ("CSF", "GM", "WM"):
        warped = ants.apply_transforms(head, to_ants(get_template_probseg(label, 2)), [rigid_xfm],
                                       whichtoinvert=[True])
        priors.append(ndimage.gaussian_filter(warped.numpy(), 2.0))
    priors = np.clip(np.stack(priors), 0, 1)
    brain_prior = np.clip(priors.sum(axis=0), 0, 1)
    region = ndimage.binary_dilation(brain_prior > 0.05, iterations=3) & head_mask(head)
    other = 1.0 - brain_prior
    post = classify_tissues(head.numpy(), np.concatenate([priors, other[None]]), region)
    tissue = (post[1] + post[2]) > 0.5
    opened = ndimage.binary_opening(tissue, iterations=3)
    labels, n = ndimage.label(opened)
    if n == 0:
        return ndimage.binary_dilation(brain_prior > 0.5, iterations=1)
    sizes = ndimage.sum(opened, labels, index=np.arange(1, n + 1))
    brain = labels == (1 + int(np.argmax(sizes)))
    brain = ndimage.binary_dilation(brain, iterations=3)
    return ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=2))


def refine_brain_mask(warped_mask: np.ndarray, posteriors: np.ndarray) -> np.ndarray:
    """Return the final brain mask: warped template mask trimmed by tissue posteriors.

    Parameters
    ----------
    warped_mask : numpy.ndarray
        Template tight brain mask probability carried into native space.
    posteriors : numpy.ndarray
        ``(K, ...)`` posteriors whose first three classes are CSF, GM, WM and whose
        optional fourth class is non-brain.

    Returns
    -------
    numpy.ndarray
        Boolean mask: the largest connected component of voxels with warped mask
        probability > 0.5 that are not more likely non-brain, holes filled.
    """
    brain = warped_mask > 0.5
    if posteriors.shape[0] > 3:
        brain &= posteriors[3] < 0.5
    labels, n = ndimage.label(brain)
    if n > 1:
        sizes = ndimage.sum(brain, labels, index=np.arange(1, n + 1))
        brain = labels == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(brain)

