import nibabel as nib
import numpy as np

from brainscale.resources import get_template
from brainscale.workflows.func.motion import fov_center, params_to_matrix
from brainscale.workflows.func.registration import register_boldref
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
