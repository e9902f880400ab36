"""The group runner end to end on a synthetic derivatives tree with known effects."""

from __future__ import annotations

import re

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import config_context

from brainscale.errors import NoInputError, UsageError
from brainscale.workflows.group.harmonize import ComBat
from brainscale.workflows.group.run import run_group

RUN_ARGS = {
    "covariates": ["age"],
    "seed": 0,
    "n_permutations": 0,  # the permutation test is checked in test_classify.py
    "device": "cpu",
    "models": ["logreg"],
    "n_random_graphs": 0,
}


def read_tsv(path, **kwargs):
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], **kwargs)


@pytest.fixture(scope="module")
def finished_run(cohort_writer, tmp_path_factory):
    root = tmp_path_factory.mktemp("group_run") / "derivatives"
    cohort = cohort_writer(root, n_sites=3, n_per_site=12, site_shift=3.0, dx_effect=2.0)
    report = run_group(
        cohort.root, cohort.root / "participants.tsv", target="diagnosis", **RUN_ARGS
    )
    return cohort, report


def test_group_outputs_match_the_synthetic_truth(finished_run):
    cohort, report = finished_run
    group = cohort.root / "group"
    assert report == group / "group.html"

    tables = read_tsv(group / "cohort.tsv")
    assert len(tables) == 36 and set(tables["site"]) == {"site0", "site1", "site2"}
    missing = set(map(tuple, read_tsv(group / "missing.tsv").to_numpy()))
    assert missing == {("sub-035", "n/a", "dwi"), ("sub-nodata", "n/a", "all")}

    # site effects: the morphometry carries a 3-sd site shift that ComBat removes
    effects = read_tsv(group / "site_effects.tsv").set_index("feature_set")
    morph = effects.loc["anat_atlas-Test_morph"]
    assert morph["accuracy_before"] > 0.9
    assert morph["accuracy_after"] < morph["chance"] + 0.2

    # the saved ComBat model reproduces the harmonized table
    raw = read_tsv(group / "features" / "anat_atlas-Test_morph.tsv")
    harmonized = read_tsv(group / "features" / "anat_atlas-Test_morph_harmonized.tsv")
    combat = ComBat.load(group / "models" / "combat_anat_atlas-Test_morph.npz")
    covars = raw[["participant_id"]].merge(cohort.participants, on="participant_id")
    # regional morphometry also protects the head size (etiv_mm3 of the global table)
    head = read_tsv(group / "features" / "anat_desc-brain_morph.tsv")
    covars = covars.merge(head[["participant_id", "etiv_mm3"]], on="participant_id")
    assert "head-size covariate of morphometry: etiv_mm3" in report.read_text()
    features = raw.drop(columns=["participant_id", "session_id"])
    again = combat.transform(features, covars.set_index(features.index))
    np.testing.assert_allclose(
        again.to_numpy(), harmonized.drop(columns=["participant_id", "session_id"]), rtol=1e-6
    )

    # a 15 % proportional threshold keeps round(0.15 * 15) = 2 of the 15 edges of 6 nodes
    graph = read_tsv(
        group / "graph" / "func_task-rest_atlas-Test_meas-PearsonCorrelation_global.tsv"
    )
    assert len(graph) == 36
    np.testing.assert_allclose(graph["density"], 2 / 15)
    nodal = read_tsv(group / "graph" / "dwi_atlas-Test_meas-count_nodal.tsv")
    assert len(nodal) == 35 * 6

    # the diagnosis lowers two regional volumes by 2 sd: found across sites
    summary = read_tsv(group / "prediction" / "summary.tsv")
    row = summary.query(
        "feature_set == 'anat_atlas-Test_morph' and metric == 'balanced_accuracy'"
    ).iloc[0]
    assert row["cv"] == "leave-one-site-out" and row["value"] > 0.75
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    top = read_tsv(group / "prediction" / "anat_atlas-Test_morph_model-logreg_features.tsv")
    assert set(top["feature"].head(2)) == {"gm_volume_mm3__L_frontal", "gm_volume_mm3__R_frontal"}

    model = joblib.load(group / "models" / "anat_atlas-Test_morph_model-logreg.joblib")
    assert "combat" in model.named_steps
    index = pd.Index(raw["participant_id"], name="label")
    covars_by_label = covars.set_index(index)
    with config_context(enable_metadata_routing=True):
        predicted = model.predict(features.set_index(index), covars=covars_by_label)
    assert np.mean(predicted == covars_by_label["diagnosis"].to_numpy()) > 0.8


def test_group_report_links_existing_figures(finished_run):
    cohort, report = finished_run
    page = report.read_text()
    for heading in ("Cohort", "Missing modalities", "Site effects", "Graph metrics", "Prediction"):
        assert heading in page
    assert "sub-nodata" in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 8
    for image in images:
        assert (report.parent / image).is_file()


def test_without_site_column_harmonization_is_skipped_and_noted(derivatives_cohort):
    cohort = derivatives_cohort(n_sites=2, n_per_site=4)
    table = cohort.participants.rename(columns={"site": "acquisition"})
    table.to_csv(cohort.root / "participants.tsv", sep="\t", index=False)
    # the default --harmonize-by site: absent (and no alias) is a note, not an error
    report = run_group(cohort.root, cohort.root / "participants.tsv", target=None, **RUN_ARGS)
    assert "no site column: ComBat" in report.read_text()
    assert not list((cohort.root / "group" / "features").glob("*_harmonized.tsv"))
    assert not (cohort.root / "group" / "prediction").exists()
    # an explicitly requested column that is absent is a usage error naming the columns
    with pytest.raises(UsageError, match="'scanner'.*available: .*'acquisition'"):
        run_group(
            cohort.root, cohort.root / "participants.tsv", harmonize_by="scanner", target=None,
            **RUN_ARGS,
        )


def test_bad_participants_table_is_reported(derivatives_cohort, tmp_path):
    cohort = derivatives_cohort(n_sites=2, n_per_site=4)
    with pytest.raises(NoInputError, match="participants.tsv"):
        run_group(cohort.root, tmp_path / "absent.tsv", target=None, **RUN_ARGS)
    with pytest.raises(UsageError, match="'handedness'.*available: \\['site', 'age'"):
        run_group(cohort.root, cohort.root / "participants.tsv", target="handedness", **RUN_ARGS)
