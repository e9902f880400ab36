"""The brainlife.io app (brainlife/main): datatypes -> BIDS -> BrainScale -> output/ + product.json.

Truth: the BIDS folder built from the brainlife inputs holds byte-identical images and
gradients with the inputs' metadata, passes the app's own BIDS validation and input
collection, and product.json lists exactly the derivatives that were written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brainscale.bids_app import bids_index, subject_data

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "brainlife" / "main"


def load_bl2bids():
    spec = importlib.util.spec_from_file_location("bl2bids", REPO / "brainlife" / "bl2bids.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A brainlife.io-style sample: one folder per input datatype, named as brainlife names files."""
    root = tmp_path_factory.mktemp("brainlife")
    source = root / "synth"
    subprocess.run([Path(sys.executable).parent / "brainscale", "synth", str(source),
                    "--subjects", "1", "--sites", "1", "--bold-volumes", "20", "--directions",
                    "12"], check=True, capture_output=True)
    sub = source / "sub-01"
    layout = {
        "t1": {"t1.nii.gz": sub / "anat/sub-01_T1w.nii.gz"},
        "bold": {"bold.nii.gz": sub / "func/sub-01_task-rest_bold.nii.gz"},
        "dwi": {"dwi.nii.gz": sub / "dwi/sub-01_dwi.nii.gz", "dwi.bvals": sub / "dwi/sub-01_dwi.bval",
                "dwi.bvecs": sub / "dwi/sub-01_dwi.bvec"},
    }
    for folder, files in layout.items():
        (root / "inputs" / folder).mkdir(parents=True)
        for name, path in files.items():
            shutil.copyfile(path, root / "inputs" / folder / name)
    meta = {key: json.loads(next((sub / kind).glob("*.json")).read_text())
            for key, kind in (("t1", "anat"), ("bold", "func"), ("dwi", "dwi"))}
    meta["bold"]["TaskName"] = "rest"
    inputs = root / "inputs"
    config = {
        "t1": str(inputs / "t1/t1.nii.gz"),
        "bold": [str(inputs / "bold/bold.nii.gz")],
        "dwi": str(inputs / "dwi/dwi.nii.gz"),
        "bvals": str(inputs / "dwi/dwi.bvals"),
        "bvecs": str(inputs / "dwi/dwi.bvecs"),
        "options": "--reports-only",
        "_inputs": [
            {"id": "t1", "datatype": "neuro/anat/t1w", "keys": ["t1"],
             "meta": {"subject": "01", **meta["t1"]}},
            {"id": "bold", "datatype": "neuro/func/task", "keys": ["bold"],
             "meta": {"subject": "01", **meta["bold"]}},
            {"id": "dwi", "datatype": "neuro/dwi", "keys": ["dwi", "bvals", "bvecs"],
             "meta": {"subject": "01", **meta["dwi"]}},
        ],
    }
    return root, config, meta


@pytest.mark.parametrize("form", [
    pytest.param({"options": "--reports-only"}, id="reports-only"),
    pytest.param({"modalities": "anat", "options": ""}, id="anat", marks=pytest.mark.slow),
])
def test_main_maps_datatypes_to_bids_runs_and_returns_outputs(sample, tmp_path, form,
                                                              check_anat_outputs):
    """Reports only (fast), or the real anatomical pipeline (slow, checked against the truth)."""
    root, config, meta = sample
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "config.json").write_text(json.dumps({**config, **form}))
    env = {**os.environ, "BRAINSCALE_CMD": str(Path(sys.executable).parent / "run.py"),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([str(MAIN)], cwd=task_dir, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    bids_dir = task_dir / "bids"
    pairs = [("t1/t1.nii.gz", "anat/sub-01_T1w.nii.gz"),
             ("bold/bold.nii.gz", "func/sub-01_task-rest_bold.nii.gz"),
             ("dwi/dwi.nii.gz", "dwi/sub-01_dwi.nii.gz"), ("dwi/dwi.bvals", "dwi/sub-01_dwi.bval"),
             ("dwi/dwi.bvecs", "dwi/sub-01_dwi.bvec")]
    for source, target in pairs:
        assert (bids_dir / "sub-01" / target).read_bytes() == (root / "inputs" / source).read_bytes()
    # the app's own validation and input collection accept the dataset
    layout = bids_index.load_layout(bids_dir, validate=True)
    data = subject_data.collect_subject_data(layout, "01")
    assert len(data.t1w) == 1 and len(data.bold) == 1
    assert data.bold[0].metadata["RepetitionTime"] == meta["bold"]["RepetitionTime"]
    assert data.bold[0].metadata["SliceTiming"] == meta["bold"]["SliceTiming"]
    (series,) = data.dwi[""]
    assert series.metadata["TotalReadoutTime"] == meta["dwi"]["TotalReadoutTime"]
    assert Path(series.bval).read_bytes() == (root / "inputs/dwi/dwi.bvals").read_bytes()

    output = task_dir / "output"
    description = json.loads((output / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert "sub-01" in (output / "sub-01.html").read_text()
    product = json.loads((task_dir / "product.json").read_text())
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*")
                     if p.is_file() and not p.name.startswith("."))
    assert product["files"] == written
    assert product["meta"] == {"subject": "01"}
    assert [m["type"] for m in product["brainlife"]] == ["info"]
    assert not (task_dir / "work").exists()
    if form.get("modalities") == "anat":
        check_anat_outputs(output, root / "synth", ["sub-01"])
        assert "sub-01/anat/sub-01_atlas-DesikanKilliany_morph.tsv" in product["files"]
        assert not (output / "sub-01" / "func").exists()


def test_main_reports_failure_with_exit_code_and_error_message(sample, tmp_path):
    _, config, _ = sample
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "config.json").write_text(json.dumps({**config, "atlas": "NoSuchAtlas"}))
    env = {**os.environ, "BRAINSCALE_CMD": str(Path(sys.executable).parent / "run.py"),
           "PYTHON": sys.executable}
    result = subprocess.run([str(MAIN)], cwd=task_dir, env=env, capture_output=True, text=True)
    assert result.returncode == 64, result.stderr  # unknown atlas is a usage error
    product = json.loads((task_dir / "product.json").read_text())
    assert any(m["type"] == "error" for m in product["brainlife"])


def test_sessions_runs_and_options(tmp_path):
    bl2bids = load_bl2bids()
    files = {}
    for name in ("t1.nii.gz", "bold1.nii.gz", "bold2.nii.gz", "events1.tsv"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode())
    config = {
        "t1": str(files["t1.nii.gz"]),
        "bold": [str(files["bold1.nii.gz"]), str(files["bold2.nii.gz"])],
        "events": [str(files["events1.tsv"])],
        "modalities": "anat func", "atlas": ["Schaefer2018_200", "DesikanKilliany"],
        "nprocs": 4, "options": "--seed 7",
        "_inputs": [{"id": "bold", "keys": ["bold", "events"], "datatype": "neuro/func/task",
                     "meta": {"subject": "pat-07", "session": "pre", "TaskName": "n-back",
                              "RepetitionTime": 0.8, "lowercase_tag": "x"}}],
    }
    subject = bl2bids.config_to_bids(config, tmp_path / "bids")
    assert subject == "pat07"
    func = tmp_path / "bids/sub-pat07/ses-pre/func"
    assert sorted(p.name for p in func.iterdir()) == [
        "sub-pat07_ses-pre_task-nback_run-1_bold.json",
        "sub-pat07_ses-pre_task-nback_run-1_bold.nii.gz",
        "sub-pat07_ses-pre_task-nback_run-1_events.tsv",
        "sub-pat07_ses-pre_task-nback_run-2_bold.json",
        "sub-pat07_ses-pre_task-nback_run-2_bold.nii.gz",
    ]
    sidecar = json.loads((func / "sub-pat07_ses-pre_task-nback_run-2_bold.json").read_text())
    assert sidecar == {"RepetitionTime": 0.8, "TaskName": "nback"}
    assert (tmp_path / "bids/sub-pat07/ses-pre/anat/sub-pat07_ses-pre_T1w.nii.gz").read_bytes() \
        == b"t1.nii.gz"
    assert bl2bids.app_options(config) == [
        "--modalities", "anat", "func", "--atlas", "Schaefer2018_200", "DesikanKilliany",
        "--nprocs", "4", "--seed", "7"]
