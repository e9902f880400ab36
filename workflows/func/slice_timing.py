"""Slice-timing correction from the BIDS ``SliceTiming`` field (multiband aware)."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

from brainscale.errors import InputDataError

_AXES = {"i": 0, "j": 1, "k": 2}


def slice_timing_plan(
    metadata: dict, shape: tuple[int, ...], tr: float, filename: str = ""
) -> tuple[np.ndarray, int, float] | None:
    """Validate ``SliceTiming`` and return per-slice times along the slice axis.

    Parameters
    ----------
    metadata : dict
        BIDS sidecar of the BOLD run (``SliceTiming``, ``SliceEncodingDirection``).
    shape : tuple of int
        Shape of the 4D image.
    tr : float
        Repetition time (s).
    filename : str
        Name used in messages.

    Returns
    -------
    tuple or None
        ``(times, axis, reference_time)`` with ``times[s]`` the acquisition time of
        voxel-slice ``s`` along ``axis``, and the reference time (middle of the slice
        acquisition window) the series is shifted to; ``None`` when ``SliceTiming`` is
        absent or all slices were acquired at the same time (nothing to correct).

    Raises
    ------
    brainscale.errors.InputDataError
        When the number of times differs from the number of slices or a time falls
        outside ``[0, RepetitionTime)``.
    """
    times = metadata.get("SliceTiming")
    if times is None:
        return None
    name = filename or "BOLD image"
    times = np.asarray(times, dtype=float).ravel()
    direction = str(metadata.get("SliceEncodingDirection", "k"))
    if direction.rstrip("-") not in _AXES:
        raise InputDataError(f"{name}: SliceEncodingDirection {direction!r} is not i, j or k")
    axis = _AXES[direction.rstrip("-")]
    if times.size != shape[axis]:
        raise InputDataError(
            f"{name}: SliceTiming has {times.size} entries but the image has {shape[axis]} "
            f"slices along axis {direction}"
        )
    if np.any(~np.isfinite(times)) or times.min() < 0 or times.max() >= tr + 1e-6:
        raise InputDataError(
            f"{name}: SliceTiming values must lie in [0, RepetitionTime={tr}) s, "
            f"got [{times.min()}, {times.max()}]"
        )
    if np.ptp(times) == 0:
        return None
    if direction.endswith("-"):
        times = times[::-1]
    return times, axis, float((times.min() + times.max()) / 2.0)


def correct_slice_timing(
    bold: np.ndarray, times: np.ndarray, axis: int, tr: float, reference_time: float
) -> np.ndarray:
    """Shift every slice's time series to a common reference time (cubic spline).

    Slices with equal acquisition times (multiband groups) are interpolated together.

    Parameters
    ----------
    bold : numpy.ndarray of shape (X, Y, Z, T)
        BOLD series.
    times : numpy.ndarray
        Acquisition time (s, within the TR) of each slice along ``axis``.
    axis : int
        Slice axis (0, 1 or 2).
    tr : float
        Repetition time (s).
    reference_time : float
        Time within the TR all slices are interpolated to.

    Returns
    -------
    numpy.ndarray of shape (X, Y, Z, T), float32
    """
    data = np.moveaxis(np.asarray(bold, dtype=np.float32), axis, 0)
    out = np.empty_like(data)
    n_vols = data.shape[-1]
    frames = np.arange(n_vols) * tr
    for slice_time in np.unique(times):
        group = np.flatnonzero(times == slice_time)
        if slice_time == reference_time:
            out[group] = data[group]
            continue
        spline = CubicSpline(frames + slice_time, data[group], axis=-1, bc_type="not-a-knot")
        target = np.clip(frames + reference_time, frames[0] + slice_time, frames[-1] + slice_time)
        out[group] = spline(target).astype(np.float32)
    return np.moveaxis(out, 0, axis)
