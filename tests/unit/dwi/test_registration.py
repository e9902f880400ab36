"""Atlases and tissue maps brought into diffusion space through a known displacement."""

import ants
import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.dwi.registration import register_atlases_to_dwi

from .conftest import smooth_s0

SHAPE = (32, 32, 24)
ZOOM = 2.0
SHIFT_MM = np.array([4.0, -2.0, 2.0])  # the anatomy's grid sits this far from the DWI's


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """DWI reference, and a T1w/template with the same anatomy on a translated grid.

    The labels and tissue maps are drawn on the T1w's voxels, so brought into diffusion
    space they must land on the same voxel indices again.
    """
    root = tmp_path_factory.mktemp("registration")
    s0, mask, grid, centre = smooth_s0(SHAPE, seed=5)
    dwi_affine = np.diag([ZOOM, ZOOM, ZOOM, 1.0])
    anat_affine = dwi_affine.copy()
    anat_affine[:3, 3] = SHIFT_MM
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[mask & (grid[0] < centre[0])] = 1
    labels[mask & (grid[0] >= centre[0])] = 2
    labels[mask & (grid[2] > centre[2] + 3)] = 3
    wm = (labels == 1).astype(np.float32)
    files = {}
    for name, data, affine in (
        ("b0", s0, dwi_affine),
        ("mask", mask, dwi_affine),
        ("anat", s0, anat_affine),
        ("anat_mask", mask, anat_affine),
        ("atlas", labels, anat_affine),
        ("wm", wm, anat_affine),
    ):
        files[name] = str(root / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32 if name != "atlas" else np.int16), affine), files[name])
    identity = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    files["std2anat"] = str(root / "std2anat.mat")
    ants.write_transform(identity, files["std2anat"])
    return root, files, labels, wm, mask


def _agreement(result, labels, mask):
    return np.mean(np.asarray(result.dataobj)[mask] == labels[mask])


def test_through_the_t1w(scene):
    root, files, labels, wm, mask = scene
    result = register_atlases_to_dwi(
        files["b0"], files["mask"], [files["atlas"]], str(root / "t1w_"),
        t1w_file=files["anat"], t1w_mask_file=files["anat_mask"],
        t1w_tpm_files=[files["wm"]], std2anat_xfm=files["std2anat"],
    )
    assert result.transforms == [result.dwi2anat_xfm]
    assert "T1w" in result.meta["AtlasRegistration"]
    (atlas,) = result.atlases
    assert atlas.get_data_dtype() == np.int32
    assert _agreement(atlas, labels, mask) > 0.95
    (tpm,) = result.tpms
    assert np.abs(tpm.get_fdata() - wm)[mask].mean() < 0.05


def test_straight_to_the_template(scene):
    root, files, labels, _, mask = scene
    result = register_atlases_to_dwi(
        files["b0"], files["mask"], [files["atlas"]], str(root / "tpl_"),
        template_file=files["anat"], template_mask_file=files["anat_mask"],
    )
    assert result.dwi2anat_xfm is None and result.tpms == []
    assert len(result.transforms) == 2
    assert result.meta["AtlasRegistration"].startswith("no T1w")
    assert _agreement(result.atlases[0], labels, mask) > 0.95
