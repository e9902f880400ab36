"""Susceptibility distortion correction from reversed phase-encoding pairs.

A field inhomogeneity displaces signal along the phase-encoding (PE) axis by
``d(x) = field_hz(x) * total_readout_time`` voxels, in opposite directions for the two
PE polarities. With ``plus`` the image acquired along ``+PE`` and ``minus`` along
``-PE``, ``plus(x + d) = minus(x - d) = undistorted(x)``. We estimate ``d`` by a
symmetric, coarse-to-fine demons registration restricted to the PE axis (half of the
displacement applied to each image, as in TOPUP's and the symmetric-SyN "blip-up
blip-down" approaches), with a Gaussian-smoothed field, and unwarp with the Jacobian
intensity modulation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainscale.workflows.dwi.reference import mean_b0

PE_AXES = {"i": 0, "j": 1, "k": 2}


def parse_phase_encoding(direction: str) -> tuple[int, int]:
    """Split a BIDS ``PhaseEncodingDirection`` into an axis index and a sign.

    Parameters
    ----------
    direction : str
        ``i``, ``j``, ``k`` optionally followed by ``-``.

    Returns
    -------
    axis : int
        Voxel axis (0, 1, 2).
    sign : int
        +1 or -1.
    """
    if not direction or direction[0] not in PE_AXES or direction[1:] not in ("", "-"):
        raise ValueError(f"invalid PhaseEncodingDirection {direction!r}")
    return PE_AXES[direction[0]], -1 if direction.endswith("-") else 1


def _shift_along(image: np.ndarray, displacement: np.ndarray, axis: int) -> np.ndarray:
    """Sample ``image`` at ``x + displacement`` along one axis (linear, edge-clamped)."""
    coords = np.indices(image.shape, dtype=np.float32)
    coords[axis] += displacement
    return ndimage.map_coordinates(image, coords, order=1, mode="nearest")


def estimate_pe_displacement(
    plus: np.ndarray,
    minus: np.ndarray,
    pe_axis: int,
    *,
    scales: tuple[float, ...] = (3.0, 1.5, 0.5),
    iterations: int = 60,
    field_sigma: float = 2.0,
    max_step: float = 0.5,
) -> np.ndarray:
    """Estimate the PE-axis displacement between a blip-up / blip-down image pair.

    Parameters
    ----------
    plus, minus : ndarray, shape (x, y, z)
        b=0 images acquired with the positive and negative PE polarity, same grid.
    pe_axis : int
        Voxel axis of phase encoding.
    scales : tuple of float
        Gaussian smoothing (voxels) of the images at each coarse-to-fine level.
    iterations : int
        Demons iterations per level.
    field_sigma : float
        Gaussian regularisation of the displacement (voxels) after each update.
    max_step : float
        Largest update per iteration (voxels).

    Returns
    -------
    ndarray, shape (x, y, z)
        Displacement ``d`` in voxels along ``+PE`` such that ``plus(x + d) ~ minus(x - d)``.
    """
    plus = np.asarray(plus, dtype=np.float32)
    minus = np.asarray(minus, dtype=np.float32)
    scale = float(np.percentile(np.concatenate([plus.ravel(), minus.ravel()]), 99)) or 1.0
    plus, minus = plus / scale, minus / scale
    disp = np.zeros(plus.shape, dtype=np.float32)
    for sigma in scales:
        p_s = ndimage.gaussian_filter(plus, sigma) if sigma > 0 else plus
        m_s = ndimage.gaussian_filter(minus, sigma) if sigma > 0 else minus
        grad_p = np.gradient(p_s, axis=pe_axis)
        grad_m = np.gradient(m_s, axis=pe_axis)
        for _ in range(iterations):
            p_w = _shift_along(p_s, disp, pe_axis)
            m_w = _shift_along(m_s, -disp, pe_axis)
            force = _shift_along(grad_p, disp, pe_axis) + _shift_along(grad_m, -disp, pe_axis)
            residual = p_w - m_w
            update = -residual * force / (force**2 + residual**2 + 1e-6)
            disp += np.clip(update, -max_step, max_step)
            disp = ndimage.gaussian_filter(disp, field_sigma)
    return disp


def unwarp(
    image: np.ndarray,
    displacement: np.ndarray,
    pe_axis: int,
    pe_sign: int,
    *,
    jacobian: bool = True,
) -> np.ndarray:
    """Undo a PE-axis distortion of an image or series.

    Parameters
    ----------
    image : ndarray, shape (x, y, z) or (x, y, z, n)
        Distorted image(s) acquired with polarity ``pe_sign``.
    displacement : ndarray, shape (x, y, z)
        Displacement for the positive polarity, from :func:`estimate_pe_displacement`
        (scaled by the ratio of readout times when they differ).
    pe_axis : int
        Voxel axis of phase encoding.
    pe_sign : int
        +1 or -1.
    jacobian : bool
        Multiply by ``1 + d/dx(sign * d)`` to restore the intensity compressed or spread
        by the distortion.

    Returns
    -------
    ndarray
        Corrected image(s), float32.
    """
    signed = pe_sign * np.asarray(displacement, dtype=np.float32)
    jac = np.clip(1.0 + np.gradient(signed, axis=pe_axis), 0.0, None) if jacobian else 1.0
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return (_shift_along(image, signed, pe_axis) * jac).astype(np.float32)
    out = np.empty_like(image)
    for idx in range(image.shape[-1]):
        out[..., idx] = _shift_along(image[..., idx], signed, pe_axis) * jac
    return out


def displacement_to_fieldmap(displacement: np.ndarray, total_readout_time: float) -> np.ndarray:
    """Convert a PE displacement (voxels) to an off-resonance field in Hz.

    Parameters
    ----------
    displacement : ndarray
        Displacement of the positive polarity in voxels.
    total_readout_time : float
        BIDS ``TotalReadoutTime`` in seconds.

    Returns
    -------
    ndarray
        Field in Hz.
    """
    return np.asarray(displacement, dtype=np.float32) / float(total_readout_time)


def find_reversed_pair(metadata: Sequence[Mapping]) -> tuple[int, int, int] | None:
    """Find a (+PE, -PE) pair of series on one axis.

    Parameters
    ----------
    metadata : sequence of mapping
        BIDS sidecar of each series (``PhaseEncodingDirection``); a series without a
        valid direction takes no part.

    Returns
    -------
    tuple of int or None
        ``(plus, minus, axis)``: the indices of the first ``+PE`` series with a ``-PE``
        partner on the same axis, and that axis; ``None`` without such a pair.
    """
    parsed = []
    for meta in metadata:
        try:
            parsed.append(parse_phase_encoding(meta.get("PhaseEncodingDirection", "")))
        except ValueError:
            parsed.append(None)
    for i, pe_i in enumerate(parsed):
        for j, pe_j in enumerate(parsed):
            if pe_i and pe_j and pe_i[0] == pe_j[0] and pe_i[1] == 1 and pe_j[1] == -1:
                return i, j, pe_i[0]
    return None


def readout_scales(
    metadata: Sequence[Mapping], reference: int, pe_axis: int
) -> list[tuple[float, int] | None]:
    """Scale of the reference displacement and PE sign of every series on one axis.

    A displacement in voxels is the field times the total readout time, so a series
    read out twice as long as the reference is displaced twice as far.

    Parameters
    ----------
    metadata : sequence of mapping
        BIDS sidecar of each series (``PhaseEncodingDirection``, ``TotalReadoutTime``).
    reference : int
        Index of the series whose displacement was estimated (the ``+PE`` one).
    pe_axis : int
        Voxel axis of the estimated displacement.

    Returns
    -------
    list
        Per series, ``(scale, sign)`` or ``None`` for a series phase-encoded along another
        axis or without a valid direction (left uncorrected). ``scale`` is the ratio of
        readout times, 1 when either readout time is missing or zero.
    """
    readout = [float(m.get("TotalReadoutTime", 0.0) or 0.0) for m in metadata]
    ref_time = readout[reference] or 1.0
    scales: list[tuple[float, int] | None] = []
    for k, meta_k in enumerate(metadata):
        try:
            axis_k, sign_k = parse_phase_encoding(meta_k.get("PhaseEncodingDirection", ""))
        except ValueError:
            scales.append(None)
            continue
        if axis_k != pe_axis:
            scales.append(None)
            continue
        scale = (readout[k] / ref_time) if readout[k] and readout[reference] else 1.0
        scales.append((scale, sign_k))
    return scales


@dataclass
class CombinedSeries:
    """The distortion-corrected series of a session, concatenated."""

    data: np.ndarray
    """Series along the last axis, float32."""
    bvals: np.ndarray
    bvecs: np.ndarray
    fieldmap_hz: np.ndarray | None
    """Off-resonance field (Hz) when a reversed-PE pair was found, else ``None``."""
    meta: dict
    """What was done, for the sidecar."""


def correct_and_combine(
    series: Sequence[np.ndarray],
    bvals: Sequence[np.ndarray],
    bvecs: Sequence[np.ndarray],
    metadata: Sequence[Mapping],
    names: Sequence[str],
) -> CombinedSeries:
    """Unwarp the series of a session with their reversed-PE pair, then concatenate them.

    Parameters
    ----------
    series : sequence of ndarray, shape (x, y, z, n_k)
        The series (float32), on one grid.
    bvals, bvecs : sequence of ndarray
        Gradients of each series (``(n_k,)`` and ``(n_k, 3)``).
    metadata : sequence of mapping
        BIDS sidecar of each series.
    names : sequence of str
        File name of each series (recorded in the sidecar).

    Returns
    -------
    CombinedSeries
        Without a reversed-PE pair (:func:`find_reversed_pair`) the series are only
        concatenated. With one, the displacement is estimated from the pair's mean b=0
        images, every series on the pair's axis is unwarped with it (scaled by
        :func:`readout_scales`) and the field is returned in Hz.
    """
    arrays = list(series)
    pair = find_reversed_pair(metadata)
    field = None
    if pair is None:
        meta = {
            "SusceptibilityDistortionCorrection": "none: no reversed phase-encoding pair "
            "of DWI series (skipped)"
        }
    else:
        plus, minus, axis = pair
        b0_plus = mean_b0(arrays[plus], bvals[plus])
        b0_minus = mean_b0(arrays[minus], bvals[minus])
        disp = estimate_pe_displacement(b0_plus, b0_minus, axis)
        for k, scaled in enumerate(readout_scales(metadata, plus, axis)):
            if scaled is not None:
                scale, sign_k = scaled
                arrays[k] = unwarp(arrays[k], disp * scale, axis, sign_k)
        ref_time = float(metadata[plus].get("TotalReadoutTime", 0.0) or 0.0) or 1.0
        field = displacement_to_fieldmap(disp, ref_time)
        meta = {
            "SusceptibilityDistortionCorrection": (
                "reversed phase-encoding pair: symmetric 1D demons registration of the mean "
                "b=0 images along the phase-encoding axis, Jacobian-modulated unwarping"
            ),
            "PhaseEncodingPair": [names[plus], names[minus]],
            "MaxDisplacementVoxels": float(np.abs(disp).max()),
        }
    return CombinedSeries(
        data=np.concatenate(arrays, axis=-1),
        bvals=np.concatenate(list(bvals)),
        bvecs=np.concatenate(list(bvecs)),
        fieldmap_hz=field,
        meta=meta,
    )
