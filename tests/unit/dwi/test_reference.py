import numpy as np
from scipy import ndimage

from brainscale.workflows.dwi.reference import (
    b1_bias_field,
    bias_corrected_series,
    brain_mask,
    mean_b0,
)

from .conftest import smooth_s0


def test_mask_and_bias_field_of_a_biased_phantom():
    s0, truth_mask, grid, centre = smooth_s0((40, 40, 24), seed=4)
    bias = 1.0 + 0.4 * (grid[0] - centre[0]) / centre[0]  # linear receive-bias ramp, 0.6..1.4
    rng = np.random.default_rng(0)
    image = s0 * bias + np.abs(rng.normal(0, 10, s0.shape))
    series = np.stack([image, image * 0.3, image], axis=-1)
    b0 = mean_b0(series, np.array([0, 1000, 0]))
    np.testing.assert_allclose(b0, image, rtol=1e-5)

    mask = brain_mask(b0)
    dice = 2 * np.sum(mask & truth_mask) / (mask.sum() + truth_mask.sum())
    assert dice > 0.9

    field = b1_bias_field(b0, mask, (2.0, 2.0, 2.0))
    inner = ndimage.binary_erosion(truth_mask, iterations=2) & mask
    expected = bias / bias[mask].mean()
    assert np.corrcoef(field[inner], expected[inner])[0, 1] > 0.75
    corrected = b0 / field
    # the ramp is removed: the right/left intensity ratio returns to that of the truth
    left, right = inner & (grid[0] < centre[0]), inner & (grid[0] >= centre[0])
    truth = s0[right].mean() / s0[left].mean()
    before = b0[right].mean() / b0[left].mean()
    after = corrected[right].mean() / corrected[left].mean()
    assert abs(before - truth) > 0.2
    assert abs(after - truth) < 0.05


def test_bias_corrected_series_divides_series_and_b0_by_the_field():
    s0, truth_mask, grid, centre = smooth_s0((40, 40, 24), seed=4)
    bias = 1.0 + 0.4 * (grid[0] - centre[0]) / centre[0]
    image = (s0 * bias).astype(np.float32)
    series = np.stack([image, 0.3 * image, image], axis=-1)
    original = series.copy()
    corrected, b0, mask, field = bias_corrected_series(series, np.array([0, 1000, 0]), (2.0,) * 3)
    inner = ndimage.binary_erosion(truth_mask, iterations=2) & mask
    # the ramp is removed from every volume: the truth's right/left ratio returns
    left, right = inner & (grid[0] < centre[0]), inner & (grid[0] >= centre[0])
    truth = s0[right].mean() / s0[left].mean()
    for vol in range(3):
        ratio = corrected[..., vol][right].mean() / corrected[..., vol][left].mean()
        assert abs(ratio - truth) < 0.05
    np.testing.assert_allclose(corrected[..., 1], 0.3 * corrected[..., 0], rtol=1e-5)
    np.testing.assert_allclose(b0, original[..., 0] / field, rtol=1e-5)
    np.testing.assert_allclose(corrected * field[..., None], original, rtol=1e-5)
    dice = 2 * np.sum(mask & truth_mask) / (mask.sum() + truth_mask.sum())
    assert dice > 0.9
