"""Framewise displacement from the rigid part of eddy-distorted volume transforms.

The transforms are built exactly from their ground truth (head rotation ``R``,
translation ``t`` of the brain centre, eddy terms ``a`` and offset ``o`` along the
phase-encoding axis, ``T = E o G``), so the decomposition is asserted to float64
rounding (1e-9 mm on values of a few mm: the algebra is exact, only rounding remains)
except where the model cannot tell PE motion from an eddy offset, which is bounded.
"""

import numpy as np
import pandas as pd
import pytest

from brainscale.workflows.dwi.gradients import rotation_part
from brainscale.workflows.dwi.rigid_eddy import (
    common_pe_axis,
    gradient_design,
    infer_pe_axis,
    pe_polarities,
    rigid_eddy_parameters,
)
from brainscale.workflows.rigid_motion import HEAD_RADIUS_MM

from .conftest import gradient_scheme, rotation_matrix

CENTRE = np.array([56.0, 60.0, 38.0])  # brain centre, mm from the grid corner
PE = 1
EXACT = 1e-9


def _transforms(angles, trans, eddy, offset, pe=PE):
    """Target-to-volume mappings ``E o G`` about :data:`CENTRE` from their parameters."""
    mats = []
    for ang, t, a, o in zip(angles, trans, eddy, offset, strict=True):
        rigid = np.eye(4)
        rigid[:3, :3] = rotation_matrix(*ang)
        rigid[:3, 3] = CENTRE + t - rigid[:3, :3] @ CENTRE
        distort = np.eye(4)
        distort[pe, :3] += a
        distort[pe, 3] = o - a @ CENTRE
        mats.append(distort @ rigid)
    return np.stack(mats)


def _power_fd(angles, trans):
    """Power et al. (2012) FD of the true parameters (NaN for the first volume)."""
    steps = np.abs(np.diff(trans, axis=0)).sum(1) + HEAD_RADIUS_MM * np.abs(
        np.diff(angles, axis=0)).sum(1)
    return np.r_[np.nan, steps]


def _eddy_terms(bvals, bvecs, seed=1):
    """Eddy scaling/shears and offset linear in the gradient, as eddy currents are.

    Shears and scaling up to about 0.03 (0.6 mm over 20 mm) and offsets up to 2 mm:
    the size of the eddy distortions of a clinical single-refocused EPI at b=1000.
    """
    rng = np.random.default_rng(seed)
    design = gradient_design(bvals, bvecs)
    eddy = design @ rng.uniform(-0.02, 0.02, size=(3, 3))
    offset = design @ np.array([1.2, -0.8, 1.5])
    return eddy, offset


def _series(n_dirs=30):
    bvals, bvecs = gradient_scheme(n_dirs, 1000.0, n_b0=2)
    return bvals, bvecs, len(bvals)


def test_eddy_distortions_alone_give_zero_fd():
    bvals, bvecs, n = _series()
    eddy, offset = _eddy_terms(bvals, bvecs)
    mats = _transforms(np.zeros((n, 3)), np.zeros((n, 3)), eddy, offset)
    rotations, table = rigid_eddy_parameters(mats, CENTRE, pe_axis=PE, bvals=bvals, bvecs=bvecs)
    np.testing.assert_allclose(table["framewise_displacement"].iloc[1:], 0, atol=EXACT)
    np.testing.assert_allclose(table[["trans_x", "trans_y", "trans_z"]], 0, atol=EXACT)
    np.testing.assert_allclose(rotations, np.tile(np.eye(3), (n, 1, 1)), atol=EXACT)
    np.testing.assert_allclose(table["eddy_offset"], offset, atol=EXACT)
    np.testing.assert_allclose(table[["eddy_x", "eddy_y", "eddy_z"]], eddy, atol=EXACT)
    np.testing.assert_allclose(table["eddy_residual"], 0, atol=EXACT)
    # the test has teeth: the polar rotation of the same affines (the former FD) moves
    polar = np.array([rotation_part(m[:3, :3]) for m in mats])
    turn = np.abs(np.diff([np.arctan2(r[1, 0], r[0, 0]) for r in polar])).sum()
    assert HEAD_RADIUS_MM * turn / (n - 1) > 0.1
    # and without the gradients the eddy offset is (indistinguishably) PE translation,
    # the shift of the centre it causes once the PE scaling is undone
    _, unseparated = rigid_eddy_parameters(mats, CENTRE, pe_axis=PE)
    np.testing.assert_allclose(unseparated["trans_y"], offset / (1 + eddy[:, PE]), atol=EXACT)


def _known_motion(n, seed=2):
    rng = np.random.default_rng(seed)
    angles = np.radians(rng.uniform(-3, 3, size=(n, 3)))
    trans = rng.uniform(-1.5, 1.5, size=(n, 3))
    angles[0], trans[0] = 0, 0  # the reference b=0
    return angles, trans


@pytest.mark.parametrize("with_eddy", [False, True])
def test_known_rigid_motion_gives_known_fd(with_eddy):
    bvals, bvecs, n = _series()
    angles, trans = _known_motion(n)
    eddy, offset = _eddy_terms(bvals, bvecs) if with_eddy else (np.zeros((n, 3)), np.zeros(n))
    # PE motion that no eddy offset explains: orthogonal, over the diffusion-weighted
    # volumes, to a constant and the gradient columns of the offset model
    dw = bvals > 0
    design = np.column_stack([np.ones(dw.sum()), gradient_design(bvals, bvecs)[dw]
                              / (1 + eddy[dw, PE])[:, None]])
    pe_motion = trans[dw, PE]
    trans[dw, PE] = pe_motion - design @ np.linalg.lstsq(design, pe_motion, rcond=None)[0]
    mats = _transforms(angles, trans, eddy, offset)
    rotations, table = rigid_eddy_parameters(mats, CENTRE, pe_axis=PE, bvals=bvals, bvecs=bvecs)
    np.testing.assert_allclose(table["framewise_displacement"], _power_fd(angles, trans),
                               atol=EXACT)
    np.testing.assert_allclose(table[["rot_x", "rot_y", "rot_z"]], angles, atol=EXACT)
    np.testing.assert_allclose(table[["trans_x", "trans_y", "trans_z"]], trans, atol=EXACT)
    np.testing.assert_allclose(table["eddy_offset"], offset, atol=EXACT)
    truth = np.stack([rotation_matrix(*a) for a in angles])
    np.testing.assert_allclose(rotations, truth, atol=EXACT)


def test_random_pe_motion_loses_only_what_the_offset_model_explains():
    """Unconstrained motion: the gradient-explained part of PE motion goes to the offset.

    With ``n`` diffusion-weighted volumes the three gradient columns take about
    ``3 / n`` of a random PE translation's variance; with 64 volumes, and PE translation
    one of the six FD terms, the mean FD stays within 5 % of the truth.
    """
    bvals, bvecs, n = _series(n_dirs=64)
    angles, trans = _known_motion(n, seed=5)
    eddy, offset = _eddy_terms(bvals, bvecs, seed=6)
    mats = _transforms(angles, trans, eddy, offset)
    _, table = rigid_eddy_parameters(mats, CENTRE, pe_axis=PE, bvals=bvals, bvecs=bvecs)
    true_fd = np.nanmean(_power_fd(angles, trans))
    assert np.nanmean(table["framewise_displacement"]) == pytest.approx(true_fd, rel=0.05)
    # the off-PE parameters stay exact
    np.testing.assert_allclose(table[["trans_x", "trans_z"]], trans[:, [0, 2]], atol=EXACT)
    np.testing.assert_allclose(table[["rot_x", "rot_y", "rot_z"]], angles, atol=EXACT)


@pytest.mark.parametrize("pe", [0, 1, 2])
def test_phase_encoding_axis_is_inferred_from_the_transforms(pe):
    bvals, bvecs, n = _series()
    angles, trans = _known_motion(n)
    eddy, offset = _eddy_terms(bvals, bvecs)
    mats = _transforms(angles, trans, eddy, offset, pe=pe)
    assert infer_pe_axis(mats) == pe
    _, table = rigid_eddy_parameters(mats, CENTRE, bvals=bvals, bvecs=bvecs)
    np.testing.assert_allclose(table[["rot_x", "rot_y", "rot_z"]], angles, atol=EXACT)


def test_reversed_polarity_series_flip_the_eddy_offset():
    """AP + PA series combined: the same gradient displaces the PA volumes the other way."""
    bvals, bvecs, n = _series()
    signs = np.array(pe_polarities([{"PhaseEncodingDirection": "j-"},
                                    {"PhaseEncodingDirection": "j"}], [n, n]))
    bvals, bvecs = np.r_[bvals, bvals], np.r_[bvecs, bvecs]
    eddy, offset = _eddy_terms(bvals, bvecs)
    eddy, offset = eddy * signs[:, None], offset * signs
    mats = _transforms(np.zeros((2 * n, 3)), np.zeros((2 * n, 3)), eddy, offset)
    _, table = rigid_eddy_parameters(mats, CENTRE, pe_axis=PE, bvals=bvals, bvecs=bvecs,
                                     pe_sign=signs)
    np.testing.assert_allclose(table["framewise_displacement"].iloc[1:], 0, atol=EXACT)
    np.testing.assert_allclose(table["eddy_offset"], offset, atol=EXACT)
    # one polarity assumed for both: the flipped offsets cannot be fitted and move the head
    _, one_sign = rigid_eddy_parameters(mats, CENTRE, pe_axis=PE, bvals=bvals, bvecs=bvecs)
    assert np.nanmean(one_sign["framewise_displacement"]) > 0.3


def test_pe_polarities_per_volume():
    assert pe_polarities([{"PhaseEncodingDirection": "j-"}, {}], [2, 1]) == [-1, -1, 1]


def test_common_pe_axis_of_the_series_metadata():
    assert common_pe_axis([{"PhaseEncodingDirection": "j"},
                           {"PhaseEncodingDirection": "j-"}]) == 1
    assert common_pe_axis([{"PhaseEncodingDirection": "i"},
                           {"PhaseEncodingDirection": "j"}]) is None
    assert common_pe_axis([{}]) is None


def test_motion_table_columns():
    bvals, bvecs, n = _series()
    _, table = rigid_eddy_parameters(np.tile(np.eye(4), (n, 1, 1)), CENTRE, bvals=bvals,
                                     bvecs=bvecs)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                                   "framewise_displacement", "eddy_offset", "eddy_x", "eddy_y",
                                   "eddy_z", "eddy_residual"]
