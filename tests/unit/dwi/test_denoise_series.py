"""Head mask and the denoise-then-Gibbs chain of a series, against phantoms."""

import numpy as np
from scipy import ndimage

from brainscale.workflows.dwi.denoise import HEAD_MASK_DILATION, denoise_series, head_mask
from brainscale.workflows.dwi.reference import brain_mask, mean_b0

from .conftest import make_phantom


def _ball_series(shape=(32, 32, 24), radius=8.0):
    grid = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    ball = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) <= radius
    b0 = np.where(ball, 1000.0, 0.0)
    data = np.stack([b0, b0, 0.5 * b0], axis=-1).astype(np.float32)
    return data, np.array([0.0, 0.0, 1000.0]), ball


def test_head_mask_is_the_brain_mask_grown_by_the_dilation_in_city_block_distance():
    data, bvals, ball = _ball_series(shape=(40, 40, 40))
    mask = head_mask(data, bvals)
    brain = brain_mask(mean_b0(data, bvals))
    assert brain.any() and brain[~ball].sum() == 0
    distance = ndimage.distance_transform_cdt(~brain, metric="taxicab")
    np.testing.assert_array_equal(mask, distance <= HEAD_MASK_DILATION)


def test_denoise_series_without_a_method_or_gibbs_is_the_identity():
    data, bvals, _ = _ball_series()
    out = denoise_series(data, bvals, method="none", gibbs=False)
    np.testing.assert_array_equal(out, data)
    assert out.dtype == np.float32


def test_denoise_series_denoises_the_head_only():
    phantom = make_phantom(shape=(24, 24, 16), n_dirs=30)
    rng = np.random.default_rng(3)
    noisy = (phantom.data + rng.normal(0, 15, phantom.data.shape)).clip(0).astype(np.float32)
    out = denoise_series(noisy, phantom.bvals, method="mppca", gibbs=False)
    head = head_mask(noisy, phantom.bvals)
    np.testing.assert_array_equal(out[~head], noisy[~head])  # outside the head: untouched
    inner = ndimage.binary_erosion(phantom.mask, iterations=2)
    before = np.abs(noisy - phantom.data)[inner].mean()
    after = np.abs(out - phantom.data)[inner].mean()
    assert after < 0.7 * before
