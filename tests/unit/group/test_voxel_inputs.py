"""Voxel inputs: MNI-space maps found, gathered into a memory map, masked and downsampled."""

from __future__ import annotations

import copy
import pickle

import nibabel as nib
import numpy as np
import pytest

from brainscale.errors import InputDataError
from brainscale.resources import get_template_mask
from brainscale.workflows.group.voxel_inputs import (
    VoxelData,
    block_downsample,
    downsampled_affine,
    find_voxel_maps,
    gather_voxel_maps,
    parse_voxel_kind,
    simulate_voxel_cohort,
    sphere,
)

AFFINE = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, -12], [0, 0, 2.0, -8], [0, 0, 0, 1]])
GM = "space-MNI152NLin2009aSym_res-2_label-GM_desc-modulated_probseg.nii.gz"


def _save(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), path)
    return path


def _tree(root, n=4, shape=(6, 8, 6), seed=0):
    rng = np.random.default_rng(seed)
    volumes = {}
    for i in range(n):
        volume = rng.uniform(0.1, 1.0, size=shape)
        _save(root / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_{GM}", volume)
        volumes[f"sub-{i:02d}"] = volume
    return volumes


def test_find_selects_the_kind_and_its_entities(tmp_path):
    _tree(tmp_path, n=3)
    _save(tmp_path / "sub-00" / "anat" / "sub-00_space-MNI152NLin2009aSym_label-WM_probseg.nii.gz",
          np.ones((6, 8, 6)))
    _save(tmp_path / "sub-00" / "anat" / "sub-00_label-GM_probseg.nii.gz", np.ones((6, 8, 6)))
    func = tmp_path / "sub-05" / "ses-a" / "func"
    for run, desc in ((1, "faces"), (2, "faces"), (1, "houses")):
        _save(func / f"sub-05_ses-a_task-x_run-{run}_space-MNI152NLin2009aSym_res-2_stat-z_"
                     f"desc-{desc}_statmap.nii.gz", np.ones((6, 8, 6)))
    maps = find_voxel_maps(tmp_path, "gm")
    assert list(maps["participant_id"]) == ["sub-00", "sub-01", "sub-02"]
    assert [len(p) for p in maps["paths"]] == [1, 1, 1]
    faces = find_voxel_maps(tmp_path, "zmap:desc=faces")
    assert list(faces["session_id"]) == ["ses-a"] and len(faces["paths"][0]) == 2
    assert parse_voxel_kind("zmap:desc=faces")[0] == "zmap_desc-faces"
    with pytest.raises(InputDataError, match="unknown voxel input"):
        parse_voxel_kind("pet")
    with pytest.raises(InputDataError, match="entity"):
        parse_voxel_kind("zmap:faces")


def test_gathered_rows_are_the_in_mask_voxels_of_each_map(tmp_path):
    volumes = _tree(tmp_path)
    mask = np.zeros((6, 8, 6), dtype=bool)
    mask[1:5, 2:7, 1:4] = True
    data = gather_voxel_maps(find_voxel_maps(tmp_path, "gm"), tmp_path / "group" / "gm",
                             mask=mask)
    assert isinstance(data.values, np.memmap) and data.values.dtype == np.float32
    for row, label in enumerate(data.labels):
        np.testing.assert_allclose(data.values[row], volumes[label][mask], rtol=1e-6)
    np.testing.assert_allclose(data.affine, AFFINE)
    reopened = VoxelData.load(tmp_path / "group" / "gm")
    assert list(reopened.labels) == ["sub-00", "sub-01", "sub-02", "sub-03"]
    back = reopened.to_image(reopened.values[2])
    np.testing.assert_allclose(back.get_fdata()[mask], volumes["sub-02"][mask], rtol=1e-6)
    assert back.get_fdata()[~mask].max() == 0
    assert copy.deepcopy(reopened) is reopened  # clone() shares the memory map
    assert reopened.__getstate__()["values"] is None  # pickles hold the path, not the values
    unpickled = pickle.loads(pickle.dumps(reopened))
    assert isinstance(unpickled.values, np.memmap)
    np.testing.assert_array_equal(unpickled.values, reopened.values)


def test_block_downsampling_averages_cubes_and_keeps_world_positions():
    volume = np.arange(4 * 6 * 4, dtype=np.float32).reshape(4, 6, 4)
    small = block_downsample(volume, 2)
    assert small.shape == (2, 3, 2)
    assert small[1, 2, 0] == pytest.approx(volume[2:4, 4:6, 0:2].mean())
    affine = downsampled_affine(AFFINE, 2)
    old_centres = [AFFINE @ [i, j, k, 1] for i in (2, 3) for j in (4, 5) for k in (0, 1)]
    np.testing.assert_allclose(affine @ [1, 2, 0, 1], np.mean(old_centres, axis=0))


def test_downsampled_gather_and_data_mask(tmp_path):
    volumes = _tree(tmp_path, shape=(6, 8, 6))
    for label in volumes:  # voxels outside a box are empty in every map
        path = tmp_path / label / "anat" / f"{label}_{GM}"
        volume = volumes[label].copy()
        volume[:2] = 0.0
        _save(path, volume)
        volumes[label] = volume
    data = gather_voxel_maps(find_voxel_maps(tmp_path, "gm"), tmp_path / "g2", mask="data",
                             downsample=2)
    assert data.mask.shape == (3, 4, 3)
    assert not data.mask[0].any() and data.mask[1:].all()
    expected = block_downsample(volumes["sub-01"].astype(np.float32), 2)[data.mask]
    np.testing.assert_allclose(data.values[1], expected, rtol=1e-6)
    np.testing.assert_allclose(data.affine, downsampled_affine(AFFINE, 2))


def test_template_mask_on_the_template_grid(tmp_path):
    template = get_template_mask(2)
    ones = np.ones(template.shape, dtype=np.float32)
    for i in range(2):
        _save(tmp_path / f"sub-{i}" / "anat" / f"sub-{i}_{GM}", ones, template.affine)
    data = gather_voxel_maps(find_voxel_maps(tmp_path, "gm"), tmp_path / "t")
    assert data.values.shape == (2, int((np.asarray(template.dataobj) > 0).sum()))


def test_a_map_on_another_grid_is_resampled_with_a_note(tmp_path):
    _save(tmp_path / "sub-0" / "anat" / f"sub-0_{GM}", np.full((6, 8, 6), 0.5))
    finer = AFFINE.copy()
    finer[:3, :3] /= 2
    _save(tmp_path / "sub-1" / "anat" / f"sub-1_{GM}", np.full((12, 16, 12), 0.5), finer)
    mask = np.zeros((6, 8, 6), dtype=bool)
    mask[1:5, 1:7, 1:5] = True
    data = gather_voxel_maps(find_voxel_maps(tmp_path, "gm"), tmp_path / "r", mask=mask)
    np.testing.assert_allclose(data.values[1], 0.5, rtol=1e-5)  # a constant stays constant
    assert any("resampled" in note for note in data.notes)


def test_an_unreadable_map_is_named(tmp_path):
    _tree(tmp_path, n=2)
    bad = tmp_path / "sub-09" / "anat" / f"sub-09_{GM}"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputDataError, match="sub-09"):
        gather_voxel_maps(find_voxel_maps(tmp_path, "gm"), tmp_path / "b", mask="data")


def test_simulated_cohort_has_the_planted_effect_and_ageing():
    data, participants, region = simulate_voxel_cohort(
        400, (12, 14, 12), effect=0.8, site_shift=0.0, noise_sd=0.5, seed=0)
    patient = (participants["diagnosis"] == "patient").to_numpy()
    in_region = region[data.mask]
    difference = data.values[~patient].mean(0) - data.values[patient].mean(0)
    assert difference[in_region].mean() == pytest.approx(0.8, abs=0.1)
    assert abs(difference[~in_region].mean()) < 0.1
    assert sphere((5, 5, 5), (2, 2, 2), 1.0).sum() == 7
    aged, people, _ = simulate_voxel_cohort(300, (10, 12, 10), atrophy_rate=0.005,
                                            site_shift=0.0, noise_sd=0.1, seed=1)
    slope = np.polyfit(people["age"], aged.values.mean(1), 1)[0]
    baseline = aged.values.mean()  # about 1 at the mean age
    assert slope / baseline == pytest.approx(-0.005, rel=0.1)


def test_the_group_options_name_voxel_kinds_and_image_models(tmp_path):
    from brainscale.bids_app.cli import parse_args
    from brainscale.errors import UsageError

    config = parse_args([str(tmp_path), str(tmp_path / "out"), "group", "--voxel-inputs", "gm",
                         "zmap:desc=faces", "--image-models", "sfcn", "--voxel-downsample", "2"])
    assert config.group.voxel_inputs == ("gm", "zmap:desc=faces")
    assert config.group.image_models == ("sfcn",) and config.group.voxel_downsample == 2
    assert parse_args([str(tmp_path), str(tmp_path / "o"), "group"]).group.voxel_inputs == ()
    with pytest.raises(UsageError, match="voxel-inputs"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--voxel-inputs", "pet"])
    with pytest.raises(UsageError, match="image-models"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--image-models", "unet"])
