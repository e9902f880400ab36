"""WM2MAX on a phantom whose WM median and 99.95th percentile are known exactly.

MRIQC (``mriqc.qc.anatomical.wm2max`` called on ``in_noinu`` with ``stats["wm"]["median"]``)
divides the median of the INU-corrected image inside its WM mask (partial-volume fraction
above 0.85, eroded once with the 18-connected element) by the 99.95th percentile of every
voxel of the INU-corrected image.
"""

import numpy as np
import pytest

from brainscale.workflows.anat import iqms

SHAPE = (64, 64, 64)
WM_MEDIAN = 600.0
FAT = 2400.0


def _phantom():
    """A cube of WM (values 500..700, median 600) with a partial-volumed border.

    - core ``[20, 44)^3``: 13824 voxels, probability 1, values evenly spread on
      [500, 700] (an even count symmetric about 600: the median is exactly 600);
    - border, the one-voxel layer of ``[19, 45)^3`` around it: probability 0.95 (pure
      by a 0.85 or 0.9 threshold) but a WM/GM partial volume of 450, which the
      one-voxel erosion removes exactly (it removes a cube's outer layer);
    - GM shell (probability 0.5) at 400, scalp at 300, air 0;
    - 1000 fat voxels at 2400 outside the brain: more than 0.05 % of the 262144 voxels,
      so the 99.95th percentile of the image is exactly 2400.
    """
    image = np.zeros(SHAPE, np.float32)
    wm_prob = np.zeros(SHAPE, np.float32)
    brain = np.zeros(SHAPE, bool)
    brain[12:52, 12:52, 12:52] = True
    image[8:56, 8:56, 8:56] = 300.0  # scalp
    image[brain] = 400.0  # GM
    wm_prob[brain] = 0.5
    image[19:45, 19:45, 19:45], wm_prob[19:45, 19:45, 19:45] = 450.0, 0.95
    n_core = 24**3
    values = np.linspace(500.0, 700.0, n_core)
    np.random.default_rng(0).shuffle(values)
    image[20:44, 20:44, 20:44] = values.reshape(24, 24, 24)
    wm_prob[20:44, 20:44, 20:44] = 1.0
    image[8:18, 8:18, 54:56] = FAT  # 200 voxels ...
    image[8:48, 52:56, 20:25] = FAT  # ... and 800 more: 1000 in the scalp
    assert np.sum(image == FAT) == 1000 and not brain[image == FAT].any()
    return image, wm_prob, brain


def test_mriqc_wm_mask_drops_the_partial_volume_border():
    _, wm_prob, brain = _phantom()
    mask = iqms.mriqc_wm_mask(wm_prob, brain)
    expected = np.zeros(SHAPE, bool)
    expected[20:44, 20:44, 20:44] = True
    np.testing.assert_array_equal(mask, expected)


def test_wm2max_is_the_known_ratio():
    image, wm_prob, brain = _phantom()
    assert np.percentile(image, 99.95) == FAT
    value = iqms.wm2max(image, iqms.mriqc_wm_mask(wm_prob, brain))
    assert value == pytest.approx(WM_MEDIAN / FAT, rel=1e-6)
    # without the erosion the 3752 border voxels at 450 sort below the 13824 core values:
    # the median of the 17576 is the mean of core ranks 5036 and 5037 (1-based), 572.86
    step = 200.0 / (24**3 - 1)
    uneroded = 500.0 + step * (5035 + 5036) / 2
    assert iqms.wm2max(image, wm_prob > 0.85) == pytest.approx(uneroded / FAT, rel=1e-6)
    # the maximum is the whole image's, not the brain's (whose top is the WM's 700)
    assert value < WM_MEDIAN / np.percentile(image[brain], 99.95) - 0.5


def test_compute_t1w_iqms_takes_wm2max_from_the_inu_corrected_image():
    corrected, wm_prob, brain = _phantom()
    grid = np.indices(SHAPE)[0] / (SHAPE[0] - 1)
    raw = corrected * (0.6 + 0.8 * grid).astype(np.float32)  # a strong bias along x
    tpms = {"wm": wm_prob, "gm": np.where(brain, 1 - wm_prob, 0).astype(np.float32),
            "csf": np.zeros(SHAPE, np.float32)}
    out = iqms.compute_t1w_iqms(raw, corrected, brain, tpms, (1.0, 1.0, 1.0))
    assert out["wm2max"] == pytest.approx(WM_MEDIAN / FAT, rel=1e-6)
    assert abs(iqms.wm2max(raw, iqms.mriqc_wm_mask(wm_prob, brain)) - WM_MEDIAN / FAT) > 0.01


def test_wm2max_of_an_empty_mask_is_nan():
    image, _, _ = _phantom()
    assert np.isnan(iqms.wm2max(image, np.zeros(SHAPE, bool)))
