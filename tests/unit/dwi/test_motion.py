import numpy as np
import pytest
from scipy import ndimage

from brainscale.workflows.dwi.gradients import rotate_bvecs
from brainscale.workflows.dwi.motion import correct_motion, motion_parameters
from brainscale.workflows.dwi.tensor import angular_error_deg, fit_tensor

from .conftest import ZOOM, make_phantom, rotation_matrix

N_DIRS = 20


@pytest.fixture(scope="module")
def moved():
    """Phantom volumes rotated by known angles (up to 4 degrees) about the grid centre."""
    rng = np.random.default_rng(3)
    n_vol = 2 + N_DIRS
    angles = rng.uniform(-4, 4, size=(n_vol, 3))
    angles[0] = 0.0  # the reference b=0 does not move
    rotations = np.stack([rotation_matrix(*np.radians(a)) for a in angles])
    still = make_phantom(n_dirs=N_DIRS)
    moving = make_phantom(n_dirs=N_DIRS, rotations=rotations)
    return still, moving, rotations, np.radians(angles)


@pytest.mark.parametrize("target,n_jobs", [("mean", 2), ("prediction", 1)])
def test_motion_correction_recovers_rotations_and_tensor(moved, target, n_jobs):
    still, moving, rotations, angles = moved
    corrected, bvecs, motion = correct_motion(
        moving.data,
        moving.bvals,
        moving.bvecs,
        (ZOOM,) * 3,
        target=target,
        n_jobs=n_jobs,
        dw_transform="Rigid",
    )
    # estimated rotations match the simulated ones
    est = motion[["rot_x", "rot_y", "rot_z"]].to_numpy()
    errors_deg = np.degrees(np.abs(est - angles))
    assert errors_deg.max() < 2.0  # worst single volume
    assert np.median(errors_deg) < 0.5
    # b-vectors were rotated: back in the phantom frame they equal R.T @ g
    truth_vecs = rotate_bvecs(moving.bvecs, rotations)
    assert angular_error_deg(bvecs[2:], truth_vecs[2:]).max() < 2.0
    # the tensor fit after correction matches the unmoved phantom
    interior = ndimage.binary_erosion(still.mask, iterations=3) & (still.region != 4)
    ref = fit_tensor(still.data, still.bvals, still.bvecs, still.mask)
    fit = fit_tensor(corrected, moving.bvals, bvecs, still.mask)
    unrotated = fit_tensor(corrected, moving.bvals, moving.bvecs, still.mask)
    boundary = ndimage.binary_dilation(ndimage.morphological_gradient(still.region, size=3) > 0)
    core = interior & ~boundary
    err = angular_error_deg(fit["v1"][core], ref["v1"][core])
    err_unrotated = angular_error_deg(unrotated["v1"][core], ref["v1"][core])
    assert np.median(err) < 1.0
    assert np.median(err) < np.median(err_unrotated)
    assert np.median(np.abs(fit["fa"][core] - ref["fa"][core])) < 0.03
    np.testing.assert_allclose(np.median(fit["md"][core]), np.median(ref["md"][core]), rtol=0.05)
    assert np.isnan(motion["framewise_displacement"].iloc[0])
    assert (motion["framewise_displacement"].iloc[1:] > 0).all()


def test_framewise_displacement_of_known_motion():
    mats = np.tile(np.eye(4), (3, 1, 1))
    mats[1, :3, 3] = [1.0, 0.0, 0.0]  # 1 mm shift
    mats[2, :3, :3] = rotation_matrix(0.0, 0.0, 0.01)  # back to 0 mm, 0.01 rad about z
    frame = motion_parameters(mats)
    np.testing.assert_allclose(frame["framewise_displacement"].iloc[1], 1.0)
    np.testing.assert_allclose(frame["framewise_displacement"].iloc[2], 1.0 + 50 * 0.01)
    np.testing.assert_allclose(frame["rot_z"].iloc[2], 0.01)


def test_translations_are_reported_at_the_volume_centre():
    center = np.array([60.0, 60.0, 40.0])  # a grid whose origin is a corner
    turn = np.eye(4)
    turn[:3, :3] = rotation_matrix(0.0, 0.0, 0.02)
    turn[:3, 3] = center - turn[:3, :3] @ center  # rotation about the centre
    mats = np.stack([np.eye(4), turn])
    about_centre = motion_parameters(mats, center=center)
    np.testing.assert_allclose(about_centre[["trans_x", "trans_y", "trans_z"]].iloc[1], 0,
                               atol=1e-12)
    np.testing.assert_allclose(about_centre["framewise_displacement"].iloc[1], 50 * 0.02)
    # at the corner the same rotation looks like a ~1.7 mm shift as well
    assert motion_parameters(mats)["framewise_displacement"].iloc[1] > 2.5
