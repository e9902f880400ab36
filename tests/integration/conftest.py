"""Checks shared by the scale-out tests (Slurm, containers, array tasks, brainlife.io).

Every scale-out path runs the real anatomical pipeline on synthetic participants whose
ground truth the generator stored (``sourcedata/truth/truth.json``). The fixtures here
check one participant's derivatives against the output contract and that truth, and the
group level against the participant tables it collects. They are fixtures (returning
functions) because the tests are imported with ``--import-mode=importlib``, which leaves
helper modules next to them unimportable.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale import resources
from brainscale.bids_app.synth import SynthSpec, generate_dataset

#: Images and tables of ``--modalities anat`` per participant (``sub-<label>_`` prefix).
ANAT_IMAGES = ("desc-preproc_T1w", "desc-brain_mask", "dseg", "label-GM_probseg",
               "label-WM_probseg", "label-CSF_probseg", "desc-thickness_morph",
               "space-MNI152NLin2009aSym_res-1_desc-preproc_T1w",
               "from-T1w_to-MNI152NLin2009aSym_mode-image_xfm",
               "from-MNI152NLin2009aSym_to-T1w_mode-image_xfm")
ANAT_TABLES = ("atlas-DesikanKilliany_morph", "desc-brain_morph")
#: Desikan-Killiany regions of the morphometry table: 2 x (34 cortical + 7 subcortical)
#: and the brainstem.
DK_REGIONS = 83


def _synthesize_anat(root: Path, subjects: int) -> Path:
    """Write the demo's synthetic dataset, T1w only (2 mm), from two sites under ``root``."""
    generate_dataset(root, SynthSpec(subjects=subjects, sites=2, modalities=("anat",)))
    return root


def _check_anat_outputs(out: Path, bids_dir: Path, labels: list[str]) -> None:
    """Assert participants' anatomical derivatives: complete, valid and near the truth.

    Parameters
    ----------
    out : pathlib.Path
        The BrainScale output folder.
    bids_dir : pathlib.Path
        The synthetic dataset, with ``sourcedata/truth/truth.json``.
    labels : list of str
        ``sub-<label>`` of the participants to check.
    """
    truth = json.loads((Path(bids_dir) / "sourcedata/truth/truth.json").read_text())
    by_label = {subject["participant_id"]: subject for subject in truth["subjects"]}
    for label in labels:
        _check_participant(Path(out), label, by_label[label])


def _check_participant(out: Path, label: str, truth: dict) -> None:
    """Assert the derivatives of one participant (``truth``: its entry of truth.json)."""
    anat = out / label / "anat"
    for name in ANAT_IMAGES:
        image = anat / f"{label}_{name}.nii.gz"
        data = np.asarray(nib.load(image).dataobj)  # a complete, readable NIfTI
        assert data.size and np.isfinite(data).all() and data.any(), image
        assert isinstance(json.loads(image.with_name(image.name[:-7] + ".json").read_text()),
                          dict)
    for name in ANAT_TABLES:
        json.loads((anat / f"{label}_{name}.json").read_text())
    regional = pd.read_csv(anat / f"{label}_atlas-DesikanKilliany_morph.tsv", sep="\t")
    assert len(regional) == DK_REGIONS and regional["name"].is_unique, label
    cortex = regional[regional["name"].str.startswith("ctx-")]
    # no truth for thickness in the generator: every cortical region has a measured one
    assert (cortex["gm_volume_mm3"] > 0).all() and (cortex["thickness_mean_mm"] > 0).all(), label
    # volumes against the generator's truth (the tolerance of the demo test)
    brain = pd.read_csv(anat / f"{label}_desc-brain_morph.tsv", sep="\t").iloc[0]
    volumes = truth["volumes_mm3"]
    assert brain["tiv_mm3"] == pytest.approx(volumes["TIV"], rel=0.15), label
    assert brain["gm_volume_mm3"] + brain["wm_volume_mm3"] == pytest.approx(
        volumes["GM"] + volumes["WM"], rel=0.15), label
    # the normalized T1w lies on the template grid and looks like the template
    normalized = nib.load(anat / f"{label}_space-MNI152NLin2009aSym_res-1_desc-preproc_T1w.nii.gz")
    template, mask = resources.get_template(1), resources.get_template_mask(1)
    assert normalized.shape == template.shape and np.allclose(normalized.affine, template.affine)
    inside = np.asarray(mask.dataobj) > 0
    correlation = np.corrcoef(np.asarray(normalized.dataobj, dtype=float)[inside],
                              np.asarray(template.dataobj, dtype=float)[inside])[0, 1]
    assert correlation > 0.8, (label, correlation)
    assert label in (out / f"{label}.html").read_text()


def _check_group_outputs(out: Path, labels: list[str]) -> None:
    """Assert that the group level collected exactly the participants' anatomical tables.

    Every participant is in the cohort; the feature tables hold every participant except
    the T1w images that the automatic quality control excluded, and each exclusion is
    listed with its reason in ``qc_exclusions.tsv`` (it may flag a synthetic scan too:
    with four images per site, outliers are judged against all images).

    Parameters
    ----------
    out : pathlib.Path
        The BrainScale output folder.
    labels : list of str
        ``sub-<label>`` of every participant the group level must have read.
    """
    group = Path(out) / "group"
    report = (group / "group.html").read_text()
    assert all(label in report for label in labels)
    cohort = pd.read_csv(group / "cohort.tsv", sep="\t")
    assert sorted(cohort["participant_id"]) == sorted(labels)
    assert cohort["anat"].astype(str).eq("True").all()
    exclusions = pd.read_csv(group / "qc_exclusions.tsv", sep="\t")
    excluded = set(exclusions.loc[exclusions["modality"] == "anat", "participant_id"])
    assert excluded <= set(labels) and len(excluded) < len(labels) / 2, exclusions
    assert exclusions["reason"].notna().all()
    kept = sorted(set(labels) - excluded)
    table = pd.read_csv(group / "features/anat_desc-brain_morph.tsv", sep="\t",
                        index_col="participant_id")
    assert sorted(table.index) == kept
    for label in kept:
        own = pd.read_csv(Path(out) / label / "anat" / f"{label}_desc-brain_morph.tsv",
                          sep="\t").iloc[0]
        for column, value in own.items():
            assert table.loc[label, column] == pytest.approx(value, rel=1e-6), (label, column)
    regional = pd.read_csv(group / "features/anat_atlas-DesikanKilliany_morph.tsv", sep="\t")
    assert sorted(regional["participant_id"]) == kept
    own = pd.read_csv(Path(out) / kept[0] / "anat"
                      / f"{kept[0]}_atlas-DesikanKilliany_morph.tsv", sep="\t")
    measures = [c for c in own.columns if c not in ("index", "name")]
    assert regional.shape[1] == 2 + len(measures) * DK_REGIONS  # ids + measures x regions


@pytest.fixture(scope="session")
def synthesize_anat():
    """Factory: ``synthesize_anat(root, subjects)`` -> the BIDS folder ``root``."""
    return _synthesize_anat


@pytest.fixture(scope="session")
def check_anat_outputs():
    """Function ``check_anat_outputs(out, bids_dir, labels)`` asserting derivatives."""
    return _check_anat_outputs


@pytest.fixture(scope="session")
def check_group_outputs():
    """Function ``check_group_outputs(out, labels)`` asserting the group level's tables."""
    return _check_group_outputs
