import nibabel as nib
import numpy as np
import pandas as pd

from workflows.func.connectivity import (
    fisher_z,
    parcel_timeseries,
    partial_correlation_matrix,
    pearson_matrix,
    relmat_frame,
)


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
