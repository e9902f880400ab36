"""Native-space tissue segmentation: template priors warped to the T1w, EM, brain mask refinement.

This step stands above :mod:`workflows.anat.segmentation` (the mixture model), brain
extraction and normalization, which it combines.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale.resources import get_template_probseg
from workflows.anat.brain_extraction import refine_brain_mask, template_brain_mask
from workflows.anat.normalization import apply_displacement
from workflows.anat.segmentation import (
    TISSUE_MIXTURES,
    TISSUES,
    bright_non_brain,
    classify_tissues,
)


def segment_with_template_priors(
    t1w: nib.spatialimages.SpatialImage, inverse_xfm: str, n_iter: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a bias-corrected T1w with template priors carried into its space.

    Parameters
    ----------
    t1w : nibabel image
        Bias-corrected T1w (native grid).
    inverse_xfm : str
        Template -> T1w displacement field.
    n_iter : int
        EM iterations.

    Returns
    -------
    posteriors : numpy.ndarray
        ``(3, ...)`` CSF, GM, WM probabilities, 0 outside the brain.
    mask : numpy.ndarray
        Boolean brain mask (see :func:`workflows.anat.brain_extraction.refine_brain_mask`).
    """
    res = 1 if min(t1w.header.get_zooms()[:3]) < 1.5 else 2
    warped_mask = apply_displacement(template_brain_mask(res), t1w, inverse_xfm).get_fdata(
        dtype=np.float32)
    region = ndimage.binary_dilation(warped_mask > 0.05, iterations=2)
    priors = np.stack([
        apply_displacement(get_template_probseg(label, res), t1w, inverse_xfm).get_fdata(
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
