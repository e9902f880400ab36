"""Voxel-based morphometry input: GM probability in template space, modulated by the Jacobian.

The GM partial-volume map of the T1w is resampled onto the template grid through the
forward displacement field (T1w -> MNI, :mod:`brainscale.workflows.anat.normalization`) and
multiplied by the determinant of that field's Jacobian (Ashburner & Friston, 2000,
NeuroImage 11:805-821; Good et al., 2001, NeuroImage 14:21-36). The field maps each
template point to a T1w point, so the determinant is the T1w volume a template voxel
stands for, and the modulated map integrates to the participant's GM volume: a value
is mm^3 of GM per mm^3 of template.
"""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np

from brainscale.workflows.anat.images import like, to_ants, to_nibabel
from brainscale.workflows.anat.normalization import apply_displacement


def jacobian_determinant(forward_xfm: str, reference: nib.spatialimages.SpatialImage):
    """Return the Jacobian determinant of a displacement field on the grid of ``reference``.

    ANTs computes the determinant on the field's own grid (the template at the finest SyN
    resolution, 1 mm for images finer than 1.5 mm); on another grid it is resampled
    linearly onto ``reference``.
    """
    jacobian = ants.create_jacobian_determinant_image(to_ants(reference), forward_xfm,
                                                      do_log=False)
    target = to_ants(reference)
    if jacobian.shape != target.shape or not (
            np.allclose(jacobian.spacing, target.spacing)
            and np.allclose(jacobian.origin, target.origin)
            and np.allclose(jacobian.direction, target.direction)):
        jacobian = ants.resample_image_to_target(jacobian, target, interp_type="linear")
    return np.asarray(to_nibabel(jacobian).dataobj, dtype=np.float32)


def modulated_gm(gm: nib.spatialimages.SpatialImage, forward_xfm: str,
                 template: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """Warp a native GM probability map to the template and modulate it by the Jacobian.

    Parameters
    ----------
    gm : nibabel image
        GM partial-volume fraction on the T1w grid.
    forward_xfm : str
        T1w -> template displacement field (maps template points to T1w points).
    template : nibabel image
        Grid of the output (the embedded template at 2 mm).

    Returns
    -------
    nibabel.Nifti1Image
        Float32 modulated GM on the template grid (negative determinants, folds of a
        bad registration, are set to 0).
    """
    warped = np.asarray(apply_displacement(gm, template, forward_xfm).dataobj, dtype=np.float32)
    determinant = np.clip(jacobian_determinant(forward_xfm, template), 0.0, None)
    return like(np.clip(warped, 0.0, 1.0) * determinant, template)


__all__ = ["jacobian_determinant", "modulated_gm"]
