"""Synthetic BOLD data with a known truth, shared by the functional tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainscale.resources import get_template
from brainscale.workflows.func.motion import fov_center, params_to_matrix


def template_grid(voxel_mm: float = 4.0):
    """Return the 2 mm template data/affine and a coarser grid (shape, affine) over it."""
    tpl = get_template(resolution=2)
    data = np.array(tpl.dataobj, dtype=np.float32)  # a copy: the template is read-only
    data *= 1000.0 / data.max()
    extent = np.array(tpl.shape) * 2.0
    shape = tuple(int(s) for s in np.floor(extent / voxel_mm))
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = tpl.affine[:3, 3]
    return data, tpl.affine, shape, affine


def moved_series(true_params: np.ndarray, voxel_mm: float = 4.0, noise: float = 0.0, seed=0):
    """Sample the template on a coarse grid after each known rigid motion.

    Volume ``t`` holds ``template(M_t^{-1} y)``, so a reference point ``x`` is found at
    ``M_t x`` in volume ``t``: exactly what :func:`estimate_head_motion` must return.
    """
    data, tpl_affine, shape, affine = template_grid(voxel_mm)
    smooth = ndimage.gaussian_filter(data, 0.5 * voxel_mm / 2.0)
    center = fov_center(shape, affine)
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    ijk_h = np.vstack([ijk, np.ones(ijk.shape[1])])
    to_tpl = np.linalg.inv(tpl_affine)
    rng = np.random.default_rng(seed)
    vols = np.empty(shape + (len(true_params),), dtype=np.float32)
    for t, params in enumerate(true_params):
        inv = np.linalg.inv(params_to_matrix(params, center))
        coords = (to_tpl @ inv @ affine @ ijk_h)[:3]
        vol = ndimage.map_coordinates(smooth, coords, order=3, mode="constant").reshape(shape)
        vols[..., t] = vol + noise * vol.mean() * rng.standard_normal(shape).astype(np.float32)
    return vols, affine
