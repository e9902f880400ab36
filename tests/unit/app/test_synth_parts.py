"""The synthetic-data building blocks, each against a ground truth built by hand."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from brainscale.bids_app.synth.bold import N_NETWORKS, network_signals
from brainscale.bids_app.synth.dwi import tensor_eigenvalues
from brainscale.bids_app.synth.geometry import las_grid, rigid_matrix
from brainscale.bids_app.synth.scanner import bias_field, save_nifti, site_scanner


def test_rigid_matrix_rotates_after_scaling_then_translates():
    # 90 degrees about z maps +x to +y; scale 2 then translate by (1, 2, 3).
    matrix = rigid_matrix((0, 0, 90), (1, 2, 3), scale=2.0)
    np.testing.assert_allclose(matrix @ [1, 0, 0, 1], [1, 4, 3, 1], atol=1e-12)


def test_las_grid_is_centred_and_points_left():
    shape, affine = las_grid(np.array([10.0, 0.0, -5.0]), np.array([8.0, 6.0, 4.0]), 2.0)
    assert shape == (4, 3, 2)
    assert np.linalg.det(affine[:3, :3]) < 0
    centre = affine @ np.append((np.array(shape) - 1) / 2, 1)
    np.testing.assert_allclose(centre[:3], [10.0, 0.0, -5.0])


def test_bias_field_is_exp_of_the_linear_world_term():
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (50.0, -20.0, 0.0)
    field = bias_field((3, 4, 5), affine, (0.1, -0.2, 0.3))
    i, j, k = 2, 3, 4
    x, y, z = 50.0 - 2 * i, -20.0 + 2 * j, 2.0 * k
    expected = np.exp((0.1 * x - 0.2 * y + 0.3 * z) / 100.0)
    assert field.dtype == np.float32
    np.testing.assert_allclose(field[i, j, k], expected, rtol=1e-6)
    np.testing.assert_array_equal(bias_field((3, 4, 5), affine, (0, 0, 0)), 1.0)


def test_site_scanners_repeat_after_the_third():
    assert site_scanner(3) == site_scanner(0)
    assert len({site_scanner(s)["Manufacturer"] for s in range(3)}) == 3


def test_network_signals_follow_the_coupling():
    rng = np.random.default_rng(0)
    region_network = np.array([0, 0, 1, 1, 2, 3])
    coupling = np.array([1.0, 0.0, 0.5, 0.5])
    signals = network_signals(rng, region_network, 400, coupling)
    assert signals.shape == (400, 6) and N_NETWORKS == 4
    # Full coupling: both regions of network 0 are the network factor itself.
    np.testing.assert_allclose(signals[:, 0], signals[:, 1])
    np.testing.assert_allclose(signals.std(0)[:2], 1.0)
    # No coupling: network 1's regions are independent unique parts.
    assert abs(np.corrcoef(signals[:, 2], signals[:, 3])[0, 1]) < 0.3


def test_tensor_eigenvalues_give_back_fa_and_md():
    fa, md = np.array([0.0, 0.3, 0.8]), np.array([1e-3, 0.8e-3, 0.7e-3])
    l1, l2 = tensor_eigenvalues(fa, md)
    np.testing.assert_allclose((l1 + 2 * l2) / 3, md)
    mean = (l1 + 2 * l2) / 3
    recovered = np.sqrt(1.5 * ((l1 - mean) ** 2 + 2 * (l2 - mean) ** 2)
                        / (l1**2 + 2 * l2**2))
    np.testing.assert_allclose(recovered, fa, atol=1e-12)


def test_save_nifti_is_reproducible_and_keeps_the_geometry(tmp_path):
    data = np.arange(48, dtype=np.float32).reshape(2, 3, 4, 2)
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    first, second = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    save_nifti(data, affine, first, zooms_t=2.0)
    save_nifti(data, affine, second, zooms_t=2.0)
    assert first.read_bytes() == second.read_bytes()
    assert gzip.decompress(first.read_bytes())[:4] == (348).to_bytes(4, "little")
    img = nib.load(first)
    np.testing.assert_array_equal(img.get_fdata(), data)
    np.testing.assert_array_equal(img.affine, affine)
    assert img.header.get_zooms() == (3.0, 3.0, 3.0, 2.0)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
