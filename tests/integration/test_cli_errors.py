"""The BIDS-App's error paths, end to end through ``main``: exit codes, messages, files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from brainscale.bids_app.run import main
from brainscale.errors import ExitCode


@pytest.fixture
def ds005(bids_examples, tmp_path) -> Path:
    copy = tmp_path / "ds005"
    shutil.copytree(bids_examples / "ds005", copy)
    return copy


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def test_missing_bids_dir_is_66(tmp_path, capsys):
    code = main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"])
    assert code == ExitCode.NO_INPUT == 66
    assert "BIDS dataset folder not found" in capsys.readouterr().err


def test_unwritable_output_is_73(ds005, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main([str(ds005), str(blocker / "out"), "participant", "--skip-bids-validation"])
    assert code == ExitCode.CANNOT_CREATE_OUTPUT == 73
    assert "cannot create output_dir" in capsys.readouterr().err


def test_invalid_bids_is_16_and_names_the_file(ds005, tmp_path, capsys):
    (ds005 / "sub-03" / "func" / "sub-03_task-mixedgamblestask_bolt.nii.gz").write_bytes(b"")
    code = main([str(ds005), str(tmp_path / "out"), "participant"])
    assert code == ExitCode.VALIDATION_FAILED == 16
    assert "sub-03_task-mixedgamblestask_bolt.nii.gz: file name is not valid BIDS" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out" / "sub-03").exists()


def test_unknown_participant_is_18(ds005, tmp_path, capsys):
    code = main([str(ds005), str(tmp_path / "out"), "participant", "--participant-label", "42"])
    assert code == ExitCode.NOTHING_SELECTED == 18
    assert "sub-42 not found" in capsys.readouterr().err


def test_filter_selecting_nothing_is_18(ds005, tmp_path, capsys):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"task": "nosuchtask"}}))
    code = main([str(ds005), str(tmp_path / "out"), "participant", "--modalities", "func",
                 "--bids-filter-file", str(filters)])
    assert code == 18
    assert "no func data" in capsys.readouterr().err


def test_unknown_atlas_is_usage_error(ds005, tmp_path, capsys):
    code = main([str(ds005), str(tmp_path / "out"), "participant", "--atlas", "Nowhere"])
    assert code == ExitCode.USAGE
    assert "atlas 'Nowhere' is not available offline" in capsys.readouterr().err


def test_empty_images_are_65_with_one_line_per_file_and_no_outputs(ds005, tmp_path):
    before = _snapshot(ds005)
    out = tmp_path / "out"
    code = main([str(ds005), str(out), "participant", "--participant-label", "01", "02",
                 "--work-dir", str(tmp_path / "work")])
    assert code == ExitCode.DATA_ERROR == 65
    for subject in ("01", "02"):
        report = (out / f"sub-{subject}.html").read_text()
        assert "FAILED" in report
        assert f"sub-{subject}_T1w.nii.gz: file is empty (0 bytes)" in report
        assert "run-03_bold.nii.gz: file is empty (0 bytes)" in report
        assert not (out / f"sub-{subject}").exists()  # no partial derivatives
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert list((out / "logs").glob("config-*.toml"))
    assert _snapshot(ds005) == before  # nothing written into bids_dir


def test_group_without_participant_outputs_is_66(ds005, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main([str(ds005), str(tmp_path / "out"), "group"]) == ExitCode.NO_INPUT
    assert "run the participant level first" in capsys.readouterr().err
