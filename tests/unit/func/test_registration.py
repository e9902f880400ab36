import nibabel as nib
import numpy as np

from brainscale.resources import get_template
from brainscale.workflows.func.motion import fov_center, params_to_matrix
from brainscale.workflows.func.registration import coregistration_brains, register_boldref
from tests.unit.func.synthetic import moved_series, template_grid


def test_rigid_coregistration_recovers_known_transform(tmp_path):
    """A 3 mm 'BOLD reference' cut from the template after a known rigid motion."""
    truth = np.array([[4.0, -3.0, 2.0, np.deg2rad(5.0), np.deg2rad(-3.0), np.deg2rad(4.0)]])
    moving, affine = moved_series(truth, voxel_mm=3.0)
    nib.save(nib.Nifti1Image(moving[..., 0], affine), tmp_path / "boldref.nii.gz")
    nib.save(get_template(resolution=2), tmp_path / "anat.nii.gz")
    matrix = register_boldref(tmp_path / "anat.nii.gz", tmp_path / "boldref.nii.gz",
                              tmp_path / "xfm.txt", transform_type="Rigid", seed=0,
                              working_resolution_mm=3.0)
    _, _, shape, _ = template_grid(3.0)
    expected = params_to_matrix(truth[0], fov_center(shape, affine))
    # compare where the two matrices send points of a brain-sized box
    box = np.array(np.meshgrid([-60, 60], [-80, 60], [-40, 70])).reshape(3, -1)
    box_h = np.vstack([box, np.ones(box.shape[1])])
    error = np.linalg.norm((matrix @ box_h - expected @ box_h)[:3], axis=0)
    assert error.max() < 1.0, error
    assert (tmp_path / "xfm.txt").exists()


def test_coregistration_brains_masks_each_image_on_its_own_grid():
    """A 3 mm anatomical mask cube lands on known 1 mm voxels; the BOLD mask is applied as is."""
    anat = nib.Nifti1Image(np.full((12, 12, 12), 7.0, np.float32), np.eye(4))
    coarse = np.zeros((4, 4, 4), np.uint8)
    coarse[1:3, 1:3, 1:3] = 1  # 3 mm voxels 1..2 hold 1 mm voxel centres 2..7 (no ties)
    anat_mask = nib.Nifti1Image(coarse, np.diag([3.0, 3.0, 3.0, 1.0]))
    boldref = nib.Nifti1Image(np.arange(27, dtype=np.float64).reshape(3, 3, 3) + 1,
                              np.diag([3.0, 3.0, 3.0, 1.0]))
    bold_mask = np.zeros((3, 3, 3), np.uint8)
    bold_mask[0, 1, 2] = bold_mask[2, 2, 2] = 1
    anat_brain, bold_brain = coregistration_brains(
        anat, anat_mask, boldref, nib.Nifti1Image(bold_mask, boldref.affine))
    expected = np.zeros((12, 12, 12), np.float32)
    expected[2:8, 2:8, 2:8] = 7.0
    assert anat_brain.shape == anat.shape and np.allclose(anat_brain.affine, anat.affine)
    np.testing.assert_array_equal(anat_brain.get_fdata(dtype=np.float32), expected)
    bold = np.asarray(bold_brain.dataobj)
    assert bold.dtype == np.float32
    assert np.flatnonzero(bold).tolist() == [5, 26]  # voxels (0,1,2) and (2,2,2)
    assert bold[0, 1, 2] == 6.0 and bold[2, 2, 2] == 27.0
