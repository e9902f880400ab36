"""Registration brings an image deformed by a known affine back onto the template."""

import ants
import nibabel as nib
import nibabel.processing
import numpy as np
import pytest

from brainscale.resources import get_template, get_template_mask
from workflows.anat.images import to_ants, to_nibabel
from workflows.anat.normalization import (
    apply_displacement,
    displacement_ras,
    register_brain_to_template,
)


def _known_affine():
    angle = np.radians(6.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rot * 1.08
    matrix[:3, 3] = [4.0, -3.0, 5.0]
    return matrix  # template point x -> subject point A @ x


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reg")
    template = to_nibabel(ants.resample_image(to_ants(get_template(2)), (3, 3, 3), False, 0))
    truth = _known_affine()
    # the "subject": the template seen through the known affine, on a shifted 3 mm grid
    subj_affine = template.affine.copy()
    subj_affine[:3, 3] += [-6.0, 3.0, -9.0]
    subj_grid = nib.Nifti1Image(np.zeros(template.shape, np.float32), subj_affine)
    from scipy import ndimage

    # subject(y) = template(A^-1 y): sample the template at A^-1 y for each subject voxel y
    to_tpl_vox = np.linalg.inv(template.affine) @ np.linalg.inv(truth) @ subj_affine
    subject = ndimage.affine_transform(template.get_fdata(), to_tpl_vox, order=1)
    subject_img = nib.Nifti1Image(subject.astype(np.float32), subj_affine)
    subject_img.header.set_xyzt_units("mm")
    del subj_grid
    fwd, inv = register_brain_to_template(to_ants(subject_img), to_ants(template),
                                          f"{tmp}/t_", seed=1)
    return template, subject_img, truth, fwd, inv


def test_forward_field_matches_the_known_transform(registered):
    template, _, truth, fwd, _ = registered
    vec, affine = displacement_ras(fwd)
    mask = nib.processing.resample_from_to(get_template_mask(2), (vec.shape[:3], affine),
                                           order=0).get_fdata() > 0
    xyz = np.indices(vec.shape[:3]).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    mapped = xyz + vec.reshape(-1, 3)
    expected = xyz @ truth[:3, :3].T + truth[:3, 3]
    error = np.linalg.norm(mapped - expected, axis=1)[mask.ravel()]
    print(f"residual error: mean {error.mean():.2f} mm, 95th pct {np.percentile(error, 95):.2f}")
    assert error.mean() < 1.5  # half a voxel at 3 mm
    assert np.percentile(error, 95) < 3.0


def test_warped_brain_mask_overlaps_the_template_mask(registered):
    template, subject, _, fwd, inv = registered
    mask = nib.processing.resample_from_to(get_template_mask(2), template, order=0)
    subject_mask = apply_displacement(mask, subject, inv, interpolation="nearestNeighbor")
    back = apply_displacement(subject_mask, template, fwd, interpolation="nearestNeighbor")
    a, b = mask.get_fdata() > 0.5, back.get_fdata() > 0.5
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice >= 0.95


@pytest.mark.slow
def test_full_head_normalization_recovers_a_known_affine(tmp_path):
    """Rigid head alignment + brain extraction + SyN on a synthetic head (pseudo-head)."""
    from scipy import ndimage

    from workflows.anat.brain_extraction import pseudo_head_template
    from workflows.anat.normalization import normalize_head_to_template

    head = pseudo_head_template(2)
    truth = _known_affine()
    subj_affine = head.affine.copy()
    to_tpl_vox = np.linalg.inv(head.affine) @ np.linalg.inv(truth) @ subj_affine
    data = ndimage.affine_transform(head.get_fdata(), to_tpl_vox, order=1) * 1000
    subject = nib.Nifti1Image(data.astype(np.float32), subj_affine)
    subject.header.set_xyzt_units("mm")
    fwd, _ = normalize_head_to_template(subject, f"{tmp_path}/h_", seed=1)
    vec, affine = displacement_ras(fwd)
    mask = nib.processing.resample_from_to(get_template_mask(2), (vec.shape[:3], affine),
                                           order=0).get_fdata() > 0
    xyz = np.indices(vec.shape[:3]).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    error = np.linalg.norm(xyz + vec.reshape(-1, 3) - (xyz @ truth[:3, :3].T + truth[:3, 3]),
                           axis=1)[mask.ravel()]
    print(f"full-head residual error: mean {error.mean():.2f} mm")
    assert error.mean() < 2.0
