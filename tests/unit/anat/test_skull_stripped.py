"""Pre-skull-stripped inputs are recognised from the image or from the sidecar.

Phantoms of known anatomy: a head (brain, dark skull, bright scalp, noisy background)
and the same brain stripped by a provider (background exactly 0, no scalp or skull).
"""

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.anat.brain_extraction import (
    detect_skull_stripped,
    skull_stripped_status,
    stripped_brain_mask,
)


def _phantom(stripped: bool, voxel: float = 2.0, pad: int = 0, noise: float = 3.0):
    """Ellipsoidal brain (semi-axes 70/85/60 mm: 1.50 l) inside skull and scalp shells."""
    shape = np.array([130, 150, 130]) * 2 // int(2 * voxel)
    centre = (shape - 1) / 2 * voxel
    xyz = np.indices(tuple(shape)).transpose(1, 2, 3, 0) * voxel - centre
    radius = np.sqrt(((xyz / np.array([70.0, 85.0, 60.0])) ** 2).sum(-1))
    data = np.zeros(tuple(shape), np.float32)
    data[radius < 1.0] = 80.0  # brain
    if not stripped:
        data[(radius >= 1.08) & (radius < 1.15)] = 10.0  # skull
        data[(radius >= 1.15) & (radius < 1.35)] = 120.0  # scalp fat: 3.7 l head
        data += np.abs(np.random.default_rng(0).normal(0, noise, data.shape)).astype(np.float32)
    data = np.pad(data, pad)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = -centre - pad * voxel
    return nib.Nifti1Image(data, affine)


@pytest.mark.parametrize("noise", [3.0, 0.0])
def test_a_head_is_not_taken_for_a_stripped_brain(noise):
    """Noisy background, or a zero background (defaced, zero-filled) around a head."""
    stripped, reason = detect_skull_stripped(_phantom(stripped=False, noise=noise))
    assert not stripped, reason


@pytest.mark.parametrize("voxel,pad", [(2.0, 0), (1.0, 0), (2.0, 15)])
def test_a_stripped_brain_is_detected_and_its_mask_is_the_brain(voxel, pad):
    img = _phantom(stripped=True, voxel=voxel, pad=pad)
    stripped, reason = detect_skull_stripped(img)
    assert stripped, reason
    volume = stripped_brain_mask(img).sum() * voxel**3
    truth = 4 / 3 * np.pi * 70 * 85 * 60  # 1.50 l
    assert volume == pytest.approx(truth, rel=0.03)


def test_the_sidecar_field_wins_over_the_image():
    head = _phantom(stripped=False)
    assert skull_stripped_status(head, {"SkullStripped": True})[0]
    assert "sidecar" in skull_stripped_status(head, {"SkullStripped": True})[1]
    brain = _phantom(stripped=True)
    assert not skull_stripped_status(brain, {"SkullStripped": False})[0]
    detected, evidence = skull_stripped_status(brain, {"SkullStripped": "n/a"})
    assert detected and "detected" in evidence


@pytest.mark.realdata
@pytest.mark.slow
def test_real_inputs_are_classified(shared_data):
    """ds002748 was stripped by its providers; ds-real-mini holds full heads."""
    from brainscale.workflows.anat.conform import conform_t1w

    cases = {p: True for p in sorted((shared_data / "ds002748-mini").glob("sub-*/anat/*_T1w.nii.gz"))}
    cases.update({p: False for p in sorted((shared_data / "ds-real-mini").glob(
        "sub-*/anat/*_T1w.nii.gz"))})
    if not cases:
        pytest.skip("no real T1w found")
    for path, truth in cases.items():
        img, _ = conform_t1w(nib.load(path), str(path))
        stripped, reason = detect_skull_stripped(img)
        assert stripped == truth, (path.name, reason)
