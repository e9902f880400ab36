"""Group QC: the IQM table, per-site robust flags, the exclusion rules and their effect."""

import json

import numpy as np
import pandas as pd
import pytest

from brainscale.errors import UsageError
from brainscale.workflows.group import qc
from brainscale.workflows.group.collect import Connectomes, GroupData


def _write_iqms(root, sub, datatype, suffix, values, task=None):
    folder = root / f"sub-{sub}" / datatype
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{sub}" + (f"_task-{task}" if task else "")
    content = {**values, "outlier_volumes": [1, 2], "bids_meta": {"modality": suffix}}
    (folder / f"{stem}_desc-iqms_{suffix}.json").write_text(json.dumps(content))


@pytest.fixture
def cohort(tmp_path):
    """12 participants on 2 sites whose SNR differs by site; sub-11 is noisy for site B."""
    spread = np.tile(np.linspace(-1, 1, 6), 2)  # even spread within each site
    subjects = [f"{i:02d}" for i in range(1, 13)]
    sites = ["A"] * 6 + ["B"] * 6
    for sub, site, d in zip(subjects, sites, spread, strict=True):
        snr = (8.0 if site == "A" else 16.0) + 0.3 * d
        if sub == "11":
            snr = 9.0  # normal for site A, far below site B
        _write_iqms(tmp_path, sub, "anat", "T1w",
                    {"snr_total": snr, "cjv": 0.45 + 0.01 * d, "cnr": 3 + 0.1 * d,
                     "efc": 0.5 + 0.01 * d})
        fd = 0.9 if sub == "03" else 0.1 + 0.01 * d
        _write_iqms(tmp_path, sub, "func", "bold",
                    {"tsnr": 60 + 2 * d, "fd_mean": fd}, task="rest")
    participants = pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects],
                                 "site": sites})
    return tmp_path, participants


def test_one_row_per_image_with_its_iqms(cohort):
    root, _ = cohort
    table = qc.collect_iqms(root)
    assert len(table) == 24 and set(table["modality"]) == {"anat", "func"}
    row = table[(table["participant_id"] == "sub-01") & (table["modality"] == "func")].iloc[0]
    assert row["image"] == "sub-01_task-rest_bold" and row["task"] == "rest"
    assert row["report"] == "sub-01.html" and "outlier_volumes" not in table.columns


def test_flags_are_per_site_and_on_the_bad_side(cohort):
    root, participants = cohort
    result = qc.run_qc(root, participants, site_col="site", rule="auto")
    flagged = result.outliers
    snr = flagged[flagged["metric"] == "snr_total"]
    # sub-11's SNR is normal for the cohort as a whole but an outlier within site B
    assert snr["participant_id"].tolist() == ["sub-11"] and snr.iloc[0]["site"] == "B"
    assert (snr["robust_z"] < -qc.OUTLIER_Z).all()
    pooled, _, _ = qc.flag_outliers(result.table.drop(columns="site"), "site")
    assert pooled.set_index(["participant_id", "modality"]).loc[
        ("sub-11", "anat"), "n_outlier_metrics"] == 0
    # high SNR is never a flag (bad side only)
    assert not ((flagged["metric"] == "snr_total") & (flagged["robust_z"] > 0)).any()


def test_auto_rule_excludes_by_motion_with_a_reason(cohort):
    root, participants = cohort
    result = qc.run_qc(root, participants, site_col="site", rule="auto")
    excluded = result.exclusions
    assert excluded[["participant_id", "modality"]].values.tolist() == [["sub-03", "func"]]
    assert "mean FD 0.90 mm" in excluded.iloc[0]["reason"]
    row = result.table[result.table["excluded"]]
    assert row["image"].tolist() == ["sub-03_task-rest_bold"]
    assert qc.run_qc(root, participants, site_col="site", rule="none").exclusions.empty


def test_user_file_and_its_errors(cohort, tmp_path_factory):
    root, participants = cohort
    folder = tmp_path_factory.mktemp("rules")
    path = folder / "exclude.tsv"
    path.write_text("participant_id\tmodality\treason\n05\tT1w\tmotion seen by a rater\n")
    result = qc.run_qc(root, participants, site_col="site", rule=path)
    assert result.exclusions[["participant_id", "modality", "reason"]].values.tolist() == [
        ["sub-05", "anat", "motion seen by a rater"]]
    bad = folder / "bad.tsv"
    bad.write_text("subject\nsub-01\n")
    with pytest.raises(UsageError, match="participant_id"):
        qc.run_qc(root, participants, site_col="site", rule=bad)
    with pytest.raises(UsageError, match="not 'auto', 'none'"):
        qc.run_qc(root, participants, site_col="site", rule=folder / "missing.tsv")


def test_exclusions_leave_the_feature_sets():
    keys = pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"],
                         "session_id": ["n/a"] * 3})
    morph = keys.assign(tiv=[1.0, 2.0, 3.0])
    conn = Connectomes("func_task-rest_atlas-X_meas-P", "func", "X", "P", keys.assign(n_runs=1),
                       ["a", "b"], np.array([[0.1], [0.2], [0.3]], np.float32),
                       np.zeros((3, 2), np.float32))
    data = GroupData(subjects=keys, tables={"anat_desc-brain_morph": morph},
                     connectomes={conn.name: conn})
    exclusions = pd.DataFrame({"participant_id": ["sub-02", "sub-03"],
                               "session_id": ["n/a", "n/a"], "modality": ["func", "anat"],
                               "task": ["rest", "n/a"], "image": ["x", "y"], "reason": ["", ""]})
    kept = qc.apply_exclusions(data, exclusions)
    assert kept.tables["anat_desc-brain_morph"]["participant_id"].tolist() == ["sub-01", "sub-02"]
    func = kept.connectomes[conn.name]
    assert func.subjects["participant_id"].tolist() == ["sub-01", "sub-03"]
    assert func.edges[:, 0].tolist() == pytest.approx([0.1, 0.3])
    assert data.tables["anat_desc-brain_morph"].shape[0] == 3  # the input is not modified


def test_qc_exclude_option(tmp_path):
    from brainscale.bids_app.cli import parse_args

    args = [str(tmp_path), str(tmp_path / "out"), "group"]
    assert parse_args(args).group.qc_exclude == "auto"
    assert parse_args([*args, "--qc-exclude", "none"]).group.qc_exclude == "none"
    rules = tmp_path / "rules.tsv"
    rules.write_text("participant_id\n01\n")
    assert parse_args([*args, "--qc-exclude", str(rules)]).group.qc_exclude == str(rules)
    with pytest.raises(UsageError, match="--qc-exclude 'absent.tsv'"):
        parse_args([*args, "--qc-exclude", "absent.tsv"])


def test_runs_without_iqms_still_get_the_motion_rule(tmp_path):
    folder = tmp_path / "sub-01" / "func"
    folder.mkdir(parents=True)
    pd.DataFrame({"framewise_displacement": [np.nan, 0.8, 0.9]}).to_csv(
        folder / "sub-01_task-rest_desc-confounds_timeseries.tsv", sep="\t", index=False,
        na_rep="n/a")
    table = qc.collect_iqms(tmp_path)
    assert table.loc[0, "image"] == "sub-01_task-rest_bold"
    assert table.loc[0, "fd_mean"] == pytest.approx(0.85) == table.loc[0, "mean_fd_mm"]
    result = qc.run_qc(tmp_path, pd.DataFrame({"participant_id": ["sub-01"]}), site_col=None)
    assert "mean FD 0.85 mm" in result.exclusions.iloc[0]["reason"]
