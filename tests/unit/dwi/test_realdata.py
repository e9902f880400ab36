"""Real acquisitions of ds-real-mini: corpus-callosum FA and direction, gradient checks."""

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.dwi.denoise import denoise_dwi
from brainscale.workflows.dwi.gradients import detect_shells, fsl_to_voxel_bvecs, read_bval_bvec
from brainscale.workflows.dwi.reference import brain_mask, mean_b0
from brainscale.workflows.dwi.tensor import fit_tensor

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _load(ds, sub, name):
    path = ds / f"sub-{sub}" / "dwi" / name
    img = nib.load(path)
    bvals, bvecs = read_bval_bvec(str(path).replace(".nii.gz", ".bval"),
                                  str(path).replace(".nii.gz", ".bvec"), img.shape[3], path)
    return img, bvals, fsl_to_voxel_bvecs(bvecs, img.affine)


@pytest.mark.parametrize("sub,name,shells", [
    ("02", "sub-02_dir-AP_dwi.nii.gz", [0, 2500]),
    ("03", "sub-03_dwi.nii.gz", [0, 1000]),
])
def test_corpus_callosum_is_anisotropic_and_left_right(ds_real_mini, sub, name, shells):
    img, bvals, bvecs = _load(ds_real_mini, sub, name)
    np.testing.assert_array_equal(detect_shells(bvals), shells)
    data, _ = denoise_dwi(np.asarray(img.dataobj, dtype=np.float32), bvals)
    mask = brain_mask(mean_b0(data, bvals))
    maps = fit_tensor(data, bvals, bvecs, mask)
    # world (RAS) direction of the principal eigenvector
    axes = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
    v1_world = maps["v1"] @ axes.T
    # mid-sagittal slab: voxels within 3 mm of the brain's centre along the left-right axis
    ijk = np.argwhere(mask)
    world = nib.affines.apply_affine(img.affine, ijk)
    centre_x = np.median(world[:, 0])
    slab = np.zeros(mask.shape, bool)
    near = np.abs(world[:, 0] - centre_x) <= 3.0
    slab[tuple(ijk[near].T)] = True
    fa_slab = maps["fa"][slab]
    assert np.percentile(fa_slab, 98) > 0.55
    bright = slab & (maps["fa"] > 0.45)
    left_right = np.abs(v1_world[bright][:, 0]) > 0.8
    assert bright.sum() > 10
    assert left_right.mean() > 0.5, left_right.mean()
    # white matter overall is clearly anisotropic
    assert 0.3 < maps["fa"][mask & (maps["fa"] > 0.2)].mean() < 0.7


def test_reversed_pe_pair_of_sub02_agrees_after_correction(ds_real_mini):
    import json

    from brainscale.workflows.dwi.sdc import estimate_pe_displacement, parse_phase_encoding, unwarp

    dwi = ds_real_mini / "sub-02" / "dwi"
    images, polarity = {}, {}
    for name in ("sub-02_dir-AP_dwi", "sub-02_dir-PA_dwi"):
        meta = json.loads((dwi / f"{name}.json").read_text())
        axis, sign = parse_phase_encoding(meta["PhaseEncodingDirection"])
        images[sign] = np.asarray(nib.load(dwi / f"{name}.nii.gz").dataobj)[..., 0].astype(float)
        polarity[sign] = axis
    assert polarity[1] == polarity[-1] == 1  # j and j-
    disp = estimate_pe_displacement(images[1], images[-1], pe_axis=1)
    plus, minus = unwarp(images[1], disp, 1, 1), unwarp(images[-1], disp, 1, -1)
    brain = (images[1] + images[-1]) > np.percentile(images[1] + images[-1], 60)
    before = np.corrcoef(images[1][brain], images[-1][brain])[0, 1]
    after = np.corrcoef(plus[brain], minus[brain])[0, 1]
    assert 0.5 < np.abs(disp).max() < 10  # a few voxels of EPI distortion, as expected at 3T
    assert after > before + 0.1
