"""BOLD validation, non-steady-state detection, reference image and brain mask."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nilearn.masking import compute_epi_mask
from scipy import ndimage

from brainscale.errors import InputDataError

MAX_NONSTEADY = 50
"""Largest number of initial volumes that can be flagged as non-steady-state."""


def validate_bold(img: nib.spatialimages.SpatialImage, metadata: dict, filename: str = "") -> float:
    """Check that an image is a usable BOLD series and return its repetition time.

    Parameters
    ----------
    img : nibabel image
        The BOLD run.
    metadata : dict
        Its BIDS sidecar content.
    filename : str
        Name used in error messages.

    Returns
    -------
    float
        ``RepetitionTime`` in seconds.

    Raises
    ------
    brainscale.errors.InputDataError
        When the image is not 4D, has fewer than 3 volumes, or ``RepetitionTime`` is
        missing or not positive.
    """
    name = filename or "BOLD image"
    if img.ndim != 4:
        raise InputDataError(f"{name}: a BOLD run must be 4D, got shape {img.shape}")
    if img.shape[3] < 3:
        raise InputDataError(f"{name}: only {img.shape[3]} volume(s); a BOLD run needs >= 3")
    tr = metadata.get("RepetitionTime")
    if tr is None:
        raise InputDataError(f"{name}: RepetitionTime is missing from the JSON sidecar")
    try:
        tr = float(tr)
    except (TypeError, ValueError) as err:
        raise InputDataError(f"{name}: RepetitionTime {tr!r} is not a number") from err
    if not np.isfinite(tr) or tr <= 0:
        raise InputDataError(f"{name}: RepetitionTime must be positive, got {tr}")
    return tr


def detect_nonsteady_states(bold: np.ndarray, z_threshold: float = 3.5) -> int:
    """Count the initial volumes whose global signal is an outlier (T1 saturation).

    Parameters
    ----------
    bold : numpy.ndarray of shape (X, Y, Z, T)
        The BOLD series.
    z_threshold : float
        Robust z-score (median/MAD of the global signal) above which a leading volume is
        non-steady-state.

    Returns
    -------
    int
        Number of leading non-steady-state volumes (at most :data:`MAX_NONSTEADY`).
    """
    flat = bold.reshape(-1, bold.shape[-1])
    voxel_mean = flat.mean(axis=1)
    inside = voxel_mean > np.percentile(voxel_mean, 75) * 0.5
    glob = flat[inside].mean(axis=0)
    median = np.median(glob)
    mad = 1.4826 * np.median(np.abs(glob - median)) or 1e-6 * abs(median) or 1e-12
    robust_z = (glob - median) / mad
    count = 0
    for value in robust_z[: min(MAX_NONSTEADY, len(glob) - 1)]:
        if value <= z_threshold:
            break
        count += 1
    return count


def compute_boldref(bold: np.ndarray, n_nonsteady: int, n_average: int = 10) -> np.ndarray:
    """Compute the BOLD reference: the median of the first steady-state volumes.

    Parameters
    ----------
    bold : numpy.ndarray of shape (X, Y, Z, T)
        BOLD series.
    n_nonsteady : int
        Leading volumes to skip.
    n_average : int
        Number of steady-state volumes whose voxel-wise median is taken.

    Returns
    -------
    numpy.ndarray of shape (X, Y, Z), float32
    """
    start = min(n_nonsteady, bold.shape[3] - 1)
    stop = min(start + n_average, bold.shape[3])
    return np.median(np.asarray(bold[..., start:stop], dtype=np.float32), axis=3)


def compute_bold_mask(boldref: nib.Nifti1Image) -> nib.Nifti1Image:
    """Compute a brain mask of the BOLD reference (nilearn's EPI mask, holes filled).

    Parameters
    ----------
    boldref : nibabel.Nifti1Image
        The 3D BOLD reference.

    Returns
    -------
    nibabel.Nifti1Image
        ``uint8`` mask on the reference grid.
    """
    mask = np.asarray(compute_epi_mask(boldref, opening=2).dataobj, dtype=bool)
    mask = ndimage.binary_fill_holes(mask)
    out = nib.Nifti1Image(mask.astype(np.uint8), boldref.affine)
    out.header.set_xyzt_units("mm")
    return out
