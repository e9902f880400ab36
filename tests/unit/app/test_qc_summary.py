"""The participant report opens with the QC summary of its images."""

from types import SimpleNamespace

from brainscale.bids_app.cli import parse_args
from brainscale.bids_app.reports.participant import render_participant_report
from brainscale.bids_app.reports.qc_summary import qc_summary_html
from brainscale.workflows.qc_interfaces import write_iqms


def _write(tmp_path):
    func = tmp_path / "sub-01" / "func"
    dwi = tmp_path / "sub-01" / "dwi"
    func.mkdir(parents=True)
    dwi.mkdir(parents=True)
    write_iqms({"tsnr": 55.5, "fd_mean": 0.12, "outlier_volumes": [4, 9], "notes": []},
               str(func / "sub-01_task-rest_desc-iqms_bold.json"), modality="bold",
               source="sub-01_task-rest_bold.nii.gz", settings={})
    write_iqms({"cnr_b1000": 3.2, "dropout_slices": [[5, 12]], "bad_volumes_frac": 0.03,
                "notes": ["white matter: brain voxels with FA > 0.2"]},
               str(dwi / "sub-01_desc-iqms_dwi.json"), modality="dwi",
               source="sub-01_dwi.nii.gz", settings={})


def test_summary_lists_metrics_and_artifacts(tmp_path):
    _write(tmp_path)
    text = qc_summary_html(tmp_path, "01")
    assert "sub-01_task-rest_bold" in text and "<td>55.5</td>" in text
    assert "2 BOLD outlier volume(s)" in text and "[4, 9]" in text
    assert "1 DWI slice dropout(s) [volume, slice]: [(5, 12)]" in text
    assert "cnr_b1000" in text and "FA &gt; 0.2" in text
    assert qc_summary_html(tmp_path, "02") == ""


def test_participant_report_opens_with_quality(tmp_path):
    _write(tmp_path)
    config = parse_args([str(tmp_path), str(tmp_path / "out"), "participant"])
    outcome = SimpleNamespace(ok=True, ran=["functional"], skipped=[], errors=[])
    page = render_participant_report(tmp_path, "01", outcome, config, "run-1")
    assert page.index("id='qc'") < page.index("id='summary'")
