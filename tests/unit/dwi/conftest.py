"""Diffusion phantoms with known tensors, built with dipy's multi_tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.sims.voxel import multi_tensor
from scipy import ndimage

from brainscale.workflows import rigid_motion

ZOOM = 2.0
FIBRE_EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])
AXES = {"x": (90.0, 0.0), "y": (90.0, 90.0), "z": (0.0, 0.0)}  # (theta, phi) in degrees


def hemisphere_directions(n: int, seed: int = 0) -> np.ndarray:
    """Evenly spread unit vectors on a hemisphere (Fibonacci spiral)."""
    k = np.arange(n) + 0.5
    z = 1.0 - k / n
    phi = np.pi * (1 + 5**0.5) * k + seed
    r = np.sqrt(1 - z**2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def gradient_scheme(n_dirs: int, bval: float, n_b0: int = 2):
    """b-values and voxel-frame b-vectors with ``n_b0`` leading b=0 volumes."""
    bvals = np.r_[np.zeros(n_b0), np.full(n_dirs, bval)]
    bvecs = np.r_[np.zeros((n_b0, 3)), hemisphere_directions(n_dirs)]
    return bvals, bvecs


def tensor_signal(bvals, bvecs, fibres):
    """Noise-free signal (S0 = 1) of a voxel with fibres [(axis, fraction, evals)]."""
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    mevals = np.array([ev for _, _, ev in fibres])
    angles = [AXES[ax] for ax, _, _ in fibres]
    fractions = [100.0 * f for _, f, _ in fibres]
    signal, _ = multi_tensor(gtab, mevals, S0=1.0, angles=angles, fractions=fractions, snr=None)
    return signal


def fa_md(evals):
    """Fractional anisotropy and mean diffusivity of eigenvalues."""
    evals = np.asarray(evals, dtype=float)
    md = evals.mean()
    fa = np.sqrt(1.5 * np.sum((evals - md) ** 2) / np.sum(evals**2))
    return fa, md


@dataclass
class Phantom:
    """A simulated diffusion series with its ground truth."""

    data: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    region: np.ndarray  # integer region code per voxel, see REGIONS
    s0: np.ndarray


REGIONS = {
    1: ("x", np.array([1.7e-3, 0.3e-3, 0.3e-3])),
    2: ("y", np.array([1.5e-3, 0.4e-3, 0.4e-3])),
    3: ("z", np.array([1.4e-3, 0.5e-3, 0.5e-3])),
    4: ("x", np.array([0.9e-3, 0.9e-3, 0.9e-3])),
}


def smooth_s0(shape, seed=0):
    """A brain-like S0: an ellipsoid with smooth texture and a dark 'ventricle'."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2.0
    radii = np.array(shape) * 0.42
    dist = np.sqrt(sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)))
    mask = dist <= 1.0
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.5)
    texture /= np.abs(texture).max()
    s0 = np.where(mask, 800.0 * (1.0 + 0.5 * texture), 0.0)
    ventricle = np.sqrt(sum(((grid[i] - centre[i] - 2) / (radii[i] * 0.3)) ** 2 for i in range(3)))
    s0[ventricle < 1] *= 0.4
    return s0, mask, grid, centre


def make_phantom(
    shape=(28, 28, 20), n_dirs=30, bval=1000.0, n_b0=2, seed=0, rotations=None
) -> Phantom:
    """Four tensor regions in a textured ellipsoid; optional per-volume head rotations.

    ``rotations`` (n, 3, 3) are reference-to-volume point mappings about the grid centre:
    volume i is the phantom rotated by ``rotations[i]`` and encoded along ``g_i`` in the
    scanner frame, i.e. along ``rotations[i].T @ g_i`` in the phantom frame.
    """
    bvals, bvecs = gradient_scheme(n_dirs, bval, n_b0)
    s0, mask, grid, centre = smooth_s0(shape, seed)
    region = np.zeros(shape, dtype=int)
    region[mask & (grid[0] < centre[0])] = 1
    region[mask & (grid[0] >= centre[0])] = 2
    region[mask & (grid[2] > centre[2] + 3)] = 3
    region[mask & (np.abs(grid[1] - centre[1]) < 2.5) & (grid[0] < centre[0])] = 4
    n_vol = len(bvals)
    data = np.zeros((*shape, n_vol), dtype=np.float32)
    for vol in range(n_vol):
        vec = bvecs[vol] if rotations is None else rotations[vol].T @ bvecs[vol]
        for code, (axis, evals) in REGIONS.items():
            sig = tensor_signal(
                np.r_[0.0, bvals[vol]], np.r_[[[0, 0, 0]], [vec]], [(axis, 1.0, evals)]
            )
            data[..., vol][region == code] = (s0 * sig[1])[region == code]
        if rotations is not None:
            inv = rotations[vol].T
            offset = centre - inv @ centre
            data[..., vol] = ndimage.affine_transform(data[..., vol], inv, offset=offset, order=3)
    affine = np.diag([ZOOM, ZOOM, ZOOM, 1.0])
    affine[:3, 3] = -centre * ZOOM
    return Phantom(data, bvals, bvecs, affine, mask, region, s0)


def rotation_matrix(rx, ry, rz):
    """R = Rz @ Ry @ Rx for angles in radians."""
    return rigid_motion.rotation_matrix((rx, ry, rz))


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    """The noise-free four-region phantom."""
    return make_phantom()
