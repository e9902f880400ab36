"""Synthetic data factory: the written images agree with their stored ground truth."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale import resources
from brainscale.bids_app.synth import SynthSpec, generate_dataset, sample


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    truths = generate_dataset(root, SynthSpec(subjects=2, sites=2, seed=3, bold_volumes=24,
                                              directions=20))
    return root, truths


def test_participants_table_and_layout(dataset):
    root, truths = dataset
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "site", "age", "sex", "diagnosis"]
    assert sorted(table["site"]) == ["site1", "site2"]
    assert set(table["diagnosis"]) <= {"control", "patient"}
    from brainscale.bids_app.bids_index import validate_dataset

    assert validate_dataset(root) == []


def test_t1w_is_the_template_under_the_stored_transform(dataset):
    root, truths = dataset
    truth = truths[0]
    img = nib.load(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    template = resources.get_template(2)
    matrix = np.array(truth.template_to_subject)
    back = sample(img, template.shape, template.affine, matrix)
    wrong = sample(img, template.shape, template.affine, np.eye(4))
    reference = template.get_fdata()
    brain = resources.get_template_mask(2).get_fdata() > 0
    r_true = np.corrcoef(back[brain], reference[brain])[0, 1]
    r_wrong = np.corrcoef(wrong[brain], reference[brain])[0, 1]
    assert r_true > 0.9 > r_wrong + 0.05
    assert truth.volumes_mm3["TIV"] == pytest.approx(
        resources.get_template_mask(1).get_fdata().sum() * truth.scale**3)


def test_bold_metadata_and_non_steady_state(dataset):
    root, _ = dataset
    img = nib.load(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    meta = json.loads((root / "sub-01" / "func" / "sub-01_task-rest_bold.json").read_text())
    assert img.shape[3] == 24 and img.header.get_zooms()[3] == meta["RepetitionTime"]
    timing = np.array(meta["SliceTiming"])
    assert timing.size == img.shape[2] and timing.min() == 0 and timing.max() < meta["RepetitionTime"]
    means = img.get_fdata().reshape(-1, img.shape[3]).mean(0)
    assert means[:2].min() > 1.4 * np.median(means[2:])
    signals = pd.read_csv(root / "sourcedata/truth/sub-01/sub-01_task-rest_bold_regionsignals.tsv",
                          sep="\t")
    assert signals.shape == (24, 83)


def test_dwi_tensor_fit_recovers_truth_with_fsl_bvecs(dataset):
    from dipy.core.gradients import gradient_table
    from dipy.io import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel

    root, _ = dataset
    folder = root / "sub-02" / "dwi"
    img = nib.load(folder / "sub-02_dwi.nii.gz")
    bvals, bvecs = read_bvals_bvecs(str(folder / "sub-02_dwi.bval"), str(folder / "sub-02_dwi.bvec"))
    assert bvals.size == img.shape[3] == 22 and np.allclose(np.linalg.norm(bvecs[bvals > 0], axis=1), 1)
    truth = root / "sourcedata" / "truth" / "sub-02"
    fa_true = nib.load(truth / "sub-02_dwi_param-FA.nii.gz").get_fdata()
    v1_world = nib.load(truth / "sub-02_dwi_param-V1.nii.gz").get_fdata()
    mask = fa_true > 0.6
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(img.get_fdata()[mask])
    assert np.median(np.abs(fit.fa - fa_true[mask])) < 0.05
    # dipy's eigenvectors live in voxel axes; the truth in world axes (LAS grid: flip x).
    v1_voxel = v1_world[mask] @ np.linalg.inv(img.affine[:3, :3] / 3.0).T
    cosine = np.abs(np.sum(fit.evecs[..., 0] * v1_voxel, axis=1))
    assert np.median(np.degrees(np.arccos(np.clip(cosine, 0, 1)))) < 10


def test_head_motion_truth_is_realistic_and_about_the_fov_centre(dataset):
    """Rotations are drawn in degrees (<= 1 degree), and the estimator recovers all six.

    Resting adults move ~0.1-0.2 mm per volume (mean FD; Power et al. 2014, NeuroImage
    84:320); rigid realignment is accurate to about a tenth of a mm and of a degree on
    simulated motion (Oakes et al. 2005, NeuroImage 28:529).
    """
    from brainscale.bids_app.synth import head_motion, motion_matrix
    from brainscale.workflows.func.confounds import framewise_displacement
    from brainscale.workflows.func.motion import estimate_head_motion, fov_center
    from brainscale.workflows.func.reference import compute_bold_mask, compute_boldref

    walk = head_motion(np.random.default_rng(0), 200)
    assert np.abs(walk[:, :3]).max() <= 1.0 and np.rad2deg(np.abs(walk[:, 3:])).max() <= 1.0
    assert np.rad2deg(np.abs(walk[:, 3:])).max() > 0.2  # drawn in degrees, not a rounding
    assert 0.03 < np.nanmean(framewise_displacement(walk)) < 0.3
    centre = np.array([10.0, -20.0, 30.0])
    moved = motion_matrix(np.r_[0.5, 0, 0, 0, 0, np.deg2rad(1.0)], centre)
    assert np.allclose(moved[:3, :3] @ centre + moved[:3, 3], centre + [0.5, 0, 0])

    root, _ = dataset
    name = "sub-01_task-rest_bold"
    img = nib.load(root / "sub-01" / "func" / f"{name}.nii.gz")
    meta = json.loads((root / "sourcedata" / "truth" / "sub-01" / f"{name}_truth.json")
                      .read_text())
    assert np.allclose(meta["motion_centre_mm"], fov_center(img.shape, img.affine))
    truth = pd.read_csv(root / "sourcedata" / "truth" / "sub-01" / f"{name}_motion.tsv",
                        sep="\t").to_numpy()
    data = np.asarray(img.dataobj, dtype=np.float32)
    reference = compute_boldref(data, 2)
    mask = np.asarray(compute_bold_mask(nib.Nifti1Image(reference, img.affine)).dataobj) > 0
    params, _ = estimate_head_motion(data, img.affine, reference, mask)
    steady = slice(2, None)
    # estimates are relative to the reference (a mean of volumes), truth to volume 0
    error = params[steady] - truth[steady]
    error -= np.median(error, axis=0)
    to_display = np.array([1, 1, 1, *(3 * [180 / np.pi])])  # mm and degrees
    assert np.all(np.abs(error).max(axis=0) * to_display < 0.2), np.abs(error).max(0) * to_display
