import numpy as np
import pytest

from workflows.dwi.sdc import (
    displacement_to_fieldmap,
    estimate_pe_displacement,
    parse_phase_encoding,
    unwarp,
)

from .conftest import smooth_s0


def _shift(image, disp, axis):
    from scipy import ndimage

    coords = np.indices(image.shape, dtype=float)
    coords[axis] += disp
    return ndimage.map_coordinates(image, coords, order=3, mode="nearest")


@pytest.fixture(scope="module")
def blip_pair():
    truth, mask, grid, centre = smooth_s0((30, 36, 10), seed=2)
    # smooth off-resonance bump: up to 2.5 voxels along the PE axis (j)
    disp = 2.5 * np.exp(-(((grid[0] - centre[0]) / 8) ** 2 + ((grid[1] - centre[1] - 4) / 9) ** 2))
    plus = _shift(truth, -disp, 1)  # plus(y) = truth(y - d): plus(x + d) ~ truth(x)
    minus = _shift(truth, disp, 1)
    return truth, mask, disp, plus, minus


def test_parse_phase_encoding():
    assert parse_phase_encoding("j-") == (1, -1)
    assert parse_phase_encoding("i") == (0, 1)
    with pytest.raises(ValueError):
        parse_phase_encoding("y")


def test_blip_up_down_recovers_displacement_and_image(blip_pair):
    truth, mask, disp, plus, minus = blip_pair
    estimate = estimate_pe_displacement(plus, minus, pe_axis=1)
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=2)
    assert np.median(np.abs(estimate - disp)[inner]) < 0.15
    assert np.abs(estimate - disp)[inner].max() < 0.6
    corrected_plus = unwarp(plus, estimate, 1, +1, jacobian=False)
    corrected_minus = unwarp(minus, estimate, 1, -1, jacobian=False)
    for distorted, corrected in ((plus, corrected_plus), (minus, corrected_minus)):
        before = np.abs(distorted - truth)[inner].mean()
        after = np.abs(corrected - truth)[inner].mean()
        assert after < 0.3 * before
    # a 4D series is unwarped volume by volume, identically
    series = unwarp(np.stack([plus, plus], axis=-1), estimate, 1, +1, jacobian=False)
    np.testing.assert_allclose(series[..., 1], corrected_plus, atol=1e-4)


def test_jacobian_modulation_conserves_intensity():
    image = np.ones((4, 40, 3), dtype=np.float32)
    image[:, :5] = image[:, -5:] = 0
    disp = np.broadcast_to(np.linspace(0, 3, 40)[None, :, None], image.shape).astype(np.float32)
    flat = np.ones_like(image)
    stretched = unwarp(flat, disp, 1, +1, jacobian=True)
    # d = 3 y / 39: the Jacobian is 1 + 3/39 everywhere
    np.testing.assert_allclose(stretched[:, 5:-5], 1 + 3 / 39, rtol=1e-3)
    np.testing.assert_allclose(displacement_to_fieldmap(np.array([0.05]), 0.05), [1.0])
