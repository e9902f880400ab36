"""End to end: ``brainscale demo`` on synthetic participants with known ground truth.

One run of the real pipeline (participant and group level, real Nipype execution) on a
small synthetic dataset; the checks compare the derivatives with the truth the generator
stored, and with the output contract of the README.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.bids_app.demo import main as demo_main
from brainscale.bids_app.run import main as run_main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    code = demo_main(["demo", str(root), "--subjects", "4", "--sites", "2",
                      "--directions", "20", "--nprocs", "2"], run_main)
    truth = json.loads((root / "bids" / "sourcedata" / "truth" / "truth.json").read_text())
    return root / "derivatives", truth, code


def test_demo_exits_zero_and_writes_the_contract(demo):
    out, _, code = demo
    assert code == 0
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert list((out / "logs").glob("config-*.toml"))
    citation = (out / "logs" / "CITATION.md").read_text()
    cited = set(re.findall(r"\[@([A-Za-z0-9_]+)\]", citation))
    # default thickness: distances between the white and pial meshes (Fischl & Dale 2000)
    assert {"nipype", "ants", "fischl2000", "buckner2004", "dipy"} <= cited
    assert all(f"- [{key}] " in citation for key in cited)  # every citation has a reference
    for subject in ("01", "02", "03", "04"):
        sub = out / f"sub-{subject}"
        for name in ("anat/sub-{s}_desc-preproc_T1w.nii.gz", "anat/sub-{s}_desc-brain_mask.nii.gz",
                     "anat/sub-{s}_dseg.nii.gz",
                     "anat/sub-{s}_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.nii.gz",
                     "anat/sub-{s}_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.nii.gz",
                     "anat/sub-{s}_atlas-DesikanKilliany_morph.tsv",
                     "func/sub-{s}_task-rest_desc-confounds_timeseries.tsv",
                     "func/sub-{s}_task-rest_atlas-DesikanKilliany_meas-PearsonCorrelation_relmat.tsv",
                     "dwi/sub-{s}_desc-preproc_dwi.nii.gz"):
            assert (sub / name.format(s=subject)).is_file(), name.format(s=subject)
        assert list(sub.glob("dwi/*_model-tensor_param-fa_dwimap.nii.gz"))
        assert list(sub.glob("dwi/*.trx"))
        assert list(sub.glob("dwi/*_meas-count_relmat.tsv"))
        report = (out / f"sub-{subject}.html").read_text()
        assert "completed" in report
        figures = list((sub / "figures").glob("*.svg")) + list((sub / "figures").glob("*.png"))
        assert len(figures) >= 5
        assert all(f"sub-{subject}/figures/{f.name}" in report for f in figures)
    assert (out / "group" / "group.html").is_file()


def test_volumes_match_the_truth(demo):
    """eTIV, brain-mask volume and GM+WM against the phantom's constructed volumes."""
    out, truth, _ = demo
    for subject in truth["subjects"]:
        label = subject["participant_id"]
        brain = pd.read_csv(out / label / "anat" / f"{label}_desc-brain_morph.tsv", sep="\t")
        # eTIV = |det| of the affine x the template ICV (Buckner et al. 2004): the phantom
        # is the template scaled by a known factor, so the affine must find that factor.
        etiv = float(brain["etiv_mm3"].iloc[0])
        assert etiv == pytest.approx(subject["volumes_mm3"]["TIV"], rel=0.10), label
        # The mask excludes part of the outer CSF the template mask includes: 15 %.
        mask_volume = float(brain["brain_mask_volume_mm3"].iloc[0])
        assert mask_volume == pytest.approx(subject["volumes_mm3"]["TIV"], rel=0.15), label
        gm_wm = float(brain["gm_volume_mm3"].iloc[0] + brain["wm_volume_mm3"].iloc[0])
        truth_gm_wm = subject["volumes_mm3"]["GM"] + subject["volumes_mm3"]["WM"]
        assert gm_wm == pytest.approx(truth_gm_wm, rel=0.15), label


def test_functional_connectivity_recovers_the_networks(demo):
    out, truth, _ = demo
    networks = pd.Series(truth["networks"]["network"], index=truth["networks"]["name"])
    for subject in truth["subjects"]:
        label = subject["participant_id"]
        matrix = pd.read_csv(
            out / label / "func"
            / f"{label}_task-rest_atlas-DesikanKilliany_meas-PearsonCorrelation_relmat.tsv",
            sep="\t", index_col=0)
        values = matrix.to_numpy(dtype=float)
        assert np.allclose(values, values.T, equal_nan=True)
        assert np.allclose(np.diag(values), 1.0)
        net = networks.reindex(matrix.index).to_numpy()
        same = (net[:, None] == net[None, :]) & ~np.eye(len(net), dtype=bool)
        other = net[:, None] != net[None, :]
        within, between = np.nanmean(values[same]), np.nanmean(values[other])
        assert within > between + 0.1, (label, within, between)


def test_fa_is_high_in_the_synthetic_white_matter(demo):
    out, truth, _ = demo
    for subject in truth["subjects"][:2]:
        label = subject["participant_id"]
        fa_file = next((out / label / "dwi").glob("*_model-tensor_param-fa_dwimap.nii.gz"))
        fa = nib.load(fa_file).get_fdata()
        truth_fa = nib.load(Path(out).parent / "bids" / "sourcedata" / "truth" / label
                            / f"{label}_dwi_param-FA.nii.gz")
        if truth_fa.shape != fa.shape:  # outputs on another grid: compare distributions
            assert np.percentile(fa[fa > 0], 90) > 0.5
            continue
        mask = truth_fa.get_fdata() > 0.6
        assert np.median(np.abs(fa[mask] - truth_fa.get_fdata()[mask])) < 0.1


def test_head_motion_matches_the_truth(demo):
    """All six motion parameters of the confounds against the generator's truth.

    The truth is a random walk within +-1 mm and +-1 degree about the BOLD field-of-view
    centre, as the estimates are; rigid realignment of simulated motion is accurate to
    about 0.1 mm / 0.1 degree (Oakes et al. 2005, NeuroImage 28:529): 0.2 allowed.
    """
    out, truth, _ = demo
    columns = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    to_display = np.array([1, 1, 1, *(3 * [180 / np.pi])])  # mm, degrees
    for subject in truth["subjects"]:
        label = subject["participant_id"]
        confounds = pd.read_csv(
            out / label / "func" / f"{label}_task-rest_desc-confounds_timeseries.tsv",
            sep="\t", na_values=["n/a"])
        estimated = confounds[columns].to_numpy()
        true = pd.read_csv(Path(out).parent / "bids" / "sourcedata" / "truth" / label
                           / f"{label}_task-rest_bold_motion.tsv", sep="\t")[columns].to_numpy()
        assert np.rad2deg(np.abs(true[:, 3:])).max() <= 1.0  # degrees, not radians
        steady = slice(2, None)  # two non-steady-state volumes
        # estimates are relative to the BOLD reference, the truth to the first volume
        error = estimated[steady] - true[steady]
        error -= np.median(error, axis=0)
        worst = np.abs(error).max(axis=0) * to_display
        assert np.all(worst < 0.2), (label, dict(zip(columns, worst.round(3), strict=True)))
        for k, column in enumerate(columns):
            if np.ptp(true[steady, k]) * to_display[k] > 0.1:
                r = np.corrcoef(estimated[steady, k], true[steady, k])[0, 1]
                assert r > 0.9, (label, column, r)
