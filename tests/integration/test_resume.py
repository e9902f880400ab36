"""Determinism end to end, and what downstream tools read from our outputs.

One synthetic participant (a T1w, a 30-volume BOLD run, a 6-direction DWI series) is
processed twice: once straight through, once stopped by SIGTERM in the middle and resumed
from its work directory. Same inputs, seed and thread count: the two runs' derivatives
must be identical, file by file (images voxel by voxel), anatomy included (brain masks
differed by ~1000 voxels between runs until the shared templates became read-only: the
pseudo-head template had been written into the template cached by a worker process). The outputs are then read the way users read fMRIPrep's: nilearn's ``load_confounds`` and
``load_confounds_strategy`` for every strategy they offer (ICA-AROMA aside, which needs
AROMA outputs), and pybids on the derivatives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.bids_app.publish import read_manifest
from brainscale.bids_app.synth import SynthSpec, generate_dataset

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ARGS = ("--participant-label", "01", "--nprocs", "2", "--omp-nthreads", "1", "--seed", "7")
MODALITIES = ("anat", "func", "dwi")
#: Files whose bytes legitimately differ between runs (figures carry no science; the
#: report and the manifest name the run).
NOT_COMPARED = (".svg", ".html", ".brainscale-complete.json")


def _app(bids_dir: Path, out: Path, work: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), str(bids_dir), str(out), "participant",
         "-w", str(work), *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    bids_dir = root / "bids"
    generate_dataset(bids_dir, SynthSpec(subjects=1, sites=1, bold_volumes=30, directions=6,
                                         modalities=MODALITIES))
    straight = _app(bids_dir, root / "straight", root / "work_straight")
    _, err = straight.communicate(timeout=3000)
    assert straight.returncode == 0, err
    interrupted = _app(bids_dir, root / "resumed", root / "work_resumed")
    deadline = time.monotonic() + 1200
    while len(list((root / "work_resumed").rglob("result_*.pklz"))) < 15:
        assert interrupted.poll() is None and time.monotonic() < deadline
        time.sleep(1)
    interrupted.send_signal(signal.SIGTERM)
    _, err = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 143, err
    assert not (root / "resumed" / "sub-01").exists()
    resumed = _app(bids_dir, root / "resumed", root / "work_resumed")
    _, err = resumed.communicate(timeout=3000)
    assert resumed.returncode == 0, err
    return root / "straight", root / "resumed"


def _differs(a: Path, b: Path) -> str | None:
    if a.name.endswith((".nii", ".nii.gz")):
        ia, ib = nib.load(a), nib.load(b)
        da, db = np.asarray(ia.dataobj), np.asarray(ib.dataobj)
        if ia.shape != ib.shape or not np.allclose(ia.affine, ib.affine, rtol=0, atol=0):
            return "grid"
        if not np.array_equal(da, db, equal_nan=da.dtype.kind == "f"):
            return f"{np.count_nonzero(da != db)} voxels"
        return None
    if a.name.endswith(".trx"):  # a zip archive: its members, not the entries' timestamps
        import zipfile

        with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
            if sorted(za.namelist()) != sorted(zb.namelist()):
                return "members"
            changed = [n for n in za.namelist() if za.read(n) != zb.read(n)]
            return f"members {changed}" if changed else None
    return None if a.read_bytes() == b.read_bytes() else "content"


def test_resumed_run_equals_uninterrupted_run(runs):
    straight, resumed = runs
    files = sorted(read_manifest(straight, "01")["files"])
    assert files == sorted(read_manifest(resumed, "01")["files"])
    datatypes = {f.split("/")[0] for f in files}
    assert set(MODALITIES) <= datatypes
    compared = [f for f in files if not f.endswith(NOT_COMPARED)]
    differences = {f: d for f in compared
                   if (d := _differs(straight / "sub-01" / f, resumed / "sub-01" / f))}
    assert not differences, differences
    assert len(compared) > 30


def test_short_run_denoising_fell_back_and_says_so(runs):
    straight, _ = runs
    sidecar = next((straight / "sub-01" / "func").glob("*_atlas-*_timeseries.json"))
    meta = json.loads(sidecar.read_text())
    # 28 steady volumes: 36P and 24P leave < 10 degrees of freedom, 9P leaves 18
    assert meta["DenoisingStrategyRequested"] == "36P" and meta["DenoisingStrategy"] == "9P"
    assert "needs more volumes" in meta["DenoisingNote"]
    assert "9P" in (straight / "sub-01.html").read_text()


def _preproc_bold(out: Path) -> str:
    return str(next((out / "sub-01" / "func").glob(
        "*_space-MNI152NLin2009aSym_*desc-preproc_bold.nii.gz")))


LOAD_CONFOUNDS = {
    "motion": [{"motion": m} for m in ("basic", "power2", "derivatives", "full")],
    "wm_csf": [{"wm_csf": m} for m in ("basic", "power2", "derivatives", "full")],
    "global_signal": [{"global_signal": m} for m in ("basic", "power2", "derivatives",
                                                    "full")],
    # the *_separated variants need WM-only and CSF-only aCompCor, which BrainScale does not
    # compute (only the combined mask, as XCP-D and nilearn's presets use)
    "compcor": [{"compcor": c, "n_compcor": n}
                for c in ("anat_combined", "temporal", "temporal_anat_combined")
                for n in ("all", 2)],
    "high_pass": [{}],
    "scrub": [{"scrub": 0, "fd_threshold": 0.2, "std_dvars_threshold": 1.5}],
    "non_steady_state": [{}],
}


@pytest.mark.parametrize("strategy", sorted(LOAD_CONFOUNDS))
def test_nilearn_load_confounds_reads_every_strategy(runs, strategy):
    from nilearn.interfaces.fmriprep import load_confounds

    straight, _ = runs
    img = _preproc_bold(straight)
    table = pd.read_csv(img.split("_space-")[0] + "_desc-confounds_timeseries.tsv", sep="\t")
    meta = json.loads(Path(img.split("_space-")[0] + "_desc-confounds_timeseries.json")
                      .read_text())
    # nilearn requires the cosine regressors with fMRIPrep's CompCor
    chosen = ("high_pass", strategy) if strategy == "compcor" else (strategy,)
    cosines = [c for c in table.columns if c.startswith("cosine_")]
    for options in LOAD_CONFOUNDS[strategy]:
        confounds, sample_mask = load_confounds(img, strategy=chosen, **options)
        assert len(confounds) == len(table) == 30, options
        assert set(confounds.columns) <= set(table.columns)
        assert np.isfinite(confounds.to_numpy()).all()
        if strategy == "compcor" and options["compcor"] == "anat_combined":
            retained = [k for k, v in meta.items() if k.startswith("a_comp_cor")]
            expected = retained if options["n_compcor"] == "all" else retained[:2]
            assert expected and sorted(confounds.columns) == sorted(expected + cosines)
            assert all(meta[k]["Retained"] for k in retained)
        if strategy == "non_steady_state":
            assert sample_mask is not None and 0 not in sample_mask and 1 not in sample_mask


@pytest.mark.parametrize("preset", ["simple", "scrubbing", "compcor"])
def test_nilearn_load_confounds_strategy_reads_every_preset(runs, preset):
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    straight, _ = runs
    confounds, _ = load_confounds_strategy(_preproc_bold(straight), denoise_strategy=preset)
    assert len(confounds) == 30 and confounds.shape[1] >= 6
    assert np.isfinite(confounds.to_numpy()).all()


def test_pybids_reads_the_derivatives(runs):
    from bids import BIDSLayout

    straight, _ = runs
    layout = BIDSLayout(str(straight), validate=False, config=["bids", "derivatives"])
    assert layout.get_subjects() == ["01"]
    assert len(layout.get(subject="01", datatype="func", desc="confounds",
                          suffix="timeseries", extension=".tsv")) == 1
    bold = layout.get(subject="01", space="MNI152NLin2009aSym", desc="preproc",
                      suffix="bold", extension=".nii.gz")
    assert len(bold) == 1 and bold[0].get_metadata()["RepetitionTime"] == 2.0
    assert layout.get(subject="01", datatype="dwi", desc="preproc", suffix="dwi",
                      extension=".nii.gz")
    # the hidden manifest is not mistaken for a derivative
    assert not [f for f in layout.get(subject="01") if "brainscale-complete" in f.path]
