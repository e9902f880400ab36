"""Susceptibility distortion correction from a GRE phase-difference field map.

The phase difference is rescaled to radians, unwrapped (scikit-image), converted to a
field map in Hz, ``(phi2 - phi1) / (2 pi (TE2 - TE1))``, and demeaned within the brain.
On the BOLD reference grid it becomes a voxel-shift map ``vsm = field * TotalReadoutTime``
(in voxels, signed by ``PhaseEncodingDirection``): the signal of an undistorted voxel ``x``
is found at ``x + vsm(x)`` along the phase-encoding axis, the convention of FSL FUGUE
and SDCFlows. The shift is one more link of the one-shot resampling chain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.restoration import unwrap_phase

from brainscale.errors import InputDataError

_AXES = {"i": 0, "j": 1, "k": 2}


def phase_to_radians(phase: np.ndarray) -> np.ndarray:
    """Rescale a phase image to radians in [-pi, pi) (scanner units such as +-4096 too)."""
    phase = np.asarray(phase, dtype=np.float64)
    low, high = phase.min(), phase.max()
    if high - low <= 2 * np.pi + 1e-3:
        return phase
    return (phase - low) / (high - low) * 2 * np.pi - np.pi


def phasediff_to_fieldmap(
    phasediff: np.ndarray, echo_time1: float, echo_time2: float, mask: np.ndarray
) -> np.ndarray:
    """Convert a phase-difference image into a field map in Hz.

    Parameters
    ----------
    phasediff : numpy.ndarray of shape (X, Y, Z)
        Phase difference (radians or scanner units).
    echo_time1, echo_time2 : float
        Echo times (s) of the two phase images.
    mask : numpy.ndarray of shape (X, Y, Z), bool
        Brain mask where the phase is reliable.

    Returns
    -------
    numpy.ndarray of shape (X, Y, Z)
        Field (Hz), demeaned (median) within the mask, smoothly extended outside it.

    Raises
    ------
    brainscale.errors.InputDataError
        When the echo times are not increasing.
    """
    delta_te = float(echo_time2) - float(echo_time1)
    if not delta_te > 0:
        raise InputDataError(f"EchoTime2 ({echo_time2}) must exceed EchoTime1 ({echo_time1})")
    mask = np.asarray(mask, bool)
    wrapped = np.ma.masked_array(phase_to_radians(phasediff), mask=~mask)
    unwrapped = np.asarray(unwrap_phase(wrapped).filled(0.0))
    field = unwrapped / (2 * np.pi * delta_te)
    field = np.where(mask, field - np.median(field[mask]), 0.0)
    return extend_outside_mask(field, mask)


def extend_outside_mask(values: np.ndarray, mask: np.ndarray, sigma: float = 2.0):
    """Fill voxels outside a mask with a normalized Gaussian average of the inside values."""
    weights = ndimage.gaussian_filter(mask.astype(float), sigma)
    smooth = ndimage.gaussian_filter(np.where(mask, values, 0.0), sigma)
    filled = np.divide(smooth, weights, out=np.zeros_like(smooth), where=weights > 1e-3)
    return np.where(mask, values, filled)


def pe_axis_and_sign(pe_direction: str) -> tuple[int, float]:
    """Return the voxel axis and sign of a BIDS ``PhaseEncodingDirection`` (``j-`` -> (1, -1))."""
    axis = _AXES.get(str(pe_direction).rstrip("-"))
    if axis is None:
        raise InputDataError(f"PhaseEncodingDirection {pe_direction!r} is not i, j or k (+/-)")
    return axis, -1.0 if str(pe_direction).endswith("-") else 1.0


def voxel_shift_map(field_hz: np.ndarray, total_readout_time: float, pe_direction: str):
    """Return the signed voxel-shift map (voxels along the phase-encoding axis) and the axis."""
    axis, sign = pe_axis_and_sign(pe_direction)
    return np.asarray(field_hz, dtype=np.float64) * float(total_readout_time) * sign, axis


def distort_points(points: np.ndarray, affine: np.ndarray, vsm: np.ndarray, axis: int):
    """Move undistorted world points (3, N) to where an EPI with this shift map shows them."""
    vox = np.linalg.inv(affine) @ np.vstack([points, np.ones(points.shape[1])])
    vox[axis] += ndimage.map_coordinates(vsm, vox[:3], order=1, mode="nearest")
    return (affine @ vox)[:3]


def total_readout_time(metadata: dict) -> float | None:
    """Return ``TotalReadoutTime`` (s) or derive it from ``EffectiveEchoSpacing``; else None."""
    if metadata.get("TotalReadoutTime"):
        return float(metadata["TotalReadoutTime"])
    spacing, matrix = metadata.get("EffectiveEchoSpacing"), metadata.get("ReconMatrixPE")
    if spacing and matrix:
        return float(spacing) * (int(matrix) - 1)
    return None
