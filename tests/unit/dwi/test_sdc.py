import numpy as np
import pytest

from brainscale.workflows.dwi.sdc import (
    correct_and_combine,
    displacement_to_fieldmap,
    estimate_pe_displacement,
    find_reversed_pair,
    parse_phase_encoding,
    readout_scales,
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


def test_find_reversed_pair_takes_the_first_plus_with_a_minus_on_its_axis():
    meta = [
        {"PhaseEncodingDirection": "i"},
        {},  # no direction: takes no part
        {"PhaseEncodingDirection": "j-"},
        {"PhaseEncodingDirection": "j"},
        {"PhaseEncodingDirection": "bad"},
    ]
    assert find_reversed_pair(meta) == (3, 2, 1)
    assert find_reversed_pair(meta[:2]) is None
    assert find_reversed_pair([{"PhaseEncodingDirection": "i"}, {"PhaseEncodingDirection": "j-"}]) is None


def test_readout_scales_are_ratios_of_readout_times_on_the_pair_axis():
    meta = [
        {"PhaseEncodingDirection": "j", "TotalReadoutTime": 0.05},
        {"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.1},
        {"PhaseEncodingDirection": "i", "TotalReadoutTime": 0.05},  # other axis
        {"PhaseEncodingDirection": "j-"},  # no readout time: scale 1
        {"TotalReadoutTime": 0.05},  # no direction
    ]
    assert readout_scales(meta, 0, 1) == [(1.0, 1), (2.0, -1), None, (1.0, -1), None]
    # without a reference readout time every scale is 1
    meta[0]["TotalReadoutTime"] = None
    assert readout_scales(meta, 0, 1)[1] == (1.0, -1)


def _series(volume, n=2):
    return np.stack([volume] * n, axis=-1).astype(np.float32)


def test_correct_and_combine_without_a_pair_only_concatenates(blip_pair):
    truth, _, _, plus, minus = blip_pair
    bvals = [np.array([0.0, 1000.0]), np.array([0.0, 2000.0, 2000.0])]
    bvecs = [np.eye(3)[:2], np.eye(3)]
    series = [_series(plus), _series(minus, 3)]
    meta = [{"PhaseEncodingDirection": "j"}, {"PhaseEncodingDirection": "i-"}]
    combined = correct_and_combine(series, bvals, bvecs, meta, ["a", "b"])
    np.testing.assert_array_equal(combined.data[..., :2], series[0])
    np.testing.assert_array_equal(combined.data[..., 2:], series[1])
    np.testing.assert_array_equal(combined.bvals, [0, 1000, 0, 2000, 2000])
    assert combined.bvecs.shape == (5, 3)
    assert combined.fieldmap_hz is None
    assert combined.meta["SusceptibilityDistortionCorrection"].startswith("none")


def test_correct_and_combine_unwarps_every_series_with_its_readout_time(blip_pair):
    from scipy import ndimage

    truth, mask, disp, plus, minus = blip_pair
    long_plus = _shift(truth, -2 * disp, 1)  # read out twice as long: displaced twice as far
    readout = 0.05
    meta = [
        {"PhaseEncodingDirection": "j", "TotalReadoutTime": readout},
        {"PhaseEncodingDirection": "j-", "TotalReadoutTime": readout},
        {"PhaseEncodingDirection": "j", "TotalReadoutTime": 2 * readout},
    ]
    series = [_series(plus), _series(minus), _series(long_plus)]
    bvals = [np.array([0.0, 0.0])] * 3
    bvecs = [np.zeros((2, 3))] * 3
    combined = correct_and_combine(series, bvals, bvecs, meta, ["p", "m", "long"])

    inner = ndimage.binary_erosion(mask, iterations=3)
    # the field is the known displacement over the readout time
    assert np.median(np.abs(combined.fieldmap_hz * readout - disp)[inner]) < 0.15
    assert combined.meta["PhaseEncodingPair"] == ["p", "m"]
    assert combined.meta["MaxDisplacementVoxels"] == pytest.approx(disp.max(), abs=0.5)
    # without the Jacobian modulation (of the returned field, scaled by the known readout
    # ratio) each corrected series is the truth; the long readout needs twice the shift
    estimate = combined.fieldmap_hz * readout
    for k, (distorted, sign, scale) in enumerate(((plus, 1, 1), (minus, -1, 1), (long_plus, 1, 2))):
        jac = np.clip(1.0 + np.gradient(sign * scale * estimate, axis=1), 0.0, None)
        corrected = combined.data[..., 2 * k] / jac
        before = np.abs(distorted - truth)[inner].mean()
        after = np.abs(corrected - truth)[inner].mean()
        assert after < 0.3 * before, k
