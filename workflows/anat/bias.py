"""Intensity non-uniformity correction with N4 (Tustison et al., 2010) via antspyx.

The bias field is smooth, so it is estimated on a copy of the image resampled to
``work_resolution`` mm (inside a head mask) and then interpolated back onto the
native grid: this keeps N4 fast on sub-millimetre images.

The B-spline mesh starts at :data:`SPLINE_DISTANCE_MM` between knots and is refined at each
of the four fitting levels (200 mm, 4 x 50 iterations, tolerance 1e-7: the settings of
ANTs' ``antsBrainExtraction.sh`` / ``antsCorticalThickness.sh`` and sMRIPrep). antspyx's
default mesh (one element per axis, here refined three times) left a 20 % fall of the
white-matter intensity from the skull base to the vertex on a real 1 mm scan
(ds002748 sub-45: white-matter medians over 27 blocks varied by 5.8 %, 1.7 % with these
settings; the raw image 12.9 %).
"""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np

from brainscale.workflows.anat.images import like, resample_to_resolution, to_ants, to_nibabel

SPLINE_DISTANCE_MM = 200.0
"""Knot spacing (mm) of N4's B-spline field at the coarsest fitting level."""

N4_CONVERGENCE = {"iters": [50, 50, 50, 50], "tol": 1e-7}
"""Iterations per fitting level (each level halves the knot spacing) and tolerance."""


def correct_bias_field(
    img: nib.spatialimages.SpatialImage, work_resolution: float = 2.0, shrink_factor: int = 2
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Remove the intensity non-uniformity of a T1w image with N4.

    Parameters
    ----------
    img : nibabel image
        3D T1w image (non-negative intensities).
    work_resolution : float
        Voxel size (mm) of the copy on which the field is estimated.
    shrink_factor : int
        N4's own shrink factor on that copy.

    Returns
    -------
    corrected : nibabel.Nifti1Image
        ``img / bias`` on the native grid, float32.
    bias : nibabel.Nifti1Image
        The multiplicative bias field on the native grid.
    """
    native = to_ants(img)
    data = native.numpy()
    floor = float(np.percentile(data, 0.1))
    shifted = native - floor if floor < 0 else native
    low = resample_to_resolution(shifted, max(work_resolution, min(native.spacing)))
    head = ants.get_mask(low, low_thresh=None, cleanup=2)
    field_low = ants.n4_bias_field_correction(
        low,
        mask=head,
        shrink_factor=shrink_factor,
        convergence=N4_CONVERGENCE,
        spline_param=SPLINE_DISTANCE_MM,
        return_bias_field=True,
    )
    # interpolate the log field (smooth) back onto the native grid
    log_low = ants.from_numpy(np.log(np.maximum(field_low.numpy(), 1e-6)).astype(np.float32),
                              origin=low.origin, spacing=low.spacing, direction=low.direction)
    log_native = ants.resample_image_to_target(log_low, native, interp_type="linear")
    bias = np.exp(log_native.numpy()).astype(np.float32)
    corrected = np.asarray(shifted.numpy() / bias, dtype=np.float32)
    ref = to_nibabel(native)
    return like(corrected, ref), like(bias, ref)
