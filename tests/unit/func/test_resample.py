import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale.workflows.func.registration import itk_to_ras_matrix
from brainscale.workflows.func.resample import (
    field_of_view_mask,
    fill_grid,
    grid_at_resolution,
    grid_points,
    load_displacement_field,
    resample_bold_run,
    resample_series,
    target_brain_mask,
    target_to_boldref,
)


def _smooth_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 2.5).astype(np.float32) * 100


def _write_itk_field(path, field_lps, affine):
    img = nib.Nifti1Image(field_lps[:, :, :, None, :].astype(np.float32), affine)
    img.header.set_intent("vector", (), "")
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def test_displacement_field_matches_ants(tmp_path):
    """Our reading of an ITK displacement field resamples like ants.apply_transforms."""
    shape = (30, 34, 28)
    affine = np.array([[2.0, 0, 0, -30], [0, 2.0, 0, -34], [0, 0, 2.0, -28], [0, 0, 0, 1]])
    moving = _smooth_volume(shape, seed=1)
    field = np.stack([ndimage.gaussian_filter(
        np.random.default_rng(k).standard_normal(shape), 4) * 20 for k in range(3)], axis=-1)
    warp = tmp_path / "warp.nii.gz"
    _write_itk_field(warp, field, affine)
    nib.save(nib.Nifti1Image(moving, affine), tmp_path / "moving.nii.gz")
    fixed_img = ants.image_read(str(tmp_path / "moving.nii.gz"))
    expected = ants.apply_transforms(
        fixed=fixed_img, moving=fixed_img, transformlist=[str(warp)], interpolator="linear"
    ).numpy()
    ras_field, field_affine = load_displacement_field(nib.load(warp))
    points = grid_points(shape, affine)
    ref_points = target_to_boldref(points, np.eye(4), ras_field, field_affine)
    ours = fill_grid(resample_series(moving, affine, ref_points, order=1), shape, None)
    inner = (slice(4, -4),) * 3
    assert np.abs(field).max() > 2.0  # a real deformation of more than a voxel
    assert np.corrcoef(ours[inner].ravel(), expected[inner].ravel())[0, 1] > 0.999
    assert np.abs(ours[inner] - expected[inner]).max() < 0.02 * np.abs(moving).max()


def test_itk_affine_to_ras_matches_ants_resampling(tmp_path):
    shape = (32, 32, 32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -31
    moving = _smooth_volume(shape, seed=2)
    nib.save(nib.Nifti1Image(moving, affine), tmp_path / "img.nii.gz")
    img = ants.image_read(str(tmp_path / "img.nii.gz"))
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    angle = np.deg2rad(8.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]])
    transform.set_parameters(np.concatenate([rot.ravel(), [3.0, -2.0, 1.5]]))
    transform.set_fixed_parameters([4.0, -3.0, 2.0])
    ants.write_transform(transform, str(tmp_path / "xfm.mat"))
    expected = ants.apply_transforms(fixed=img, moving=img,
                                     transformlist=[str(tmp_path / "xfm.mat")],
                                     interpolator="linear").numpy()
    matrix = itk_to_ras_matrix(tmp_path / "xfm.mat")
    ref_points = target_to_boldref(grid_points(shape, affine), matrix)
    ours = fill_grid(resample_series(moving, affine, ref_points, order=1), shape, None)
    inner = (slice(5, -5),) * 3
    assert np.abs(ours[inner] - expected[inner]).max() < 1e-3 * np.abs(moving).max()


def test_motion_matrices_are_applied_per_volume():
    """Resampling a shifted volume with its motion matrix gives back the reference."""
    shape = (24, 24, 24)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    ref = _smooth_volume(shape, seed=3)
    shift = np.eye(4)
    shift[:3, 3] = [3.0, 0.0, -3.0]  # one voxel in x and -z: exact on the grid
    moved = ndimage.shift(ref, (1, 0, -1), order=0)  # moved(y) = ref(y - shift)
    series = np.stack([ref, moved], axis=-1)
    out = resample_series(series, affine, grid_points(shape, affine),
                          np.stack([np.eye(4), shift]), order=1)
    back = fill_grid(out, shape, None)
    inner = (slice(2, -2),) * 3
    assert np.allclose(back[..., 1][inner], ref[inner], atol=1e-4)
    assert back.dtype == np.float32


def test_grid_at_resolution_covers_same_field_of_view():
    img = nib.Nifti1Image(np.zeros((100, 120, 90), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    shape, affine = grid_at_resolution(img, (3.0, 3.0, 3.0))
    assert shape == (34, 40, 30)
    assert np.allclose(np.diag(affine)[:3], 3.0)
    # first voxel centre lies one old voxel inside the edge of the old field of view
    assert np.allclose(affine[:3, 3], [1.0, 1.0, 1.0])


def test_target_brain_mask_thresholds_the_fraction_and_dilates_by_three_voxels():
    """One voxel above the threshold dilates (6-connected, 3 times) into the 63-voxel L1 ball."""
    shape, affine = (15, 15, 15), np.diag([2.0, 2.0, 2.0, 1.0])
    fraction = np.full(shape, 0.4, np.float32)  # below the threshold everywhere ...
    fraction[7, 7, 7] = 0.6  # ... but here
    brain, restrict = target_brain_mask(nib.Nifti1Image(fraction, affine), shape, affine)
    assert np.argwhere(brain).tolist() == [[7, 7, 7]]
    ijk = np.indices(shape) - 7
    assert np.array_equal(restrict, np.abs(ijk).sum(axis=0) <= 3)
    assert restrict.sum() == 63


def test_field_of_view_mask_keeps_points_whose_neighbours_all_lie_inside():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    x_vox = np.array([-1.0, -0.5, 0.0, 4.5, 9.0, 9.5, 10.0])
    points = affine[:3, :3] @ np.vstack([x_vox, np.full(7, 5.0), np.full(7, 5.0)])
    inside = field_of_view_mask((10, 10, 10), affine, points)
    assert inside.tolist() == [False, False, True, True, True, False, False]


def _shifted_run():
    rng = np.random.default_rng(7)
    bold = rng.standard_normal((8, 9, 10, 3)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return nib.Nifti1Image(bold, affine), bold, affine


def test_resample_bold_run_composes_coregistration_and_voxel_shifts():
    """Target = BOLD grid, anatomy one voxel off in x, a one-voxel shift along j: exact moves."""
    img, bold, affine = _shifted_run()
    anat2boldref = np.eye(4)
    anat2boldref[0, 3] = 2.0  # one voxel along x
    result = resample_bold_run(
        img, bold[..., 0], np.stack([np.eye(4)] * 3), anat2boldref, img,
        metadata={"RepetitionTime": 2.0}, repetition_time=2.0,
        vsm=np.ones(bold.shape[:3]), pe_direction="j", order=1)
    assert result.bold.shape == bold.shape and result.bold.dtype == np.float32
    assert np.allclose(result.bold[:-1, :-1], bold[1:, 1:], atol=1e-5)
    assert np.allclose(result.boldref[:-1, :-1], bold[1:, 1:, :, 0], atol=1e-5)
    covered = np.zeros(bold.shape[:3], bool)
    covered[:-1, :-1] = True  # the last x and y slabs sample outside the field of view
    assert np.array_equal(result.mask, covered)
    assert np.array_equal(result.affine, affine)


def test_resample_bold_run_restricts_to_the_dilated_target_mask():
    img, bold, affine = _shifted_run()
    brain = np.zeros(bold.shape[:3], np.float32)
    brain[4, 4, 5] = 1.0
    result = resample_bold_run(
        img, bold[..., 0], np.stack([np.eye(4)] * 3), np.eye(4), img,
        metadata={"RepetitionTime": 2.0}, repetition_time=2.0,
        target_mask=nib.Nifti1Image(brain, affine), order=1)
    restrict = np.abs(np.indices(brain.shape) - np.array([4, 4, 5])[:, None, None, None]
                      ).sum(axis=0) <= 3
    assert np.allclose(result.bold[restrict], bold[restrict], atol=1e-5)
    assert np.all(result.bold[~restrict] == 0)
    assert np.argwhere(result.mask).tolist() == [[4, 4, 5]]
