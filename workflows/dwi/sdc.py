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

import numpy as np
from scipy import ndimage

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
