import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix

from brainscale.workflows.func.confounds import (
    compcor,
    compute_confounds,
    compute_dvars,
    cosine_basis,
    expand_terms,
    framewise_displacement,
    tissues_on_bold_grid,
)
from brainscale.workflows.func.motion import MOTION_COLUMNS


def test_framewise_displacement_power():
    params = np.zeros((3, 6))
    params[1] = [0.1, -0.2, 0.0, 0.001, 0.0, -0.002]
    params[2] = params[1]
    fd = framewise_displacement(params)
    assert np.isnan(fd[0])
    assert np.isclose(fd[1], 0.3 + 50 * 0.003)
    assert fd[2] == 0


def test_dvars_of_white_noise_is_standardized_to_one_and_spike_detected():
    rng = np.random.default_rng(0)
    data = 500 + 5 * rng.standard_normal((10, 10, 10, 200))
    mask = np.ones((10, 10, 10), bool)
    dvars, std_dvars = compute_dvars(data, mask)
    assert np.isnan(dvars[0])
    # intensity normalized to 1000: voxel sd 10, expected DVARS sqrt(2)*10
    assert np.isclose(np.nanmedian(dvars), np.sqrt(2) * 10, rtol=0.05)
    assert np.isclose(np.nanmedian(std_dvars), 1.0, rtol=0.05)
    data[..., 100] += 20
    _, std_dvars = compute_dvars(data, mask)
    assert set(np.argsort(np.nan_to_num(std_dvars))[-2:]) == {100, 101}


def test_cosine_basis_spans_nilearn_drifts():
    n_vols, tr = 156, 2.0
    basis = cosine_basis(n_vols, tr)
    assert basis.shape == (n_vols, int(np.floor(2 * n_vols * tr / 128)))
    assert np.allclose(basis.T @ basis, np.eye(basis.shape[1]))
    design = make_first_level_design_matrix(np.arange(n_vols) * tr, drift_model="cosine",
                                            high_pass=1 / 128)
    drifts = design[[c for c in design.columns if c.startswith("drift")]].to_numpy()
    residual = drifts - basis @ (basis.T @ drifts)
    assert np.abs(residual).max() < 1e-8


def test_compcor_recovers_planted_component():
    rng = np.random.default_rng(1)
    n_vols = 120
    planted = np.sin(np.linspace(0, 12 * np.pi, n_vols)) + rng.standard_normal(n_vols) * 0.3
    data = rng.standard_normal((8, 8, 8, n_vols))
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    loadings = rng.uniform(1, 3, mask.sum())
    data[mask] += loadings[:, None] * planted[None, :]
    comps, meta = compcor(data, mask, cosine_basis(n_vols, 2.0), n_skip=2)
    assert comps.shape[1] >= 5 and np.all(comps[:2] == 0)
    assert abs(np.corrcoef(comps[2:, 0], planted[2:])[0, 1]) > 0.95
    assert meta["VarianceExplained"].iloc[0] > 0.5
    assert np.isclose(meta["CumulativeVarianceExplained"].iloc[-1], 1.0)


def test_expand_terms_names_and_values():
    frame = pd.DataFrame({"trans_x": [1.0, 3.0, 2.0]})
    out = expand_terms(frame)
    assert list(out.columns) == ["trans_x", "trans_x_derivative1", "trans_x_power2",
                                 "trans_x_derivative1_power2"]
    assert np.isnan(out["trans_x_derivative1"][0])
    assert list(out["trans_x_derivative1"][1:]) == [2.0, -1.0]
    assert list(out["trans_x_power2"]) == [1.0, 9.0, 4.0]
    assert list(out["trans_x_derivative1_power2"][1:]) == [4.0, 1.0]


def test_compute_confounds_table():
    rng = np.random.default_rng(2)
    n_vols = 60
    shape = (12, 12, 12)
    data = 1000 + 10 * rng.standard_normal(shape + (n_vols,))
    brain = np.zeros(shape, bool)
    brain[2:10, 2:10, 2:10] = True
    csf = np.zeros(shape)
    csf[4:8, 4:8, 2:5] = 1.0
    wm = np.zeros(shape)
    wm[3:9, 3:9, 5:10] = 1.0
    params = np.cumsum(rng.normal(0, 0.02, (n_vols, 6)), axis=0)
    params[30, 0] += 1.0  # a jump: FD > 0.5 at 30 and 31
    data[2:4, 2:4, 2:10] = 0.0  # brain voxels outside the BOLD field of view
    table, meta = compute_confounds(data, brain, csf, wm, params, 2.0, n_nonsteady=2)
    assert len(table) == n_vols
    for column in ["global_signal", "csf", "white_matter", "dvars", "std_dvars",
                   "framewise_displacement", "a_comp_cor_00", "t_comp_cor_00", "cosine_00",
                   "non_steady_state_outlier_00", "non_steady_state_outlier_01",
                   "rot_z_derivative1_power2", "white_matter_derivative1_power2"]:
        assert column in table.columns, column
    assert np.allclose(table[list(MOTION_COLUMNS)].to_numpy(), params)
    covered = brain.copy()
    covered[2:4, 2:4, 2:10] = False
    assert np.isclose(table["global_signal"][5], data[covered][:, 5].mean())
    flagged = [int(np.argmax(table[c])) for c in table.columns if c.startswith("motion_outlier")]
    assert {30, 31} <= set(flagged)
    assert meta["a_comp_cor_00"]["Retained"] is True
    assert meta["trans_x"]["Units"] == "mm" and meta["rot_x"]["Units"] == "rad"


def test_tissues_on_bold_grid_resamples_mask_and_probabilities():
    """A 1 mm mask cube and tissue maps brought onto a 2 mm BOLD grid with known answers."""
    import nibabel as nib

    fine = np.diag([1.0, 1.0, 1.0, 1.0])
    bold_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[4:9, 4:9, 4:9] = 1  # holds world 4..8 mm: BOLD voxels 2..4 on the 2 mm grid
    wm = np.full((12, 12, 12), 0.7, np.float32)
    csf = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)  # already on the grid
    got_mask, got_wm, got_csf = tissues_on_bold_grid(
        (6, 6, 6), bold_affine, nib.Nifti1Image(mask, fine), nib.Nifti1Image(wm, fine),
        nib.Nifti1Image(csf, bold_affine))
    expected = np.zeros((6, 6, 6), bool)
    expected[2:5, 2:5, 2:5] = True
    assert got_mask.dtype == bool
    np.testing.assert_array_equal(got_mask, expected)
    # a constant probability stays constant away from the field-of-view edge
    np.testing.assert_allclose(got_wm[1:5, 1:5, 1:5], 0.7, atol=1e-5)
    np.testing.assert_allclose(got_csf, csf, atol=1e-5)
