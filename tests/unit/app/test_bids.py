"""BIDS input on the bids-examples layouts: indexing, selection, inheritance, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from brainscale.bids_app import bids_index, bids_selection, input_checks, subject_data
from brainscale.errors import (
    BIDSValidationError,
    InputDataError,
    NothingSelectedError,
    UsageError,
)

LAYOUTS = ("ds001", "ds005", "ds114", "ds000117", "7t_trt", "synthetic")


def _count_on_disk(root: Path, subject: str, datatype: str, suffix: str) -> int:
    """Count a participant's images by walking the folder (independent of pybids)."""
    return len(list((root / f"sub-{subject}").glob(f"**/{datatype}/*_{suffix}.nii*")))


@pytest.fixture(scope="module")
def layouts(bids_examples):
    return {name: bids_index.load_layout(bids_examples / name, validate=True) for name in LAYOUTS}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_example_validates_indexes_and_selects(layouts, name):
    layout = layouts[name]
    root = Path(layout.root)
    on_disk = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    sessions = {p.name[4:] for p in root.glob("sub-*/ses-*") if p.is_dir()}
    subjects = bids_selection.select_participants(layout, [])
    assert subjects == on_disk
    assert set(layout.get_sessions()) == sessions
    for subject in (subjects[0], subjects[-1]):
        data = subject_data.collect_subject_data(layout, subject)
        assert len(data.t1w) == _count_on_disk(root, subject, "anat", "T1w")
        assert len(data.bold) == _count_on_disk(root, subject, "func", "bold")
        assert sum(map(len, data.dwi.values())) == _count_on_disk(root, subject, "dwi", "dwi")
    assert all(Path(p).name.startswith(f"sub-{subjects[-1]}_") for p in data.files())


def test_session_selection_and_inherited_metadata(layouts):
    data = subject_data.collect_subject_data(layouts["ds114"], "01", sessions=["test"])
    assert len(data.t1w) == 1 and "ses-test" in data.t1w[0]
    assert set(data.dwi) == {"test"}
    series = data.dwi["test"][0]
    assert Path(series.bval).name == "dwi.bval" and Path(series.bvec).name == "dwi.bvec"
    fingertapping = [r for r in data.bold if "fingerfootlips" in r.path][0]
    assert fingertapping.metadata["RepetitionTime"] == 2.5  # from task-*_bold.json at the top


def test_filter_file_restricts_runs(layouts, tmp_path):
    path = tmp_path / "filter.json"
    path.write_text(json.dumps({"bold": {"task": "balloonanalogrisktask", "run": [1]}}))
    data = subject_data.collect_subject_data(layouts["ds001"], "01", queries=bids_selection.load_filters(path))
    assert [Path(r.path).name for r in data.bold] == ["sub-01_task-balloonanalogrisktask_run-01_bold.nii.gz"]


@pytest.mark.parametrize("content,match", [("{", "invalid JSON"), ('{"pet": {}}', "unknown input")])
def test_bad_filter_file_is_usage_error(tmp_path, content, match):
    path = tmp_path / "filter.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=match):
        bids_selection.load_filters(path)


def test_zero_byte_images_get_one_clear_error_per_file(layouts):
    data = subject_data.collect_subject_data(layouts["ds114"], "02")
    problems = input_checks.check_input_files(data, ("anat", "func", "dwi"))
    assert len(problems) == len(data.files())
    assert all(p.endswith(": file is empty (0 bytes)") for p in problems)
    with pytest.raises(InputDataError, match="sub-02: 14 unusable input file"):
        input_checks.raise_for_problems("02", problems)


def test_missing_participant_is_nothing_selected(layouts):
    with pytest.raises(NothingSelectedError, match="sub-99 not found"):
        bids_selection.select_participants(layouts["ds005"], ["01", "99"])


def test_array_index_picks_from_sorted_selection():
    assert bids_selection.select_array_task(["01", "02", "03"], 1) == ["02"]
    assert bids_selection.select_array_task(["01", "02"], None) == ["01", "02"]
    with pytest.raises(UsageError, match="out of range"):
        bids_selection.select_array_task(["01", "02"], 2)


def test_invalid_dataset_fails_validation_but_not_when_skipped(bids_examples, tmp_path):
    copy = tmp_path / "ds005"
    shutil.copytree(bids_examples / "ds005", copy)
    (copy / "sub-01" / "anat" / "sub-01_T1weighted.nii.gz").write_bytes(b"")
    with pytest.raises(BIDSValidationError, match="sub-01_T1weighted.nii.gz: file name is not"):
        bids_index.load_layout(copy, validate=True)
    assert bids_index.load_layout(copy, validate=False).get_subjects()


def test_output_inside_bids_dir_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(UsageError, match="never writes into"):
        bids_index.check_dataset_paths(tmp_path / "raw", tmp_path / "raw" / "derivatives", None)


def test_intended_for_fieldmaps_are_found_and_complete(bids_examples):
    layout = bids_index.load_layout(bids_examples / "ds000117", validate=False)
    found = 0
    for subject in ("01", "08"):
        for run in subject_data.collect_subject_data(layout, subject).bold:
            if run.fieldmap is not None:
                found += 1
                assert Path(run.fieldmap["phasediff"]).is_file()
                assert Path(run.fieldmap["magnitude"]).is_file()
                assert "EchoTime1" in run.fieldmap["metadata"] or "EchoTime2" in run.fieldmap["metadata"]
    assert found > 0
