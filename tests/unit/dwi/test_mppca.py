"""The vectorized MP-PCA against dipy's reference implementation."""

import numpy as np
import pytest
from dipy.denoise import localpca

from brainscale.workflows.dwi.mppca import classify_eigenvalues, mppca


def test_eigenvalue_classification_matches_dipy():
    rng = np.random.default_rng(0)
    n_samples, dim = 125, 42
    batch = []
    for n_signal in (0, 1, 3, 8, 20):
        noise = rng.standard_normal((n_samples, dim))
        signal = rng.standard_normal((n_samples, n_signal)) @ rng.standard_normal(
            (n_signal, dim)) * 5.0
        x = noise + signal
        x -= x.mean(axis=0)
        batch.append(np.linalg.eigvalsh(x.T @ x / n_samples))
    variance, n_noise = classify_eigenvalues(np.array(batch), n_samples)
    for evals, var, count in zip(batch, variance, n_noise, strict=True):
        ref_var, ref_count = localpca._pca_classifier(evals, n_samples)
        assert var == pytest.approx(ref_var, rel=1e-10)
        assert count == ref_count
    # the noise variance of pure unit noise is found, and no more than ~the signal rank
    assert variance[0] == pytest.approx(1.0, rel=0.2)
    assert dim - n_noise[3] <= 9


def test_mppca_equals_dipy_on_a_noisy_phantom(phantom):
    rng = np.random.default_rng(1)
    sigma = 800.0 / 30.0
    noisy = np.sqrt((phantom.data + rng.normal(0, sigma, phantom.data.shape)) ** 2
                    + rng.normal(0, sigma, phantom.data.shape) ** 2).astype(np.float32)
    mask = phantom.mask
    with np.errstate(invalid="ignore"):
        ref, ref_sigma = localpca.mppca(noisy, mask=mask, patch_radius=2, return_sigma=True)
    ours, ours_sigma = mppca(noisy, mask, patch_radius=2, batch_voxels=500)
    covered = mask & np.isfinite(ref_sigma)
    scale = np.abs(ref[covered]).max()
    assert np.abs(ours[covered] - ref[covered]).max() < 1e-5 * scale
    np.testing.assert_allclose(ours_sigma[covered], ref_sigma[covered], rtol=1e-4)
    # outside the mask the input is kept (dipy zeroes it)
    np.testing.assert_array_equal(ours[~mask], noisy[~mask])
    assert np.all(ours_sigma[~mask] == 0)


def test_threads_and_gibbs_processes_do_not_change_the_result(phantom):
    from brainscale.workflows.dwi.denoise import remove_gibbs_ringing

    rng = np.random.default_rng(2)
    noisy = (phantom.data + rng.normal(0, 20.0, phantom.data.shape)).astype(np.float32)
    one, sigma_one = mppca(noisy, phantom.mask, batch_voxels=300)
    two, sigma_two = mppca(noisy, phantom.mask, batch_voxels=300, n_threads=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(sigma_one, sigma_two)
    series = noisy[..., :5]
    np.testing.assert_array_equal(remove_gibbs_ringing(series, n_jobs=2),
                                  remove_gibbs_ringing(series))
