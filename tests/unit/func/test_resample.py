import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from workflows.func.registration import itk_to_ras_matrix
from workflows.func.resample import (
    fill_grid,
    grid_at_resolution,
    grid_points,
    load_displacement_field,
    resample_series,
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
