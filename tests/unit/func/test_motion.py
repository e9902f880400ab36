import time

import numpy as np
import pytest

from brainscale.workflows.func.motion import (
    estimate_head_motion,
    fov_center,
    matrix_to_params,
    params_to_matrix,
)
from tests.unit.func.synthetic import moved_series


def test_params_matrix_round_trip():
    rng = np.random.default_rng(1)
    center = np.array([3.0, -20.0, 15.0])
    for _ in range(20):
        params = np.concatenate([rng.uniform(-5, 5, 3), rng.uniform(-0.2, 0.2, 3)])
        mat = params_to_matrix(params, center)
        assert np.allclose(mat[:3, :3] @ mat[:3, :3].T, np.eye(3))
        assert np.allclose(matrix_to_params(mat, center), params)
        # the centre only moves by the translation
        assert np.allclose(mat[:3, :3] @ center + mat[:3, 3], center + params[:3])


def _random_walk_motion(n_vols, seed):
    rng = np.random.default_rng(seed)
    steps = np.concatenate(
        [rng.normal(0, 0.3, (n_vols, 3)), np.deg2rad(rng.normal(0, 0.2, (n_vols, 3)))], axis=1
    )
    steps[0] = 0
    return np.cumsum(steps, axis=0)


def test_known_rigid_motion_is_recovered():
    truth = _random_walk_motion(24, seed=3)
    vols, affine = moved_series(truth, voxel_mm=4.0, noise=0.02)
    start = time.perf_counter()
    params, matrices = estimate_head_motion(vols, affine, vols[..., 0])
    elapsed = time.perf_counter() - start
    assert params.shape == (24, 6) and matrices.shape == (24, 4, 4)
    trans_rms = np.sqrt(np.mean((params[:, :3] - truth[:, :3]) ** 2))
    rot_rms_deg = np.rad2deg(np.sqrt(np.mean((params[:, 3:] - truth[:, 3:]) ** 2)))
    assert trans_rms < 0.2, trans_rms
    assert rot_rms_deg < 0.2, rot_rms_deg
    for k in range(6):
        r = np.corrcoef(params[:, k], truth[:, k])[0, 1]
        assert r >= 0.95, (k, r)
    assert elapsed < 30


@pytest.mark.parametrize("axis", range(6))
def test_single_parameter_sign(axis):
    """A pure motion along one parameter is reported on that parameter with its sign."""
    truth = np.zeros((2, 6))
    truth[1, axis] = 2.0 if axis < 3 else np.deg2rad(2.0)
    vols, affine = moved_series(truth)
    params, _ = estimate_head_motion(vols, affine, vols[..., 0])
    assert np.allclose(params[1, :3], truth[1, :3], atol=0.1)
    assert np.allclose(params[1, 3:], truth[1, 3:], atol=np.deg2rad(0.1))
    assert np.allclose(params[0], 0, atol=1e-3)


def test_centre_of_rotation_is_fov_centre():
    center = fov_center((10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert np.allclose(center, [9.0, 9.0, 9.0])
