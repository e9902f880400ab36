"""Volumes follow known changes of a real head; the same seed gives the same bits (slow).

ds-real-mini sub-02 (a real 2 mm head) is changed in ways whose effect on every volume
is known exactly:

* stored with 10 % larger voxels: every length x1.1, every volume x1.331 (within 3 %);
* padded with empty voxels, stored in a flipped orientation, stored as float32 with
  intensities rescaled: no volume changes (within 1 %);
* processed twice with the same seed: bit-identical transforms and tissue maps.
"""

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.anat.bias import correct_bias_field
from brainscale.workflows.anat.brain_extraction import detect_skull_stripped
from brainscale.workflows.anat.conform import conform_t1w
from brainscale.workflows.anat.images import voxel_volume
from brainscale.workflows.anat.interfaces import embedded_template
from brainscale.workflows.anat.normalization import (
    estimated_intracranial_volume,
    normalize_to_template,
    syn_resolution,
)
from brainscale.workflows.anat.prior_segmentation import segment_with_template_priors

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SCALE = 1.1


def anatomical_volumes(raw: nib.Nifti1Image, prefix: str, seed: int = 0):
    """Conform, N4, normalize and segment; return volumes (mm^3) and the raw results."""
    t1w, _ = conform_t1w(raw)
    stripped, _ = detect_skull_stripped(t1w)
    corrected, _ = correct_bias_field(t1w)
    norm = normalize_to_template(corrected, embedded_template(2),
                                 embedded_template(syn_resolution(corrected)), prefix,
                                 seed=seed, skull_stripped=stripped)
    res = 1 if min(corrected.header.get_zooms()[:3]) < 1.5 else 2
    post, mask = segment_with_template_priors(corrected, norm.inverse, embedded_template(res),
                                              skull_stripped=stripped)
    vox = voxel_volume(corrected)
    volumes = {"brain_mask": float(mask.sum()) * vox,
               **{k: float(post[i].sum(dtype=np.float64)) * vox
                  for i, k in enumerate(("csf", "gm", "wm"))},
               "etiv": estimated_intracranial_volume(
                   norm.affine, embedded_template(1).intracranial_volume_mm3)}
    return volumes, norm, post


def _variants(img: nib.Nifti1Image) -> dict[str, nib.Nifti1Image]:
    data = np.asarray(img.dataobj)
    scaled = img.affine.copy()
    scaled[:3, :3] *= SCALE
    pad = 12
    padded = img.affine.copy()
    padded[:3, 3] -= img.affine[:3, :3] @ np.full(3, pad)
    flipped = img.affine.copy()
    flipped[:3, 0] *= -1
    flipped[:3, 3] = img.affine[:3, :3] @ np.array([data.shape[0] - 1, 0, 0]) + img.affine[:3, 3]
    rescaled = (data.astype(np.float32) * (1000.0 / float(data.max()))).astype(np.float32)
    return {
        "scaled": nib.Nifti1Image(data, scaled),
        "padded": nib.Nifti1Image(np.pad(data, pad), padded),
        "flipped": nib.Nifti1Image(data[::-1], flipped),
        "float32": nib.Nifti1Image(rescaled, img.affine),
    }


class _Runs(dict):
    """The pipeline's results per variant, computed the first time a test asks."""

    def __init__(self, raw, tmp):
        super().__init__()
        self.raw, self.tmp = raw, tmp

    def __missing__(self, name):
        img = self.raw if name in ("original", "repeat") else _variants(self.raw)[name]
        self[name] = anatomical_volumes(img, f"{self.tmp}/{name}_")
        print(name, {k: round(v / 1000, 1) for k, v in self[name][0].items()})
        return self[name]


@pytest.fixture(scope="module")
def runs(ds_real_mini, tmp_path_factory):
    raw = nib.load(ds_real_mini / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    raw = nib.Nifti1Image(np.asarray(raw.dataobj), raw.affine)
    return _Runs(raw, tmp_path_factory.mktemp("equivariance"))


def test_same_seed_gives_bit_identical_results(runs):
    _, first_norm, first_post = runs["original"]
    _, second_norm, second_post = runs["repeat"]
    for a, b in ((first_norm.forward, second_norm.forward),
                 (first_norm.inverse, second_norm.inverse)):
        assert np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))
    assert np.array_equal(first_post, second_post)


def test_volumes_scale_with_the_cube_of_a_known_scaling(runs):
    original, scaled = runs["original"][0], runs["scaled"][0]
    for key in original:
        assert scaled[key] / original[key] == pytest.approx(SCALE**3, rel=0.03), key


@pytest.mark.parametrize("variant", ["padded", "flipped", "float32"])
def test_volumes_do_not_depend_on_storage(runs, variant):
    original, changed = runs["original"][0], runs[variant][0]
    for key in original:
        assert changed[key] == pytest.approx(original[key], rel=0.01), key
