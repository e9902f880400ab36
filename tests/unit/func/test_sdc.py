import numpy as np
import pytest
from scipy import ndimage

from brainscale.errors import InputDataError
from brainscale.workflows.func.sdc import (
    distort_points,
    pe_axis_and_sign,
    phasediff_to_fieldmap,
    total_readout_time,
    voxel_shift_map,
)

SHAPE = (40, 44, 20)


def _smooth_field(amplitude=150.0, seed=0):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 6)
    return field / np.abs(field).max() * amplitude


def _brain():
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    radii = np.array([16, 18, 8])[:, None, None, None]
    return (((grid - centre) / radii) ** 2).sum(axis=0) <= 1


def test_wrapped_phasediff_in_scanner_units_gives_back_the_field():
    te1, te2 = 0.00492, 0.00738
    field = _smooth_field(amplitude=800.0)
    brain = _brain()
    raw_phase = 2 * np.pi * field * (te2 - te1)
    assert np.abs(raw_phase[brain]).max() > np.pi  # the phase really wraps in the brain
    phase = np.angle(np.exp(1j * raw_phase))
    scanner = np.round((phase + np.pi) / (2 * np.pi) * 8190 - 4096)  # Siemens -4096..4094
    scanner[0, 0, 0], scanner[0, 0, 1] = -4096, 4094
    estimate = phasediff_to_fieldmap(scanner, te1, te2, brain)
    truth = field - np.median(field[brain])
    assert np.abs(estimate[brain] - truth[brain]).max() < 2.0


def test_unwarping_with_the_voxel_shift_map_restores_the_image():
    """An EPI distorted by a known field is restored by sampling at x + vsm(x)."""
    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 2)
    vsm, axis = voxel_shift_map(_smooth_field(100.0), 0.03, "j-")
    assert axis == 1 and np.abs(vsm).max() == pytest.approx(3.0)
    # distorted(y) = image(x) where y = x + vsm(x): invert by fixed-point iteration
    grid = np.indices(SHAPE).reshape(3, -1).astype(float)
    source = grid.copy()
    for _ in range(30):
        source[axis] = grid[axis] - ndimage.map_coordinates(vsm, source, order=1, mode="nearest")
    distorted = ndimage.map_coordinates(image, source, order=3, mode="nearest").reshape(SHAPE)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    world = affine[:3, :3] @ grid
    sampled_at = np.linalg.inv(affine)[:3, :3] @ distort_points(world, affine, vsm, axis)
    restored = ndimage.map_coordinates(distorted, sampled_at, order=3,
                                       mode="nearest").reshape(SHAPE)
    inner = (slice(4, -4), slice(6, -6), slice(2, -2))
    before = np.abs(distorted - image)[inner].mean()
    after = np.abs(restored - image)[inner].mean()
    assert after < 0.15 * before


def test_metadata_helpers():
    assert pe_axis_and_sign("j-") == (1, -1.0) and pe_axis_and_sign("i") == (0, 1.0)
    with pytest.raises(InputDataError):
        pe_axis_and_sign("x")
    assert total_readout_time({"TotalReadoutTime": 0.034}) == 0.034
    assert total_readout_time({"EffectiveEchoSpacing": 0.0005, "ReconMatrixPE": 65}) == 0.032
    assert total_readout_time({}) is None
    with pytest.raises(InputDataError, match="EchoTime2"):
        phasediff_to_fieldmap(np.zeros(SHAPE), 0.005, 0.004, _brain())
