import numpy as np
import pandas as pd
import pytest

from brainscale.workflows.anat.morphometry import global_measures, regional_measures
from brainscale.workflows.anat.segmentation import classify_tissues, discrete_segmentation


def _spheres(shape=(40, 40, 40), scale=1.0, voxel=1.0):
    """Nested spheres: WM r<8, GM 8<=r<11, CSF 11<=r<13 (radii in mm times scale)."""
    grid = np.indices(shape).astype(float) * voxel
    r = np.sqrt(((grid - (np.array(shape)[:, None, None, None] * voxel) / 2) ** 2).sum(0))
    labels = np.zeros(shape, np.uint8)
    labels[r < 13 * scale] = 1
    labels[r < 11 * scale] = 2
    labels[r < 8 * scale] = 3
    return labels


def test_gaussian_mixture_recovers_known_labels():
    truth = _spheres()
    rng = np.random.default_rng(1)
    means = np.array([0.0, 30.0, 60.0, 100.0])
    image = means[truth] + rng.normal(0, 6, truth.shape)
    mask = truth > 0
    priors = np.full((3,) + truth.shape, 1 / 3, np.float32)  # flat priors: intensities decide
    post = classify_tissues(image, priors, mask)
    labels = discrete_segmentation(post, mask)
    assert np.allclose(post[:, mask].sum(0), 1, atol=1e-5)
    assert (labels[mask] == truth[mask]).mean() > 0.97


def _partial_volume_phantom(size=64, supersample=4):
    """Nested spheres imaged at 1 mm: each voxel holds known CSF/GM/WM fractions."""
    fine = (np.indices((size * supersample,) * 3) + 0.5) / supersample
    r = np.sqrt(((fine - size / 2) ** 2).sum(0))
    labels = np.zeros(r.shape, np.uint8)
    labels[r < 26] = 1
    labels[r < 22] = 2
    labels[r < 19] = 3
    blocks = (size, supersample) * 3
    return np.stack([(labels == k).reshape(blocks).mean(axis=(1, 3, 5)) for k in (1, 2, 3)])


def test_mixed_classes_estimate_partial_volume_fractions_on_boundaries():
    fractions = _partial_volume_phantom()
    means = np.array([30.0, 70.0, 110.0])
    image = np.tensordot(means, fractions, axes=1)
    image += np.random.default_rng(0).normal(0, 5, image.shape)
    mask = fractions.sum(0) > 0.5
    priors = np.full(fractions.shape, 1 / 3, np.float32)
    boundary = mask & (fractions[1] > 0.2) & (fractions[1] < 0.8)
    errors = {}
    for name, mixtures in (("pure", ()), ("mixed", ((0, 1), (1, 2)))):
        post = classify_tissues(image, priors, mask, mixtures=mixtures)
        assert np.allclose(post[:, mask].sum(0), 1, atol=1e-5)
        errors[name] = np.abs(post[1][boundary] - fractions[1][boundary]).mean()
        gm_volume = post[1][mask].sum() / fractions[1][mask].sum()
        assert gm_volume == pytest.approx(1.0, abs=0.1)
    # a pure-class mixture gives boundary voxels wholly to one tissue (error ~0.3);
    # mixed classes share them by intensity
    assert errors["mixed"] < 0.15 < errors["pure"]


def test_mask_volume_scales_with_the_cube_of_a_linear_head_scaling():
    voxel = 0.5
    vols = []
    for scale in (1.0, 1.1):
        labels = _spheres((80, 80, 80), scale, voxel)
        tpms = np.stack([(labels == k).astype(np.float32) for k in (1, 2, 3)])
        vols.append(global_measures(tpms, labels > 0, np.zeros(labels.shape), voxel**3,
                                    etiv_mm3=1.5e6 * scale**3))
    ratio = vols[1]["brain_mask_volume_mm3"] / vols[0]["brain_mask_volume_mm3"]
    assert ratio == pytest.approx(1.1**3, rel=0.02)  # +33 %
    assert vols[0]["brain_mask_volume_mm3"] == pytest.approx(4 / 3 * np.pi * 13**3, rel=0.02)
    assert vols[0]["gm_volume_mm3"] == pytest.approx(4 / 3 * np.pi * (11**3 - 8**3), rel=0.03)
    assert vols[1]["etiv_mm3"] == pytest.approx(1.5e6 * 1.331)  # passed through as is
    assert vols[0]["tiv_mm3"] == vols[0]["brain_mask_volume_mm3"]  # deprecated alias


def test_regional_volume_and_thickness_of_a_shell():
    voxel = 0.5
    labels = _spheres((80, 80, 80), 1.0, voxel)
    gm = (labels == 2).astype(np.float32)
    thickness = gm * 3.0  # the true thickness of the 8-11 mm shell
    atlas = np.where(labels == 2, 7, 0)
    table = regional_measures(atlas, pd.DataFrame({"index": [7], "name": ["shell"]}), gm,
                              thickness, voxel**3)
    volume = 4 / 3 * np.pi * (11**3 - 8**3)
    assert table.loc[0, "gm_volume_mm3"] == pytest.approx(volume, rel=0.03)
    assert table.loc[0, "thickness_mean_mm"] == pytest.approx(3.0)
    # area is measured on meshes: tests/unit/anat/test_surfaces.py
