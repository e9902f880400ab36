import nibabel as nib
import numpy as np
import pandas as pd

from brainscale.workflows.func.connectivity import (
    atlas_connectivity,
    connectivity_matrices,
    denoise_parcels,
    fisher_z,
    parcel_timeseries,
    partial_correlation_matrix,
    pearson_matrix,
    regions_with_signal,
    relmat_frame,
)
from brainscale.workflows.func.motion import MOTION_COLUMNS


def test_pearson_recovers_block_network():
    """Two networks of 4 regions driven by two latent signals: r = 0.8 within, 0 between."""
    rng = np.random.default_rng(0)
    n_vols = 20000
    latent = rng.standard_normal((n_vols, 2))
    member = np.repeat([0, 1], 4)
    series = np.sqrt(0.8) * latent[:, member] + np.sqrt(0.2) * rng.standard_normal((n_vols, 8))
    corr = pearson_matrix(series)
    assert np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1.0)
    same = member[:, None] == member[None, :]
    off = ~np.eye(8, dtype=bool)
    assert np.allclose(corr[same & off], 0.8, atol=0.03)
    assert np.allclose(corr[~same], 0.0, atol=0.05)


def test_partial_correlation_recovers_chain_graph():
    """A chain precision matrix: partial correlations only between neighbours."""
    n = 6
    precision = np.eye(n)
    for i in range(n - 1):
        precision[i, i + 1] = precision[i + 1, i] = -0.4
    cov = np.linalg.inv(precision)
    rng = np.random.default_rng(1)
    series = rng.multivariate_normal(np.zeros(n), cov, size=20000)
    partial = partial_correlation_matrix(series)
    truth = -precision / np.sqrt(np.outer(np.diag(precision), np.diag(precision)))
    np.fill_diagonal(truth, 1.0)
    assert np.allclose(partial, partial.T) and np.allclose(np.diag(partial), 1.0)
    assert np.abs(partial - truth).max() < 0.04
    # Pearson sees the indirect links that partial correlation removes
    assert pearson_matrix(series)[0, 2] > 0.1 and abs(partial[0, 2]) < 0.04


def test_fisher_z_and_invalid_regions():
    rng = np.random.default_rng(2)
    series = rng.standard_normal((200, 4))
    series[:, 3] = np.nan
    corr = pearson_matrix(series)
    assert np.all(np.isnan(corr[3])) and np.all(np.isnan(corr[:, 3]))
    z = fisher_z(corr)
    assert np.allclose(z[:3, :3][~np.eye(3, dtype=bool)],
                       np.arctanh(corr[:3, :3][~np.eye(3, dtype=bool)]))
    assert np.all(np.isnan(np.diag(z)))


def test_parcel_timeseries_means_and_missing_region():
    rng = np.random.default_rng(3)
    labels_img = np.zeros((6, 6, 6), np.int32)
    labels_img[:3] = 1
    labels_img[3:, :3] = 5
    bold = rng.standard_normal((6, 6, 6, 10)).astype(np.float32)
    labels = pd.DataFrame({"index": [1, 5, 7], "name": ["a", "b", "absent"]})
    affine = np.eye(4)
    ts = parcel_timeseries(nib.Nifti1Image(bold, affine), nib.Nifti1Image(labels_img, affine),
                           labels)
    assert list(ts.columns) == ["a", "b", "absent"]
    assert np.allclose(ts["a"], bold[labels_img == 1].mean(axis=0), atol=1e-5)
    assert np.allclose(ts["b"], bold[labels_img == 5].mean(axis=0), atol=1e-5)
    assert ts["absent"].isna().all()


def test_relmat_frame_layout():
    frame = relmat_frame(np.eye(2), ["x", "y"])
    assert list(frame.columns) == ["node", "x", "y"]
    assert list(frame["node"]) == ["x", "y"]


def test_regions_with_signal_censors_missing_nan_and_constant_parcels():
    rng = np.random.default_rng(4)
    parcels = pd.DataFrame({"ok": rng.standard_normal(20), "absent": np.nan,
                            "constant": 3.0, "gap": rng.standard_normal(20)})
    parcels.loc[5, "gap"] = np.nan
    assert regions_with_signal(parcels).tolist() == [True, False, False, False]


def _confounds(n_vols, seed=5):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.standard_normal((n_vols, 6)), columns=list(MOTION_COLUMNS))
    table["non_steady_state_outlier_00"] = np.eye(n_vols)[0]  # volume 0 is censored
    return table


def _clean_signal(confounds, kept, seed):
    """A series with zero mean and no part explained by the motion regressors (kept volumes)."""
    rng = np.random.default_rng(seed)
    design = np.column_stack([np.ones(len(kept)), confounds.loc[kept, list(MOTION_COLUMNS)]])
    signal = rng.standard_normal(len(kept))
    return signal - design @ np.linalg.lstsq(design, signal, rcond=None)[0]


def test_denoise_parcels_removes_confounds_and_censors_volumes_and_regions():
    n_vols = 60
    confounds = _confounds(n_vols)
    kept = np.arange(1, n_vols)
    signal = np.zeros(n_vols)
    signal[kept] = _clean_signal(confounds, kept, seed=6)
    parcels = pd.DataFrame({
        "a": signal + 3.0 * confounds["trans_x"] - 2.0 * confounds["rot_z"] + 7.0,
        "absent": np.nan,
        "flat": 1.0,
    })
    denoised = denoise_parcels(parcels, confounds, "6P", tr=2.0, source="x_bold.nii.gz")
    assert denoised.strategy == "6P" and denoised.note is None
    assert denoised.confound_columns == list(MOTION_COLUMNS)
    assert denoised.kept.tolist() == kept.tolist()
    assert denoised.regions_without_signal == ["absent", "flat"]
    frame = denoised.timeseries
    assert list(frame.columns) == ["a", "absent", "flat"]
    assert frame.iloc[0].isna().all()  # the censored volume
    assert frame[["absent", "flat"]].isna().all().all()
    truth = signal[kept] / signal[kept].std(ddof=1)  # what is left: the z-scored signal
    assert np.allclose(frame["a"].to_numpy()[kept], truth, atol=1e-8)


def test_denoise_parcels_falls_back_when_the_strategy_does_not_fit():
    confounds = _confounds(30)
    parcels = pd.DataFrame(np.random.default_rng(8).standard_normal((30, 3)),
                           columns=["a", "b", "c"])
    denoised = denoise_parcels(parcels, confounds, "24P", tr=2.0)
    assert denoised.strategy == "6P" and "'24P'" in denoised.note


def test_connectivity_matrices_of_known_correlations():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((2, 500))
    x -= x.mean()
    y -= y.mean()
    y -= x * (x @ y) / (x @ x)  # orthogonal to x: r = 0
    matrices = connectivity_matrices(np.column_stack([x, -2.0 * x + 1.0, y]))
    assert list(matrices) == ["pearson", "partial", "pearson_z", "partial_z"]
    truth = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.allclose(matrices["pearson"], truth, atol=1e-12)
    z = matrices["pearson_z"]
    assert np.all(np.isnan(np.diag(z)))
    assert np.isclose(z[0, 1], np.arctanh(-1 + 1e-7)) and np.isclose(z[0, 2], 0.0, atol=1e-12)
    partial = matrices["partial"]
    off = ~np.eye(3, dtype=bool)
    assert np.allclose(np.diag(partial), 1.0)
    assert np.allclose(matrices["partial_z"][off], np.arctanh(partial[off]))


def test_atlas_connectivity_recovers_a_built_in_correlation():
    """Two regions whose clean signals correlate at r = 0.6 by construction; one region absent."""
    n_vols = 60
    confounds = _confounds(n_vols)
    kept = np.arange(1, n_vols)
    s1 = _clean_signal(confounds, kept, seed=10)
    u = _clean_signal(confounds, kept, seed=11)
    u -= s1 * (s1 @ u) / (s1 @ s1)
    u *= np.linalg.norm(s1) / np.linalg.norm(u)
    s2 = 0.6 * s1 + 0.8 * u
    labels_img = np.zeros((4, 4, 4), np.int16)
    labels_img[:2] = 1
    labels_img[2:] = 2
    bold = np.zeros((4, 4, 4, n_vols), np.float32)
    bold[:2, ..., kept] = 100.0 + 10.0 * s1
    bold[2:, ..., kept] = 100.0 + 10.0 * s2
    labels = pd.DataFrame({"index": [1, 2, 3], "name": ["r1", "r2", "absent"]})
    denoised, matrices = atlas_connectivity(
        nib.Nifti1Image(bold, np.eye(4)), nib.Nifti1Image(labels_img, np.eye(4)), labels,
        confounds, "6P", tr=2.0)
    assert denoised.regions_without_signal == ["absent"]
    assert np.isclose(matrices["pearson"][0, 1], 0.6, atol=1e-5)
    assert np.all(np.isnan(matrices["pearson"][2]))
