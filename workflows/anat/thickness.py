"""Cortical thickness of the cerebral cortex: method choice and DiReCT.

The default method, ``surface``, is FreeSurfer's closest-point distance between the
white and pial meshes of each hemisphere
(:func:`brainscale.workflows.anat.surface_thickness.reconstruct_cortex`); the workflow runs it in
the surfaces node, which also writes the meshes. On skull-stripped adult scans it gives
2.3-2.5 mm where the Laplace streamlines gave 4.2 mm with a fifth of the cortex at the
cap (see the note of issue 12). :func:`cortical_thickness` computes the two volumetric
alternatives: the Laplace/Eulerian streamline thickness of
:mod:`brainscale.workflows.anat.laplace_thickness` and DiReCT (Das et al., 2009;
``antspyx.kelly_kapowski``, tens of CPU-minutes at 1 mm), kept for comparison with
volumetric pipelines.

DiReCT runs on the segmentation cropped to the brain and resampled to
``resolution`` mm (by default the native voxel size, but never finer than 1 mm):
sub-millimetre grids multiply the cost without changing a thickness of 2-4 mm much, and
upsampling coarse images (e.g. 2 mm) to 1 mm multiplies the cost by 8 without adding
information. The map is then resampled back onto the
native grid (linear) and kept inside the grey matter.
"""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np

from brainscale.workflows.anat.images import bounding_box, like, to_ants

COARSE_VOXEL_MM = 1.2
"""Above this voxel size the thickness sidecar carries a warning."""

THICKNESS_METHODS = {
    "surface": "FreeSurfer's closest-point distance between white and pial meshes "
               "(Fischl & Dale 2000), surfaces at local partial-volume boundaries",
    "laplace": "Laplace streamlines with Eulerian path-length PDEs (Jones et al. 2000; "
               "Yezzi & Prince 2003), partial-volume weighted, buried sulci rebuilt from "
               "the WM-distance ridge",
    "direct": "DiReCT (Das et al. 2009), antspyx kelly_kapowski",
}
VOLUMETRIC_METHODS = ("laplace", "direct")


def cortical_thickness(dseg: nib.spatialimages.SpatialImage,
                       tpms: list[nib.spatialimages.SpatialImage], method: str = "laplace",
                       inverse_xfm: str | None = None) -> tuple[nib.Nifti1Image, dict]:
    """Compute the cortical thickness map with the chosen method.

    Parameters
    ----------
    dseg : nibabel image
        Labels 0 background, 1 CSF, 2 GM, 3 WM.
    tpms : list of nibabel images
        GM, WM (and CSF) probabilities on the same grid.
    method : {"laplace", "direct"}
        Volumetric thickness method (see :data:`THICKNESS_METHODS`).
    inverse_xfm : str, optional
        Template -> T1w displacement field; when given, the template's non-cortical grey
        matter (:func:`brainscale.resources.get_non_cortical_mask`) gets no thickness.

    Returns
    -------
    thickness : nibabel.Nifti1Image
        Float32 thickness (mm), 0 outside the cortex.
    meta : dict
        Sidecar fields: units, method, what was excluded.
    """
    from brainscale.workflows.anat.laplace_thickness import MAX_THICKNESS_MM, laplace_thickness

    if method not in VOLUMETRIC_METHODS:
        raise ValueError(f"{method!r} is not a volumetric thickness method; use one of "
                         f"{', '.join(VOLUMETRIC_METHODS)} (surface thickness comes from "
                         "brainscale.workflows.anat.surface_thickness.reconstruct_cortex)")
    non_cortical = native_non_cortical(dseg, inverse_xfm) if inverse_xfm else None
    meta = {"Units": "mm", "Method": THICKNESS_METHODS[method],
            "NonCorticalExcluded": non_cortical is not None}
    voxel = float(max(dseg.header.get_zooms()[:3]))
    if voxel > COARSE_VOXEL_MM:
        meta["Warning"] = (
            f"{voxel:.1f} mm voxels: sulci narrower than a voxel are not resolved, so "
            "thickness is overestimated; use images of about 1 mm or finer for thickness")
    if method == "laplace":
        thick = laplace_thickness(dseg, tpms[0], non_cortical=non_cortical)
        meta["MaximumThickness"] = MAX_THICKNESS_MM
        return thick, meta
    thick = direct_thickness(dseg, tpms[0], tpms[1])
    if non_cortical is not None:
        data = np.asarray(thick.dataobj).copy()
        data[non_cortical] = 0
        thick = like(data, dseg)
    return thick, meta


def native_non_cortical(dseg: nib.spatialimages.SpatialImage,
                        inverse_xfm: str) -> np.ndarray | None:
    """Carry the template's non-cortical grey matter into the T1w (nearest neighbour).

    Returns ``None`` when no atlas provides the mask.
    """
    from brainscale.resources import get_non_cortical_mask
    from brainscale.workflows.anat.normalization import apply_displacement

    template_mask = get_non_cortical_mask()
    if template_mask is None:
        return None
    warped = apply_displacement(template_mask, dseg, inverse_xfm,
                                interpolation="nearestNeighbor")
    return np.asarray(warped.dataobj) > 0.5



def direct_thickness(
    dseg: nib.spatialimages.SpatialImage,
    gm_prob: nib.spatialimages.SpatialImage,
    wm_prob: nib.spatialimages.SpatialImage,
    resolution: float | None = None,
    iterations: int = 45,
    smoothing: float = 0.5,
) -> nib.Nifti1Image:
    """Compute a cortical thickness map (mm) from a CSF/GM/WM segmentation.

    Parameters
    ----------
    dseg : nibabel image
        Labels 0 background, 1 CSF, 2 GM, 3 WM.
    gm_prob, wm_prob : nibabel images
        GM and WM probabilities on the same grid.
    resolution : float, optional
        Working voxel size in mm (default: the finest native voxel size, at least 1 mm).
    iterations : int
        DiReCT iterations.
    smoothing : float
        DiReCT smoothing variance (``m``); 0.5 recovers a 3 mm synthetic shell within
        0.1 mm at 1 mm voxels, antspyx's default 1.5 gives 2.4 mm.

    Returns
    -------
    nibabel.Nifti1Image
        Float32 thickness (mm) on the grid of ``dseg``, 0 outside GM.
    """
    if resolution is None:
        resolution = max(1.0, float(min(dseg.header.get_zooms()[:3])))
    labels = np.asarray(dseg.dataobj).astype(np.uint8)
    crop = bounding_box(labels > 0, margin=3)
    lo = np.array([s.start for s in crop])
    affine = dseg.affine.copy()
    affine[:3, 3] = dseg.affine[:3, :3] @ lo + dseg.affine[:3, 3]

    def _crop(img, data=None):
        arr = np.asarray(img.dataobj, dtype=np.float32) if data is None else data
        return to_ants(nib.Nifti1Image(arr[crop].astype(np.float32), affine))

    seg_c = _crop(dseg, labels.astype(np.float32))
    gm_c, wm_c = _crop(gm_prob), _crop(wm_prob)
    if any(abs(s - resolution) > 1e-3 for s in seg_c.spacing):
        seg_w = ants.resample_image(seg_c, (resolution,) * 3, False, 1)
        gm_w = ants.resample_image(gm_c, (resolution,) * 3, False, 0)
        wm_w = ants.resample_image(wm_c, (resolution,) * 3, False, 0)
    else:
        seg_w, gm_w, wm_w = seg_c, gm_c, wm_c
    thick = ants.kelly_kapowski(s=seg_w, g=gm_w, w=wm_w, its=iterations, r=0.025, m=smoothing,
                                gm_label=2, wm_label=3)
    back = ants.resample_image_to_target(thick, seg_c, interp_type="linear")
    out = np.zeros(labels.shape, dtype=np.float32)
    out[crop] = back.numpy()
    out[labels != 2] = 0
    return like(out, dseg)
