"""Group defaults that meet real phenotype files: aliases, participants.json, covariate types."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from brainscale.errors import UsageError
from brainscale.workflows.group.covariates import split_covariate_types
from brainscale.workflows.group.phenotype import head_size_covariate, resolve_columns
from brainscale.workflows.group.run import run_group

DEFAULTS = {"harmonize_by": "site", "covariates": ["age", "sex"], "target": "diagnosis"}


def test_abide_style_columns_found_through_participants_json():
    table = pd.DataFrame(columns=["participant_id", "SITE_ID", "SEX", "AGE_AT_SCAN", "DX_GROUP"])
    meta = {
        "SEX": {"Description": "Sex of the participant", "Levels": {"1": "male", "2": "female"}},
        "AGE_AT_SCAN": {"Description": "Age at scan", "Units": "year"},
        "DX_GROUP": {"Description": "Diagnostic group", "Levels": {"1": "autism", "2": "control"}},
    }
    found = resolve_columns(table, meta, **DEFAULTS)
    assert (found.site, found.target) == ("SITE_ID", "DX_GROUP")
    assert found.covariates == ["AGE_AT_SCAN", "SEX"]
    # Levels make SEX (coded 1/2) categorical, Units make age continuous
    assert found.categorical == ["SEX"] and found.continuous == ["AGE_AT_SCAN"]
    assert found.descriptions["DX_GROUP"] == "Diagnostic group"
    assert any("'DX_GROUP'" in note for note in found.notes)


def test_explicit_absent_column_is_a_usage_error_and_a_default_one_a_note():
    table = pd.DataFrame(columns=["participant_id", "age", "handedness"])
    found = resolve_columns(table, {}, **DEFAULTS)
    assert (found.site, found.target, found.covariates) == (None, None, ["age"])
    assert sum("no 'site' column" in n or "no 'sex' column" in n for n in found.notes) == 2
    with pytest.raises(UsageError, match=r"--target 'dx_code'.*available: \['age', 'handedness'\]"):
        resolve_columns(table, {}, **{**DEFAULTS, "target": "dx_code"}, explicit={"target"})


def test_integer_codes_warn_unless_typed():
    covars = pd.DataFrame({"sex": [1, 2, 1, 2, 1], "age": [20.5, 31.0, 44.0, 52.5, 60.1],
                           "group": [0, 1, 2, 1, 0]})
    with pytest.warns(UserWarning, match="'sex' holds 2 integer level"):
        assert split_covariate_types(covars, ["sex", "age"]) == ((), ("sex", "age"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert split_covariate_types(
            covars, ["age"], categorical=["sex", "group"]
        ) == (("sex", "group"), ("age",))
    with pytest.raises(ValueError, match="categorical and continuous"):
        split_covariate_types(covars, ["sex"], categorical=["sex"], continuous=["sex"])


def test_head_size_prefers_etiv_and_falls_back_to_the_brain_mask_with_a_note():
    both = pd.DataFrame({"etiv_mm3": [1.5e6, np.nan], "brain_mask_volume_mm3": [1.2e6, 1.1e6]})
    assert head_size_covariate(both)[0] == "etiv_mm3"
    column, note = head_size_covariate(pd.DataFrame({"brain_mask_volume_mm3": [1.2e6]}))
    assert column == "brain_mask_volume_mm3" and "etiv_mm3 absent" in note
    assert head_size_covariate(pd.DataFrame({"gm_volume_mm3": [6e5]}))[0] is None


@pytest.mark.realdata
def test_ds002748_participants_with_gender_and_group_run_with_the_defaults(
    shared_data, tmp_path, cohort_writer
):
    """ds002748-mini says ``gender`` and ``group``: the defaults find them, nothing fails."""
    source = shared_data / "ds002748-mini" / "participants.tsv"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    out = tmp_path / "out"
    cohort_writer(out, n_sites=1, n_per_site=4)
    phenotype = pd.read_csv(source, sep="\t", dtype={"participant_id": str})
    assert {"gender", "group"} <= set(phenotype.columns)
    labels = sorted(p.name for p in out.glob("sub-*"))[: len(phenotype)]
    for label, real in zip(labels, phenotype["participant_id"], strict=True):
        shutil.move(out / label, out / real)  # derivatives of ds002748's participants
        for path in (out / real).rglob(f"{label}_*"):
            path.rename(path.with_name(path.name.replace(label, real)))
    for leftover in sorted(out.glob("sub-0*")):
        shutil.rmtree(leftover)
    shutil.copy(source, tmp_path / "participants.tsv")
    (tmp_path / "participants.json").write_text(json.dumps({"group": {"Description": "x"}}))
    report = run_group(out, tmp_path / "participants.tsv", seed=0, n_permutations=0,
                       models=["logreg"], n_random_graphs=0, **DEFAULTS)
    page = report.read_text()
    assert "using the participants.tsv column &#x27;gender&#x27;" in page
    assert "using the participants.tsv column &#x27;group&#x27;" in page
    cohort = pd.read_csv(out / "group" / "cohort.tsv", sep="\t")
    assert sorted(cohort["participant_id"]) == sorted(phenotype["participant_id"])
