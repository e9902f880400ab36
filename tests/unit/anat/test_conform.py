import nibabel as nib
import numpy as np
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.anat.conform import conform_t1w, obliquity_degrees, select_reference_t1w


def _img(data, affine=None):
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4) if affine is None
                           else affine)


def test_las_becomes_ras_with_world_coordinates_unchanged():
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7)).astype(np.float32)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [10, -5, 3]
    out, report = conform_t1w(_img(data, affine))
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
    assert report.original_orientation == "LAS"
    # the voxel at world point w holds the same value before and after
    ijk = np.array([1, 2, 3])
    world = affine[:3, :3] @ ijk + affine[:3, 3]
    ijk_new = np.rint(np.linalg.solve(out.affine[:3, :3], world - out.affine[:3, 3])).astype(int)
    assert out.get_fdata()[tuple(ijk_new)] == pytest.approx(data[tuple(ijk)])


def test_multivolume_and_constant_images_are_refused():
    with pytest.raises(InputDataError, match="3 volumes"):
        conform_t1w(_img(np.ones((4, 4, 4, 3))), "sub-01_T1w.nii.gz")
    with pytest.raises(InputDataError, match="constant"):
        conform_t1w(_img(np.ones((4, 4, 4))))


def test_single_volume_4d_squeezed_and_few_nans_zeroed():
    data = np.arange(1000, dtype=np.float32).reshape(10, 10, 10, 1)
    data[0, 0, 0, 0] = np.nan
    out, report = conform_t1w(_img(data))
    assert out.ndim == 3 and report.squeezed_4d and report.nonfinite_voxels == 1
    assert np.isfinite(out.get_fdata()).all()
    mostly_nan = np.full((10, 10, 10), np.nan)
    with pytest.raises(InputDataError, match="NaN"):
        conform_t1w(_img(mostly_nan))


def test_obliquity_angle_of_a_rotated_affine():
    angle = np.radians(10)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle),
                                                                     np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rot
    assert obliquity_degrees(affine) == pytest.approx(10.0, abs=1e-6)


def test_reference_t1w_is_the_highest_resolution():
    coarse = _img(np.ones((4, 4, 4)), np.diag([2.0, 2.0, 2.0, 1.0]))
    fine = _img(np.ones((8, 8, 8)), np.diag([1.0, 1.0, 1.0, 1.0]))
    assert select_reference_t1w([coarse, fine]) == 1
    with pytest.raises(InputDataError):
        select_reference_t1w([])


def test_an_empty_file_is_an_input_data_error_naming_it(tmp_path):
    from brainscale.workflows.anat.conform import load_t1w

    empty = tmp_path / "sub-01_T1w.nii.gz"
    empty.touch()
    with pytest.raises(InputDataError, match="sub-01_T1w.nii.gz"):
        load_t1w(str(empty))
