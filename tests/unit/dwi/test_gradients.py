import numpy as np
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.dwi.gradients import (
    detect_shells,
    fsl_to_voxel_bvecs,
    read_bval_bvec,
    rotate_bvecs,
    rotation_part,
    voxel_to_fsl_bvecs,
)


def _write(tmp_path, bvals, bvecs):
    bval = tmp_path / "x.bval"
    bvec = tmp_path / "x.bvec"
    np.savetxt(bval, np.atleast_2d(bvals), fmt="%g")
    np.savetxt(bvec, np.asarray(bvecs).T, fmt="%.6f")
    return bval, bvec


def test_read_normalizes_and_zeroes_b0(tmp_path):
    vecs = np.array([[0, 0, 0], [2, 0, 0], [0, 0.5, 0.5], [1, 1, 1]], dtype=float)
    bval, bvec = _write(tmp_path, [5, 1000, 1000, 2000], vecs)
    bvals, bvecs = read_bval_bvec(bval, bvec, 4)
    np.testing.assert_allclose(np.linalg.norm(bvecs[1:], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(bvecs[0], 0.0)
    np.testing.assert_allclose(bvecs[2], [0, 2**-0.5, 2**-0.5], atol=1e-6)
    np.testing.assert_allclose(bvals, [5, 1000, 1000, 2000])


def test_count_mismatch_names_files_and_counts(tmp_path):
    bval, bvec = _write(tmp_path, [0, 1000, 1000], np.eye(3))
    with pytest.raises(InputDataError) as err:
        read_bval_bvec(bval, bvec, 5, dwi_file="sub-01_dwi.nii.gz")
    msg = str(err.value)
    assert "sub-01_dwi.nii.gz" in msg and "x.bval" in msg
    assert "bval=3" in msg and "image volumes=5" in msg


def test_null_vector_on_weighted_volume_is_an_error(tmp_path):
    bval, bvec = _write(tmp_path, [0, 1000], np.zeros((2, 3)))
    with pytest.raises(InputDataError, match="null b-vector"):
        read_bval_bvec(bval, bvec, 2)


def test_bad_bvec_shape_is_an_error(tmp_path):
    (tmp_path / "x.bval").write_text("0 1000\n")
    (tmp_path / "x.bvec").write_text("1 0\n0 1\n")
    with pytest.raises(InputDataError, match="3 rows"):
        read_bval_bvec(tmp_path / "x.bval", tmp_path / "x.bvec", 2)


def test_detect_shells_groups_nearby_bvalues():
    bvals = np.array([0, 5, 995, 1000, 1010, 2000, 1990, 3000])
    np.testing.assert_array_equal(detect_shells(bvals), [0, 1002, 1995, 3000])


def test_fsl_frame_flips_x_only_for_positive_determinant():
    vecs = np.array([[0.6, 0.8, 0.0]])
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    las = np.diag([-2.0, 2.0, 2.0, 1.0])
    np.testing.assert_allclose(fsl_to_voxel_bvecs(vecs, ras), [[-0.6, 0.8, 0.0]])
    np.testing.assert_allclose(fsl_to_voxel_bvecs(vecs, las), vecs)
    np.testing.assert_allclose(voxel_to_fsl_bvecs(fsl_to_voxel_bvecs(vecs, ras), ras), vecs)


def test_rotation_part_and_bvec_rotation():
    angle = np.radians(30)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    sheared = rot @ np.array([[1.05, 0.03, 0], [0, 0.97, 0], [0, 0, 1.0]])
    np.testing.assert_allclose(rotation_part(rot), rot, atol=1e-12)
    assert np.linalg.det(rotation_part(sheared)) == pytest.approx(1.0)
    assert np.degrees(np.arccos((np.trace(rotation_part(sheared)) - 1) / 2)) == pytest.approx(
        30, abs=2
    )
    out = rotate_bvecs(np.array([[1.0, 0, 0], [0, 0, 0]]), np.stack([rot, rot]))
    np.testing.assert_allclose(out[0], [np.cos(angle), -np.sin(angle), 0], atol=1e-12)
    np.testing.assert_allclose(out[1], 0.0)
