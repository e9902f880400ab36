"""Jacobian modulation preserves the GM volume through a known scaling warp."""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.anat.images import to_ants
from brainscale.workflows.anat.normalization import apply_displacement
from brainscale.workflows.anat.vbm import jacobian_determinant, modulated_gm


def _scaling_field(reference: nib.Nifti1Image, scale: float, centre_lps, path) -> str:
    """Displacement field u(x) = (scale - 1)(x - centre): template point -> native point."""
    ref = to_ants(reference)
    index = np.indices(ref.shape, dtype=np.float64).reshape(3, -1)
    direction, spacing = np.asarray(ref.direction), np.asarray(ref.spacing)
    points = np.asarray(ref.origin)[:, None] + direction @ (spacing[:, None] * index)
    vectors = ((scale - 1.0) * (points - np.asarray(centre_lps)[:, None])).T
    field = ants.from_numpy(vectors.reshape(*ref.shape, 3).astype(np.float32),
                            origin=ref.origin, spacing=ref.spacing, direction=ref.direction,
                            has_components=True)
    ants.image_write(field, str(path))
    return str(path)


def test_modulated_gm_keeps_the_native_gm_volume(tmp_path):
    # native: 1 mm grid with a GM ball of radius 12 mm; template: 2 mm grid
    native_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    native_affine[:3, 3] = -32.0
    grid = np.indices((64, 64, 64)).astype(float) - 32.0 + 0.0
    gm = (np.sqrt((grid**2).sum(axis=0)) <= 12.0).astype(np.float32)
    native = nib.Nifti1Image(gm, native_affine)
    template_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    template_affine[:3, 3] = -40.0
    template = nib.Nifti1Image(np.zeros((40, 40, 40), dtype=np.float32), template_affine)
    scale = 1.25  # the native head is 25 % larger than the template along every axis
    field = _scaling_field(template, scale, (0.0, 0.0, 0.0), tmp_path / "fwd.nii.gz")
    determinant = jacobian_determinant(field, template)
    assert np.median(determinant) == pytest.approx(scale**3, rel=1e-3)
    modulated = modulated_gm(native, field, template)
    native_volume = gm.sum() * 1.0
    modulated_volume = np.asarray(modulated.dataobj).sum() * 8.0
    assert modulated_volume == pytest.approx(native_volume, rel=0.02)
    unmodulated = np.asarray(apply_displacement(native, template, field).dataobj).sum() * 8.0
    assert unmodulated == pytest.approx(native_volume / scale**3, rel=0.02)


def test_field_finer_than_the_output_grid_gives_the_volume_too(tmp_path):
    """A 1 mm field (SyN at 1 mm) modulates a 2 mm output: determinant on the output grid."""
    native_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    native_affine[:3, 3] = -32.0
    grid = np.indices((64, 64, 64)).astype(float) - 32.0
    gm = (np.sqrt((grid**2).sum(axis=0)) <= 12.0).astype(np.float32)
    native = nib.Nifti1Image(gm, native_affine)
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    fine_affine[:3, 3] = -40.0
    fine = nib.Nifti1Image(np.zeros((80, 80, 80), dtype=np.float32), fine_affine)
    template_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    template_affine[:3, 3] = -40.0
    template = nib.Nifti1Image(np.zeros((40, 40, 40), dtype=np.float32), template_affine)
    scale = 1.25
    field = _scaling_field(fine, scale, (0.0, 0.0, 0.0), tmp_path / "fwd.nii.gz")
    determinant = jacobian_determinant(field, template)
    assert determinant.shape == template.shape
    assert np.median(determinant) == pytest.approx(scale**3, rel=1e-3)
    modulated_volume = np.asarray(modulated_gm(native, field, template).dataobj).sum() * 8.0
    assert modulated_volume == pytest.approx(gm.sum(), rel=0.02)
