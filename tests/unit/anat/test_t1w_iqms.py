"""T1w IQMs on phantoms with known noise, contrast, smoothness, ghosts and bias fields."""

import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainscale.workflows.anat import iqms

SHAPE = (64, 64, 64)
INTENSITY = {"scalp": 300.0, "csf": 100.0, "gm": 400.0, "wm": 600.0}


def _phantom(sigma, seed=0, bias=None, ghost=0.0):
    """Nested spheres (WM core, GM, CSF, scalp) in air with Rician noise of ``sigma``."""
    grid = np.indices(SHAPE).astype(np.float32) - 31.5
    radius = np.sqrt((grid**2).sum(axis=0))
    labels = {"wm": radius < 14, "gm": (radius >= 14) & (radius < 20),
              "csf": (radius >= 20) & (radius < 23), "scalp": (radius >= 23) & (radius < 26)}
    clean = np.zeros(SHAPE, np.float32)
    for name, region in labels.items():
        clean[region] = INTENSITY[name]
    if bias is not None:
        clean *= bias
    if ghost:
        clean += ghost * np.roll(clean > 0, SHAPE[1] // 2, axis=1)  # N/2 ghost, phase axis y
    rng = np.random.default_rng(seed)
    noisy = np.abs(clean + sigma * rng.standard_normal(SHAPE)
                   + 1j * sigma * rng.standard_normal(SHAPE)).astype(np.float32)
    brain = radius < 23
    tpms = {t: labels[t].astype(np.float32) for t in iqms.TISSUES}
    return noisy, brain, tpms


def _iqms(sigma, **kwargs):
    image, brain, tpms = _phantom(sigma, **kwargs)
    return iqms.compute_t1w_iqms(image, image, brain, tpms, (1.0, 1.0, 1.0))


def test_snr_cnr_cjv_match_the_known_noise():
    sigma = 20.0
    out = _iqms(sigma)
    assert out["notes"] == []
    for tissue in ("gm", "wm"):  # Rician ~ Gaussian at these SNRs
        truth = INTENSITY[tissue] / sigma
        assert out[f"snr_{tissue}"] == pytest.approx(truth, rel=0.05)
        assert out[f"snrd_{tissue}"] == pytest.approx(truth, rel=0.08)  # Dietrich 2007
    assert out["cjv"] == pytest.approx(2 * sigma / 200.0, rel=0.08)
    air_std = sigma * iqms.DIETRICH_FACTOR
    assert out["cnr"] == pytest.approx(200.0 / math.sqrt(air_std**2 + 2 * sigma**2), rel=0.06)
    assert out["icvs_wm"] == pytest.approx(
        (4 / 3 * np.pi * 14**3) / (4 / 3 * np.pi * 23**3), rel=0.05)
    assert out["wm2max"] == pytest.approx(600 / np.percentile(_phantom(sigma)[0], 99.95),
                                          rel=0.01)
    assert out["qi_1"] < 1e-3  # pure noise background: no artifact


def test_iqms_move_as_their_definitions_say_when_noise_rises():
    values = [_iqms(sigma) for sigma in (5.0, 15.0, 40.0)]
    for key in ("snr_total", "snrd_total", "cnr", "fber"):
        assert values[0][key] > values[1][key] > values[2][key], key
    assert values[0]["cjv"] < values[1]["cjv"] < values[2]["cjv"]
    assert values[0]["efc"] < values[1]["efc"] < values[2]["efc"]  # noise spreads energy


def test_ghost_raises_qi1_and_efc():
    # a faint N/2 ghost (4 % of WM), far above the air noise but below the head threshold
    clean, ghosted = _iqms(1.5), _iqms(1.5, ghost=25.0)
    image, brain, _ = _phantom(1.5, ghost=25.0)
    head = iqms.head_mask(image) | brain
    # the ghost sits in the air: qi_1 finds it (most of its voxels; the mask edge erodes it)
    assert clean["qi_1"] < 1e-3 < 0.02 < ghosted["qi_1"]
    assert ghosted["efc"] > clean["efc"]
    assert ghosted["fber"] < clean["fber"]
    assert head.sum() < 0.6 * np.prod(SHAPE)


def test_fwhm_of_smoothed_white_noise():
    rng = np.random.default_rng(1)
    for fwhm_vox in (2.0, 4.0):
        sigma = fwhm_vox / (2 * math.sqrt(2 * math.log(2)))
        field = ndimage.gaussian_filter(rng.standard_normal((80, 80, 80)), sigma)
        mask = np.zeros(field.shape, bool)
        mask[10:70, 10:70, 10:70] = True
        fx, fy, fz = iqms.fwhm(field, mask, (1.0, 1.0, 2.0))
        assert fx == pytest.approx(fwhm_vox, rel=0.1)
        assert fy == pytest.approx(fwhm_vox, rel=0.1)
        assert fz == pytest.approx(2 * fwhm_vox, rel=0.1)


def test_inu_range_rises_with_a_stronger_bias_field():
    from brainscale.workflows.anat.bias import correct_bias_field

    x = (np.indices(SHAPE)[0] - 31.5) / 31.5
    ranges = []
    for strength in (0.1, 0.5):
        field = (1 + strength * x).astype(np.float32)
        image, brain, tpms = _phantom(5.0, bias=field)
        truth_range = float(np.subtract(*np.percentile(field[brain], [95, 5])))
        assert iqms.inu_summary(field[brain])[1] == pytest.approx(truth_range)
        img = nib.Nifti1Image(image, np.diag([2.0, 2.0, 2.0, 1.0]))
        corrected = correct_bias_field(img)[0].get_fdata().astype(np.float32)
        out = iqms.compute_t1w_iqms(image, corrected, brain, tpms, (2.0, 2.0, 2.0))
        ranges.append(out["inu_range"])
    assert ranges[1] > 2 * ranges[0]


def test_skull_stripped_input_has_no_air_metrics():
    image, brain, tpms = _phantom(10.0)
    image = np.where(brain, image, 0).astype(np.float32)
    out = iqms.compute_t1w_iqms(image, image, brain, tpms, (1.0, 1.0, 1.0))
    assert out["snrd_wm"] is None and out["qi_1"] is None and out["fber"] is None
    assert "skull-stripped" in out["notes"][0]
    assert out["snr_wm"] == pytest.approx(60, rel=0.1)


def test_coarse_head_mask_matches_the_full_one():
    image, _, _ = _phantom(5.0)
    full, coarse = iqms.head_mask(image), iqms.head_mask(image, step=2)
    assert coarse.shape == full.shape
    boundary = ndimage.binary_dilation(full, iterations=3) & ~ndimage.binary_erosion(
        full, iterations=3)
    assert not (full ^ coarse)[~boundary].any()  # they differ only at the outline
    assert abs(int(full.sum()) - int(coarse.sum())) < 0.02 * full.sum()
