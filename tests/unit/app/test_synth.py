"""Synthetic data factory: the written images agree with their stored ground truth."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_app.synth import SynthSpec, generate_dataset, sample
from brainscale import resources


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
    from bids_app.bids import validate_dataset

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
