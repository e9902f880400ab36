"""Collection of participant derivatives into tidy group tables, against the written values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.group.collect import (
    collect_group_data,
    edge_names,
    parse_entities,
    read_connectome,
    upper_triangle,
)


def test_parse_entities_reads_every_entity_suffix_and_extension():
    name = "sub-01_ses-pre_task-rest_run-2_atlas-DK_meas-PearsonCorrelation_desc-fisherz_relmat.tsv"
    entities = parse_entities(name)
    assert entities == {
        "sub": "01",
        "ses": "pre",
        "task": "rest",
        "run": "2",
        "atlas": "DK",
        "meas": "PearsonCorrelation",
        "desc": "fisherz",
        "suffix": "relmat",
        "extension": ".tsv",
    }


def test_upper_triangle_and_edge_names_follow_row_major_order():
    matrix = np.arange(16, dtype=float).reshape(4, 4)
    assert upper_triangle(matrix[None])[0].tolist() == [1, 2, 3, 6, 7, 11]
    assert edge_names(list("abcd")) == ["a__b", "a__c", "a__d", "b__c", "b__d", "c__d"]


def test_collect_reproduces_written_values(derivatives_cohort):
    cohort = derivatives_cohort(n_sites=2, n_per_site=4)
    data = collect_group_data(cohort.root, cohort.participants)

    morph = data.tables["anat_atlas-Test_morph"]
    assert len(morph) == 8 and list(morph.columns[:2]) == ["participant_id", "session_id"]
    for _, row in morph.iterrows():
        truth = cohort.morph[(row["participant_id"], row["session_id"])]
        for region in truth.index:
            assert row[f"gm_volume_mm3__{region}"] == pytest.approx(
                truth.loc[region, "gm_volume_mm3"]
            )
            assert row[f"thickness_mean_mm__{region}"] == pytest.approx(
                truth.loc[region, "thickness_mean_mm"]
            )
    brain = data.tables["anat_desc-brain_morph"].set_index("participant_id")
    assert brain.loc["sub-003", "tiv_mm3"] == pytest.approx(
        cohort.global_morph[("sub-003", "n/a")]["tiv_mm3"]
    )

    func = data.connectomes["func_task-rest_atlas-Test_meas-PearsonCorrelation"]
    assert func.matrices.shape == (8, 6, 6)
    for row, key in enumerate(
        map(tuple, func.subjects[["participant_id", "session_id"]].to_numpy())
    ):
        np.testing.assert_allclose(func.matrices[row], cohort.func[key], atol=1e-6)
    # sub-000 has two runs: the collected matrix is their mean
    assert func.subjects.set_index("participant_id").loc["sub-000", "n_runs"] == 2
    edges = func.edge_table()
    assert edges.shape == (8, 2 + 15)
    assert edges.loc[0, "L_frontal__R_frontal"] == pytest.approx(
        cohort.func[("sub-000", "n/a")][0, 1], abs=1e-6  # float32 edges, as above
    )

    qc = data.qc.set_index("participant_id")
    for (sub, _), mean_fd in cohort.mean_fd.items():
        assert qc.loc[sub, "mean_fd_mm"] == pytest.approx(mean_fd)
    assert qc.loc["sub-000", "n_func_runs"] == 2


def test_missing_modalities_are_reported_not_dropped(derivatives_cohort):
    cohort = derivatives_cohort(n_sites=2, n_per_site=4)
    data = collect_group_data(cohort.root, cohort.participants)
    missing = set(map(tuple, data.missing.to_numpy()))
    assert missing == {("sub-007", "n/a", "dwi"), ("sub-nodata", "n/a", "all")}
    subjects = data.subjects.set_index("participant_id")
    assert not subjects.loc["sub-007", "dwi"] and subjects.loc["sub-007", "anat"]
    assert len(data.connectomes["dwi_atlas-Test_meas-count"].matrices) == 7


def test_sessions_give_one_row_per_participant_and_session(derivatives_cohort):
    cohort = derivatives_cohort(n_sites=2, n_per_site=2, sessions=("ses-a", "ses-b"))
    data = collect_group_data(cohort.root)
    morph = data.tables["anat_atlas-Test_morph"]
    assert sorted(morph["session_id"].unique()) == ["ses-a", "ses-b"]
    assert len(morph) == 8
    row = morph[(morph.participant_id == "sub-002") & (morph.session_id == "ses-b")].iloc[0]
    truth = cohort.morph[("sub-002", "ses-b")]
    assert row["gm_volume_mm3__L_parietal"] == pytest.approx(
        truth.loc["L_parietal", "gm_volume_mm3"]
    )


def test_malformed_connectome_names_the_file(tmp_path):
    path = tmp_path / "sub-01_atlas-X_meas-count_relmat.tsv"
    pd.DataFrame(
        [[0, 1], [1, 0]], index=pd.Index(["a", "b"], name="node"), columns=["a", "c"]
    ).to_csv(path, sep="\t")
    with pytest.raises(InputDataError, match=str(path.name)):
        read_connectome(path)


def test_inconsistent_regions_across_participants_raise(derivatives_cohort):
    cohort = derivatives_cohort(n_sites=2, n_per_site=2)
    path = next(cohort.root.glob("sub-001/dwi/*_relmat.tsv"))
    table = pd.read_csv(path, sep="\t", index_col=0)
    table.index = table.columns = [f"x{i}" for i in range(len(table))]
    table.index.name = "node"
    table.to_csv(path, sep="\t")
    with pytest.raises(InputDataError, match="regions differ"):
        collect_group_data(cohort.root)


def test_empty_derivatives_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputDataError, match="no participant"):
        collect_group_data(tmp_path)
