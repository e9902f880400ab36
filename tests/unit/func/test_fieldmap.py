"""Field-map distortion correction: masks, field on the BOLD grid, unwarping, the whole chain."""

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainscale.workflows.func.fieldmap import (
    correct_with_fieldmap,
    field_on_boldref,
    magnitude_masks,
    unwarp_boldref,
)
from brainscale.workflows.func.sdc import voxel_shift_map

SHAPE = (24, 26, 20)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _ball(radius=7.0):
    centre = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    return ((np.indices(SHAPE) - centre) ** 2).sum(axis=0) <= radius**2


def _six_neighbours_inside(mask):
    """Voxels of ``mask`` whose six face neighbours all belong to it (erosion, by hand)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return inner


def test_magnitude_masks_find_the_brain_and_its_reliable_core():
    ball = _ball()
    magnitude = np.where(ball, 1000.0, 5.0).astype(np.float32)
    brain, reliable = magnitude_masks(nib.Nifti1Image(magnitude, AFFINE))
    brain = np.asarray(brain.dataobj) > 0
    # nilearn's EPI mask (opening, hole filling) covers the ball and stays near it
    assert brain[ball].all() and not brain[~ndimage.binary_dilation(ball, iterations=3)].any()
    assert np.array_equal(reliable, _six_neighbours_inside(brain))
    assert 0 < reliable.sum() < brain.sum()


def test_field_on_boldref_samples_a_linear_field_through_the_transform():
    """Trilinear sampling of a linear field is exact: f_ref(x) = f(x + t)."""
    field_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    world = np.einsum("ij,j...->i...", field_affine[:3, :3], np.indices((40, 40, 40)).astype(float))
    field = 2.0 * world[0] + 3.0 * world[1] - world[2] + 5.0
    ref_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    ref_affine[:3, 3] = 10.0
    translation = np.array([1.5, -2.0, 3.0])
    boldref2fmap = np.eye(4)
    boldref2fmap[:3, 3] = translation
    ref_shape = (12, 12, 12)
    sampled = field_on_boldref(field, field_affine, ref_shape, ref_affine, boldref2fmap)
    ref_world = np.einsum("ij,j...->i...", ref_affine[:3, :3],
                          np.indices(ref_shape).astype(float)) + ref_affine[:3, 3, None, None, None]
    moved = ref_world + translation[:, None, None, None]
    truth = 2.0 * moved[0] + 3.0 * moved[1] - moved[2] + 5.0
    assert sampled.shape == ref_shape and sampled.dtype == np.float32
    assert np.allclose(sampled, truth, atol=1e-3)


def test_unwarp_boldref_samples_at_the_readout_scaled_shift():
    """50 Hz over a 40 ms readout is 2 voxels; PE "j-" makes it -2: x shows at x - 2 along j."""
    rng = np.random.default_rng(0)
    boldref = rng.standard_normal(SHAPE).astype(np.float32)
    mask = np.zeros(SHAPE, np.float32)
    mask[8:16, 10:18, 6:14] = 1.0
    vsm, axis = voxel_shift_map(np.full(SHAPE, 50.0), 0.04, "j-")
    assert axis == 1 and np.allclose(vsm, -2.0)
    assert np.allclose(voxel_shift_map(np.full(SHAPE, 50.0), 0.08, "j-")[0], -4.0)
    unwarped, unwarped_mask = unwarp_boldref(boldref, mask, AFFINE, vsm, axis)
    assert np.allclose(unwarped[:, 2:], boldref[:, :-2], atol=1e-4)
    assert np.all(unwarped[:, :2] == 0)  # sampled outside the field of view
    expected_mask = np.zeros(SHAPE, bool)
    expected_mask[8:16, 12:20, 6:14] = True
    assert np.array_equal(unwarped_mask, expected_mask)


def test_correct_with_fieldmap_recovers_a_known_field(tmp_path):
    """Magnitude = BOLD reference (registration ~ identity), a linear field along j."""
    ball = _ball(8.0)
    rng = np.random.default_rng(1)
    texture = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5)
    image = np.where(ball, 800.0 + 300.0 * texture / np.abs(texture).max(), 2.0)
    image = ndimage.gaussian_filter(image, 0.7).astype(np.float32)
    field_hz = 4.0 * (np.indices(SHAPE)[1] - 12.5)  # -50 .. 50 Hz
    te1, te2 = 0.00492, 0.00738
    phasediff = 2 * np.pi * field_hz * (te2 - te1)  # below pi: no wrapping to undo
    img = nib.Nifti1Image(image, AFFINE)
    mask_img = nib.Nifti1Image(ball.astype(np.uint8), AFFINE)
    corrected = correct_with_fieldmap(
        img, nib.Nifti1Image(phasediff, AFFINE), te1, te2, img, mask_img, 0.03, "j",
        work_dir=tmp_path, seed=0)
    core = _six_neighbours_inside(_six_neighbours_inside(ball))
    truth = field_hz - np.median(field_hz[_six_neighbours_inside(ball)])
    assert np.abs(corrected.fieldmap_hz[core] - truth[core]).max() < 3.0
    assert np.allclose(corrected.vsm, corrected.fieldmap_hz * 0.03)
    assert corrected.boldref.shape == SHAPE and corrected.mask.dtype == bool
    assert (tmp_path / "boldref2fmap.txt").exists()
