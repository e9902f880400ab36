import numpy as np
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.func.slice_timing import correct_slice_timing, slice_timing_plan

TR = 2.0


def _signal(t):
    return np.sin(2 * np.pi * t / 40.0) + 0.5 * np.cos(2 * np.pi * t / 23.0)


def test_shifted_slices_are_brought_to_reference_time():
    """Each slice samples a slow signal at its own time; after correction all match
    the signal sampled at the reference time."""
    n_slices, n_vols = 6, 80
    times = np.array([0.0, 1.0, 0.333, 1.333, 0.667, 1.667])  # interleaved
    frames = np.arange(n_vols) * TR
    bold = np.zeros((2, 2, n_slices, n_vols), np.float32)
    for s in range(n_slices):
        bold[:, :, s, :] = _signal(frames + times[s])
    plan = slice_timing_plan({"SliceTiming": list(times)}, bold.shape, TR)
    assert plan is not None
    st, axis, ref_time = plan
    assert axis == 2 and ref_time == pytest.approx((0 + 1.667) / 2)
    out = correct_slice_timing(bold, st, axis, TR, ref_time)
    truth = _signal(frames + ref_time)
    inner = slice(2, -2)
    for s in range(n_slices):
        assert np.abs(out[0, 0, s, inner] - truth[inner]).max() < 5e-3
        # before correction the error is much larger
    assert np.abs(bold[0, 0, 5, inner] - truth[inner]).max() > 0.05


def test_multiband_groups_share_a_shift():
    times = [0.0, 0.5, 0.0, 0.5]  # multiband factor 2
    frames = np.arange(50) * 1.0
    bold = np.stack([_signal(frames + t) for t in times])[None, None].astype(np.float32)
    plan = slice_timing_plan({"SliceTiming": times}, bold.shape, 1.0)
    out = correct_slice_timing(bold, plan[0], plan[1], 1.0, plan[2])
    assert np.allclose(out[0, 0, 0], out[0, 0, 2]) and np.allclose(out[0, 0, 1], out[0, 0, 3])
    assert np.abs(out[0, 0, 0, 2:-2] - out[0, 0, 1, 2:-2]).max() < 5e-3


def test_reversed_slice_direction():
    plan = slice_timing_plan({"SliceTiming": [0.0, 0.5, 1.0], "SliceEncodingDirection": "k-"},
                             (2, 2, 3, 10), 1.5)
    assert list(plan[0]) == [1.0, 0.5, 0.0]


def test_absent_or_constant_timing_is_skipped():
    assert slice_timing_plan({}, (2, 2, 3, 10), 2.0) is None
    assert slice_timing_plan({"SliceTiming": [0, 0, 0]}, (2, 2, 3, 10), 2.0) is None


@pytest.mark.parametrize("times", [[0.0, 0.5], [0.0, 0.5, 2.5], [-0.1, 0.2, 0.4]])
def test_bad_slice_timing_is_an_input_error(times):
    with pytest.raises(InputDataError, match="SliceTiming"):
        slice_timing_plan({"SliceTiming": times}, (2, 2, 3, 10), 2.0, "sub-x_bold.nii.gz")
