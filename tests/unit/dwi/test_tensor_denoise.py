import numpy as np
from scipy import ndimage

from brainscale.workflows.dwi.denoise import denoise_dwi, remove_gibbs_ringing
from brainscale.workflows.dwi.tensor import angular_error_deg, fit_tensor

from .conftest import REGIONS, fa_md

AXIS_VECTORS = {"x": [1.0, 0, 0], "y": [0, 1.0, 0], "z": [0, 0, 1.0]}


def _interior(phantom, code):
    eroded = ndimage.binary_erosion(phantom.region == code, iterations=1)
    return eroded if eroded.sum() > 10 else phantom.region == code


def _check_against_truth(maps, phantom, fa_tol, md_rel, angle_tol, stat=None):
    for code, (axis, evals) in REGIONS.items():
        roi = _interior(phantom, code)
        fa_true, md_true = fa_md(evals)
        fa = maps["fa"][roi] if stat is None else stat(maps["fa"][roi])
        md = maps["md"][roi] if stat is None else stat(maps["md"][roi])
        assert np.all(np.abs(fa - fa_true) <= fa_tol), (code, fa_true, fa)
        assert np.all(np.abs(md - md_true) <= md_rel * md_true), (code, md_true, md)
        if fa_true > 0.2:
            err = angular_error_deg(maps["v1"][roi], np.array(AXIS_VECTORS[axis]))
            assert np.percentile(err, 95) <= angle_tol, (code, np.percentile(err, 95))


def test_tensor_fit_recovers_known_tensors(phantom):
    maps = fit_tensor(phantom.data, phantom.bvals, phantom.bvecs, phantom.mask)
    _check_against_truth(maps, phantom, fa_tol=0.03, md_rel=0.05, angle_tol=10.0)
    # radial and axial diffusivities of the x bundle
    roi = _interior(phantom, 1)
    np.testing.assert_allclose(np.median(maps["ad"][roi]), 1.7e-3, rtol=0.05)
    np.testing.assert_allclose(np.median(maps["rd"][roi]), 0.3e-3, rtol=0.05)
    # colour FA: red (first voxel axis) dominates in the x bundle, green in the y bundle
    assert np.all(np.argmax(maps["colorfa"][roi], axis=-1) == 0)
    assert np.all(np.argmax(maps["colorfa"][_interior(phantom, 2)], axis=-1) == 1)


def test_denoised_noisy_phantom_stays_within_tolerance(phantom):
    rng = np.random.default_rng(1)
    sigma = 800.0 / 30.0  # SNR 30 in the b=0 image
    noisy = np.sqrt(
        (phantom.data + rng.normal(0, sigma, phantom.data.shape)) ** 2
        + rng.normal(0, sigma, phantom.data.shape) ** 2
    ).astype(np.float32)
    denoised, sigma_map = denoise_dwi(noisy, phantom.bvals, method="mppca")
    inside = phantom.mask & ndimage.binary_erosion(phantom.mask, iterations=3)
    # the estimated noise level is the simulated one, and the error to the truth shrinks
    assert abs(np.median(sigma_map[inside]) - sigma) < 0.25 * sigma
    err_noisy = np.abs(noisy - phantom.data)[inside].mean()
    err_denoised = np.abs(denoised - phantom.data)[inside].mean()
    assert err_denoised < 0.7 * err_noisy
    maps = fit_tensor(denoised, phantom.bvals, phantom.bvecs, phantom.mask)
    _check_against_truth(maps, phantom, fa_tol=0.03, md_rel=0.05, angle_tol=10.0, stat=np.median)


def test_gibbs_removal_reduces_ringing_of_a_truncated_acquisition():
    # ellipses simulated at 4x resolution, "acquired" by keeping the central 64x64 of k-space
    fine, size = 256, 64
    yy, xx = np.mgrid[:fine, :fine]
    high = np.zeros((fine, fine))
    high[((yy - fine / 2) / 80) ** 2 + ((xx - fine / 2) / 60) ** 2 < 1] = 100.0
    high[((yy - fine / 2 - 10) / 20) ** 2 + ((xx - fine / 2) / 30) ** 2 < 1] = 40.0
    kspace = np.fft.fftshift(np.fft.fft2(high))
    lo, hi = fine // 2 - size // 2, fine // 2 + size // 2
    acquired = np.fft.ifft2(np.fft.ifftshift(kspace[lo:hi, lo:hi])).real / (fine // size) ** 2
    truth = high.reshape(size, 4, size, 4).mean(axis=(1, 3))
    series = np.repeat(acquired[..., None], 3, axis=2).astype(np.float32)
    corrected = remove_gibbs_ringing(series, slice_axis=2)[..., 1]
    away_from_edges = ~ndimage.binary_dilation(np.abs(ndimage.laplace(truth)) > 1)
    err_before = np.abs(acquired - truth)[away_from_edges].mean()
    err_after = np.abs(corrected - truth)[away_from_edges].mean()
    assert err_after < 0.6 * err_before
