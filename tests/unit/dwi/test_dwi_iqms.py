"""DWI IQMs: planted slice and volume dropouts, CNR against the noise-free truth."""

import numpy as np
import pytest

from brainscale.workflows.dwi import iqms
from brainscale.workflows.dwi.tensor import fit_tensor

from .conftest import make_phantom


@pytest.fixture(scope="module")
def clean():
    phantom = make_phantom(shape=(28, 28, 20), n_dirs=30, n_b0=2)
    maps = fit_tensor(phantom.data, phantom.bvals, phantom.bvecs, phantom.mask)
    return phantom, maps


def _noisy(phantom, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return (phantom.data + sigma * rng.standard_normal(phantom.data.shape)).astype(np.float32)


def test_planted_slice_dropouts_are_found_with_few_false_positives(clean):
    phantom, maps = clean
    rng = np.random.default_rng(7)
    weighted = np.flatnonzero(phantom.bvals > 50)
    slices = np.flatnonzero(phantom.mask.sum(axis=(0, 1)) >= iqms.MIN_SLICE_VOXELS)
    found = missed = false = tested = 0
    for seed in range(3):
        data = _noisy(phantom, 15.0, seed)
        volumes = rng.choice(weighted, 6, replace=False)
        planted = {(int(v), int(rng.choice(slices))) for v in volumes}
        for volume, slc in planted:  # 30-70 % signal loss in one slice
            data[:, :, slc, volume] *= rng.uniform(0.3, 0.7)
        out = iqms.compute_dwi_iqms(data, phantom.bvals, phantom.bvecs, phantom.mask,
                                    maps["fa"], maps["md"], None)
        flagged = {tuple(pair) for pair in out["dropout_slices"]}
        found += len(flagged & planted)
        missed += len(planted - flagged)
        false += len(flagged - planted)
        tested += len(weighted) * len(slices) - len(planted)
        assert set(out["bad_volumes"]) >= {v for v, _ in flagged & planted}
        assert out["bad_volumes_frac"] == pytest.approx(len(out["bad_volumes"]) / len(weighted))
    assert found / (found + missed) >= 0.95
    assert false / tested <= 0.01


def test_a_dropped_volume_is_flagged(clean):
    phantom, maps = clean
    data = _noisy(phantom, 15.0)
    data[..., 10] *= 0.6
    found = iqms.detect_dropouts(data, phantom.bvals, phantom.bvecs, phantom.mask)
    assert np.flatnonzero(found["volumes"]).tolist() == [10]
    assert not found["slices"][10].any()  # a whole-volume loss is not a slice dropout


def test_cnr_per_shell_matches_the_noise_free_contrast(clean):
    phantom, maps = clean
    wm = phantom.mask & (maps["fa"] > iqms.WM_FA_THRESHOLD)
    weighted = phantom.bvals > 50
    truth_contrast = phantom.data[wm][:, weighted].std(axis=1)
    values = []
    for sigma in (10.0, 20.0, 40.0):
        out = iqms.compute_dwi_iqms(_noisy(phantom, sigma), phantom.bvals, phantom.bvecs,
                                    phantom.mask, maps["fa"], maps["md"], None)
        assert out["cnr_b1000"] == pytest.approx(np.median(truth_contrast / sigma), rel=0.2)
        values.append(out["cnr_b1000"])
    assert values[0] > values[1] > values[2]


def test_fa_md_summaries_and_motion(clean):
    phantom, maps = clean
    fd = np.array([np.nan, 0.1, 0.5, 0.1])
    out = iqms.compute_dwi_iqms(phantom.data, phantom.bvals, phantom.bvecs, phantom.mask,
                                maps["fa"], maps["md"], fd)
    wm = phantom.mask & (maps["fa"] > iqms.WM_FA_THRESHOLD)
    assert out["summary_fa_median"] == pytest.approx(np.median(maps["fa"][wm]))
    assert 0.5 < out["summary_fa_median"] < 0.8  # the phantom's fibres: FA 0.56-0.80
    assert 0.6e-3 < out["summary_md_median"] < 1.0e-3
    assert out["fd_num"] == 1 and out["dropout_slices_num"] == 0
    assert out["bad_volumes_frac"] == 0.0
