"""Native-space tissue segmentation: template priors warped to the T1w, EM, brain mask refinement.

This step stands above :mod:`brainscale.workflows.anat.segmentation` (the mixture model), brain
extraction and normalization, which it combines. Templates are arguments.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale.workflows.anat.brain_extraction import refine_brain_mask, stripped_brain_mask
from brainscale.workflows.anat.images import TemplateImages
from brainscale.workflows.anat.normalization import apply_displacement
from brainscale.workflows.anat.segmentation import (
    TISSUE_MIXTURES,
    TISSUES,
    bright_non_brain,
    classify_tissues,
)

PRIOR_REGION_MARGIN_MM = 4.0
"""Margin (mm) around the warped template brain in which voxels are classified."""


def segment_with_template_priors(
    t1w: nib.spatialimages.SpatialImage, inverse_xfm: str, template: TemplateImages,
    n_iter: int = 15, skull_stripped: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a bias-corrected T1w with template priors carried into its space.

    Parameters
    ----------
    t1w : nibabel image
        Bias-corrected T1w (native grid).
    inverse_xfm : str
        Template -> T1w displacement field.
    template : TemplateImages
        Template whose priors are carried (1 mm for images finer than 1.5 mm).
    n_iter : int
        EM iterations.
    skull_stripped : bool
        Whether the input was skull-stripped: the brain mask then stays inside the
        non-background region the providers left.

    Returns
    -------
    posteriors : numpy.ndarray
        ``(3, ...)`` CSF, GM, WM probabilities, 0 outside the brain.
    mask : numpy.ndarray
        Boolean brain mask (see
        :func:`brainscale.workflows.anat.brain_extraction.refine_brain_mask`).
    """
    warped_mask = apply_displacement(template.brain_mask, t1w, inverse_xfm).get_fdata(
        dtype=np.float32)
    zooms = np.linalg.norm(t1w.affine[:3, :3], axis=0)
    radius = np.maximum(np.round(PRIOR_REGION_MARGIN_MM / zooms), 1).astype(int)
    region = ndimage.maximum_filter(warped_mask > 0.05, size=tuple(2 * radius + 1))
    if skull_stripped:
        provided = stripped_brain_mask(t1w)
        region &= provided
        warped_mask = warped_mask * provided
    priors = np.stack([
        apply_displacement(template.probseg(label), t1w, inverse_xfm).get_fdata(
            dtype=np.float32) for label in TISSUES])
    brain_prior = np.clip(warped_mask, 0, 1)
    # sulcal and ventricular CSF: the template's CSF map, at least the mask's non-GM/WM part
    priors[0] = np.maximum(priors[0], brain_prior - priors[1] - priors[2])
    other = 1.0 - brain_prior
    intensity = np.asarray(t1w.dataobj, dtype=np.float32)
    post = classify_tissues(intensity, np.concatenate([priors, other[None]]), region, n_iter,
                            mixtures=TISSUE_MIXTURES)
    mask = refine_brain_mask(warped_mask, post)
    mask &= ~bright_non_brain(intensity, post[2], mask)
    mask = refine_brain_mask(mask.astype(np.float32), post[:3])
    tissue = post[:3] * mask
    tissue /= np.maximum(tissue.sum(axis=0, keepdims=True), 1e-6)
    tissue *= mask
    return tissue.astype(np.float32), mask
