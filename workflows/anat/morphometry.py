"""Global and regional morphometry from tissue probabilities, thickness and an atlas.

* Volumes are sums of tissue probabilities times the voxel volume (partial volumes
  count fractionally); ``brain_mask_volume_mm3`` is the volume of the brain mask (CSF +
  GM + WM inside it). It is not an intracranial volume when the input was stripped by
  its providers (outer CSF removed): the head-size covariate is ``etiv_mm3``, the
  estimated total intracranial volume from the affine registration to the template
  (Buckner et al. 2004;
  :func:`brainscale.workflows.anat.normalization.estimated_intracranial_volume`).
  ``tiv_mm3`` is a deprecated alias of ``brain_mask_volume_mm3``.
* Regional mean thickness averages the thickness map over the region's GM voxels with a
  non-zero thickness.
* Surface area is measured on the white-surface meshes, not here
  (:func:`brainscale.workflows.anat.surface_thickness.regional_surface_measures`; columns
  :data:`SURFACE_UNITS`): the former estimate ``GM volume / mean thickness`` inherited
  every thickness error and summed to half a real cortex.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainscale.errors import InputDataError

GLOBAL_UNITS = {
    "etiv_mm3": "mm^3",
    "brain_mask_volume_mm3": "mm^3",
    "tiv_mm3": "mm^3",
    "gm_volume_mm3": "mm^3",
    "wm_volume_mm3": "mm^3",
    "csf_volume_mm3": "mm^3",
    "thickness_mean_mm": "mm",
}
GLOBAL_DESCRIPTIONS = {
    "etiv_mm3": "Estimated total intracranial volume: |det| of the affine T1w -> "
                "MNI152NLin2009aSym registration times the template's intracranial volume "
                "(Buckner et al. 2004); use as the head-size covariate",
    "brain_mask_volume_mm3": "Volume of the brain mask (desc-brain_mask)",
    "tiv_mm3": "Deprecated alias of brain_mask_volume_mm3 (not an intracranial volume "
               "when the input was skull-stripped by its providers); use etiv_mm3",
}
REGIONAL_UNITS = {
    "gm_volume_mm3": "mm^3",
    "thickness_mean_mm": "mm",
}
SURFACE_UNITS = {
    "surface_area_mm2": "mm^2",
    "surface_thickness_mean_mm": "mm",
    "white_surface_area_mm2": "mm^2",
    "pial_surface_area_mm2": "mm^2",
}
"""Columns added from the meshes (regional: the first two; global: the last two and the
mean thickness)."""


def global_measures(tpms: np.ndarray, mask: np.ndarray, thickness: np.ndarray,
                    voxel_mm3: float, etiv_mm3: float = float("nan")) -> dict[str, float]:
    """Return eTIV, the brain mask volume, tissue volumes and mean cortical thickness.

    Parameters
    ----------
    tpms : numpy.ndarray
        ``(3, ...)`` CSF, GM, WM probabilities.
    mask : numpy.ndarray
        Boolean brain mask.
    thickness : numpy.ndarray
        Thickness map (mm), 0 outside GM.
    voxel_mm3 : float
        Voxel volume.
    etiv_mm3 : float
        Estimated total intracranial volume (from the registration), reported as is.

    Returns
    -------
    dict
        Keys of :data:`GLOBAL_UNITS`.
    """
    csf, gm, wm = (float(np.sum(p[mask], dtype=np.float64)) * voxel_mm3 for p in tpms)
    mask_volume = float(np.count_nonzero(mask)) * voxel_mm3
    cortex = thickness > 0
    return {
        "etiv_mm3": float(etiv_mm3),
        "brain_mask_volume_mm3": mask_volume,
        "tiv_mm3": mask_volume,
        "gm_volume_mm3": gm,
        "wm_volume_mm3": wm,
        "csf_volume_mm3": csf,
        "thickness_mean_mm": float(thickness[cortex].mean()) if cortex.any() else float("nan"),
    }


def regional_measures(atlas: np.ndarray, labels: pd.DataFrame, gm_prob: np.ndarray,
                      thickness: np.ndarray, voxel_mm3: float) -> pd.DataFrame:
    """Return one row per atlas region with GM volume and mean thickness.

    Parameters
    ----------
    atlas : numpy.ndarray
        Integer labels on the same grid as ``gm_prob``.
    labels : pandas.DataFrame
        Columns ``index`` and ``name``.
    gm_prob : numpy.ndarray
        GM probability.
    thickness : numpy.ndarray
        Thickness map (mm), 0 outside GM.
    voxel_mm3 : float
        Voxel volume.

    Returns
    -------
    pandas.DataFrame
        Columns ``index``, ``name`` and the keys of :data:`REGIONAL_UNITS`; regions absent
        from the image get 0 volume and NaN thickness.
    """
    if atlas.shape != gm_prob.shape or thickness.shape != gm_prob.shape:
        raise InputDataError(f"atlas {atlas.shape}, GM {gm_prob.shape} and thickness "
                             f"{thickness.shape} grids differ")
    index = labels["index"].to_numpy(dtype=np.int64)
    n = int(max(atlas.max(), index.max())) + 1
    flat = atlas.ravel().astype(np.int64)
    flat = np.where(flat >= 0, flat, 0)
    gm_vol = np.bincount(flat, weights=gm_prob.ravel(), minlength=n) * voxel_mm3
    cortex = (thickness > 0).ravel()
    t_sum = np.bincount(flat[cortex], weights=thickness.ravel()[cortex], minlength=n)
    t_cnt = np.bincount(flat[cortex], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.where(t_cnt > 0, t_sum / np.maximum(t_cnt, 1), np.nan)
    return pd.DataFrame({
        "index": index,
        "name": labels["name"].to_numpy(),
        "gm_volume_mm3": gm_vol[index],
        "thickness_mean_mm": t_mean[index],
    })
