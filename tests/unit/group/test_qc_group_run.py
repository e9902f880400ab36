"""QC inside the group run: qc.tsv per image, exclusions applied to every analysis, dashboard."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from brainscale.workflows.group.run import run_group

RUN_ARGS = {"covariates": ["age"], "seed": 0, "n_permutations": 0, "device": "cpu",
            "models": ["logreg"], "n_random_graphs": 0, "target": None,
            "harmonize_by": None}
BAD_T1W, MOVER = "sub-004", "sub-009"


def _add_iqms(cohort):
    """Typical T1w IQMs for everyone, a poor T1w for BAD_T1W, a mover's BOLD for MOVER."""
    for i, pid in enumerate(cohort.participants["participant_id"]):
        folder = cohort.root / pid / "anat"
        if not folder.is_dir():
            continue
        d = (i % 5 - 2) / 2
        values = {"cjv": 0.45 + 0.01 * d, "cnr": 3.0 + 0.1 * d, "snr_total": 10 + 0.3 * d,
                  "efc": 0.5 + 0.01 * d, "qi_1": 0.001}
        if pid == BAD_T1W:
            values.update(cjv=0.9, cnr=1.0, snr_total=4.0)
        (folder / f"{pid}_desc-iqms_T1w.json").write_text(json.dumps(values))
        func = cohort.root / pid / "func"
        bold = {"tsnr": 50 + d, "fd_mean": 0.9 if pid == MOVER else 0.1 + 0.01 * d}
        for confounds in func.glob("*_desc-confounds_timeseries.tsv"):
            name = confounds.name.replace("_desc-confounds_timeseries.tsv", "_desc-iqms_bold.json")
            (func / name).write_text(json.dumps(bold))


@pytest.fixture(scope="module")
def qc_run(cohort_writer, tmp_path_factory):
    root = tmp_path_factory.mktemp("qc_run") / "derivatives"
    cohort = cohort_writer(root, n_sites=2, n_per_site=6, site_shift=3.0, dx_effect=1.0)
    _add_iqms(cohort)
    report = run_group(cohort.root, cohort.root / "participants.tsv", **RUN_ARGS)
    return cohort, report


def test_qc_table_has_one_row_per_image_with_fd_summaries(qc_run):
    cohort, report = qc_run
    table = pd.read_csv(report.parent / "qc.tsv", sep="\t", keep_default_na=False)
    anat = table[table["modality"] == "anat"]
    assert anat["participant_id"].is_unique and len(anat) == len(cohort.global_morph)
    func = table[table["modality"] == "func"]
    first = cohort.participants["participant_id"].iloc[0]
    assert (func["participant_id"] == first).sum() == 2  # two rest runs: two rows
    assert {"mean_fd_mm", "tsnr", "n_outlier_metrics", "excluded", "site"} <= set(table.columns)


def test_exclusions_are_reported_and_left_out_of_the_analyses(qc_run):
    cohort, report = qc_run
    group = report.parent
    excluded = pd.read_csv(group / "qc_exclusions.tsv", sep="\t", keep_default_na=False)
    assert sorted(excluded["participant_id"]) == [BAD_T1W, MOVER]
    reasons = excluded.set_index("participant_id")["reason"]
    assert "outlier on 3 metrics" in reasons[BAD_T1W] and "mean FD 0.90" in reasons[MOVER]
    morph = pd.read_csv(group / "features" / "anat_desc-brain_morph.tsv", sep="\t")
    assert BAD_T1W not in set(morph["participant_id"]) and MOVER in set(morph["participant_id"])
    func_sets = list((group / "features").glob("func_*PearsonCorrelation*_edges.tsv"))
    assert func_sets
    for path in func_sets:
        ids = set(pd.read_csv(path, sep="\t")["participant_id"])
        assert MOVER not in ids and BAD_T1W in ids
    html = report.read_text()
    assert "Quality control" in html and f'href="../{BAD_T1W}.html"' in html
    assert "<svg" in html and 'xlink:href="../sub-' in html  # points link to reports
