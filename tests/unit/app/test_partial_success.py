"""Degrade, do not fail: denoising fallbacks, GLM notes, parts and exit codes; the CompCor
sidecar convention nilearn relies on."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.bids_app.participant_run import (
    ParticipantOutcome,
    _failed_parts,
    summarize_outcomes,
)
from brainscale.errors import ExitCode, InputDataError
from brainscale.workflows.engine import NodeFailure, WorkflowFailedError
from brainscale.workflows.func.confounds import compute_confounds, expand_terms
from brainscale.workflows.func.denoise import degrees_of_freedom, denoise_timeseries, fit_strategy
from brainscale.workflows.func.motion import MOTION_COLUMNS
from brainscale.workflows.participant import GraphPart


def _table(n_vols: int, n_nonsteady: int = 0, n_comp: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = [
        expand_terms(pd.DataFrame(rng.standard_normal((n_vols, 6)), columns=MOTION_COLUMNS)),
        expand_terms(pd.DataFrame(rng.standard_normal((n_vols, 3)),
                                  columns=["global_signal", "csf", "white_matter"])),
        pd.DataFrame(rng.standard_normal((n_vols, n_comp)),
                     columns=[f"a_comp_cor_{k:02d}" for k in range(n_comp)]),
    ]
    for k in range(n_nonsteady):
        parts.append(pd.DataFrame({f"non_steady_state_outlier_{k:02d}":
                                   (np.arange(n_vols) == k).astype(float)}))
    return pd.concat(parts, axis=1)


def test_short_run_falls_back_to_the_largest_strategy_the_dof_allow():
    # sub-02 of ds-real-mini: 20 volumes; 36 regressors leave -17 degrees of freedom
    table = _table(20)
    assert degrees_of_freedom(table, "36P") < 10
    used, note = fit_strategy(table, "36P")
    # 24P leaves 20 - 24 - 1 < 10, 9P leaves 10: the largest that fits
    assert used == "9P" and degrees_of_freedom(table, "9P") == 10
    assert "'36P'" in note and "'9P'" in note
    cleaned, kept = denoise_timeseries(np.random.default_rng(1).standard_normal((20, 4)),
                                       table, used, 2.0)
    assert cleaned.shape == (20, 4) and len(kept) == 20
    assert fit_strategy(_table(200), "36P") == ("36P", None)
    # scrubbing is kept along the fallbacks; acompcor falls back within its family
    assert fit_strategy(table, "36P_scrub")[0] == "9P_scrub"
    assert fit_strategy(_table(14), "acompcor")[0] == "none"
    assert fit_strategy(_table(28), "acompcor_gsr")[0] == "acompcor"  # 28 - 19 < 10


def test_too_few_volumes_for_any_strategy_is_an_input_error():
    with pytest.raises(InputDataError, match="too few for any denoising"):
        fit_strategy(_table(12, n_nonsteady=3), "6P")


def test_compcor_sidecar_keys_match_the_tsv_as_in_fmriprep(tmp_path):
    """Retained components under their column names, dropped ones as ``dropped_N``.

    nilearn counts the ``a_comp_cor_*`` keys of the sidecar to choose TSV columns, so a
    dropped component listed under a column name gives a KeyError (issue 13).
    """
    from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy

    rng = np.random.default_rng(0)
    shape, n_vols = (12, 12, 10), 60
    data = rng.standard_normal(shape + (n_vols,)) + 100
    brain = np.zeros(shape, bool)
    brain[2:10, 2:10, 2:8] = True
    wm = np.zeros(shape)
    wm[3:9, 3:9, 3:7] = 1.0
    csf = np.zeros(shape)
    csf[5:7, 5:7, 4:6] = 1.0
    motion = np.cumsum(rng.normal(0, 0.01, (n_vols, 6)), axis=0)
    table, meta = compute_confounds(data, brain, csf, wm, motion, tr=2.0, n_nonsteady=2)
    retained = [c for c in table.columns if c.startswith(("a_comp_cor", "t_comp_cor"))]
    listed = [k for k in meta if "_comp_cor_" in k]
    assert sorted(listed) == sorted(retained)
    dropped = [k for k in meta if k.startswith("dropped_")]
    assert dropped and not any(meta[k]["Retained"] for k in dropped)
    assert all(meta[k]["Retained"] for k in listed)
    assert {meta[k]["Mask"] for k in listed if k.startswith("a_")} == {"combined"}
    # written as our sink names them, next to a preprocessed BOLD
    stem = tmp_path / "sub-01_task-rest"
    img = f"{stem}_space-MNI152NLin2009aSym_res-2_desc-preproc_bold.nii.gz"
    nib.save(nib.Nifti1Image(data[..., :n_vols].astype(np.float32), np.eye(4)), img)
    table.to_csv(f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False,
                 na_rep="n/a")
    Path(f"{stem}_desc-confounds_timeseries.json").write_text(json.dumps(meta))
    confounds, _ = load_confounds(img, strategy=("high_pass", "compcor"),
                                  compcor="anat_combined")
    cosines = [c for c in table.columns if c.startswith("cosine_")]
    assert sorted(confounds.columns) == sorted(
        [c for c in retained if c.startswith("a_")] + cosines)
    confounds, _ = load_confounds_strategy(img, denoise_strategy="compcor")
    assert len(confounds) == n_vols


def _part(name: str, needs_anat: bool = True) -> GraphPart:
    return GraphPart(name, name, Path("/staging") / ("anat" if name == "anat_wf" else name),
                     needs_anat)


def test_a_failed_part_spares_the_others_but_anat_takes_its_dependents():
    parts = [_part("anat_wf", False), _part("func_00_wf"), _part("dwi_ses_none_wf")]

    def failure(node: str) -> WorkflowFailedError:
        return WorkflowFailedError("sub_01_wf", [NodeFailure(node, "ValueError: x", "c.txt")])

    assert _failed_parts(parts, None, False) == set()
    assert _failed_parts(parts, failure("sub_01_wf.func_00_wf.connectivity"), False) == {
        "func_00_wf"}
    assert _failed_parts(parts, failure("sub_01_wf.anat_wf.segment"), False) == {
        "anat_wf", "func_00_wf", "dwi_ses_none_wf"}
    assert _failed_parts(parts, failure("sub_01_wf"), False) == {p.name for p in parts}
    assert len(_failed_parts(parts, failure("sub_01_wf.func_00_wf.x"), True)) == 3


def test_exit_codes_tell_complete_partial_and_failed_apart():
    complete = ParticipantOutcome("01", ok=True)
    partial = ParticipantOutcome("02", published=["anatomical"], failed_parts=["func"],
                                 exit_code=ExitCode.FAILURE)
    bad_data = ParticipantOutcome("03", exit_code=ExitCode.DATA_ERROR)
    locked = ParticipantOutcome("04", exit_code=ExitCode.TEMPORARY_FAILURE)
    assert (complete.status, partial.status, bad_data.status) == ("completed", "partial",
                                                                   "failed")
    assert summarize_outcomes([complete]) == ExitCode.OK == 0
    assert summarize_outcomes([complete, partial]) == ExitCode.PARTIAL == 3
    assert summarize_outcomes([complete, partial, bad_data]) == ExitCode.DATA_ERROR
    assert summarize_outcomes([locked]) == ExitCode.TEMPORARY_FAILURE
    assert summarize_outcomes([bad_data, locked]) == ExitCode.FAILURE


def test_task_run_without_usable_events_skips_the_glm_with_a_note(tmp_path):
    from brainscale.bids_app.subject_data import BoldRun
    from brainscale.workflows.participant import ParticipantPlan, _usable_events

    plan = ParticipantPlan(subject="01")
    events = tmp_path / "sub-01_task-nback_events.tsv"
    assert _usable_events(BoldRun(str(tmp_path / "sub-01_task-nback_bold.nii.gz"), {}),
                          plan) is None
    events.write_text("onset\tduration\ttrial_type\n")
    run = BoldRun(str(tmp_path / "sub-01_task-nback_bold.nii.gz"), {}, events=str(events))
    assert _usable_events(run, plan) is None
    events.write_text("onset\tduration\ttrial_type\n0\t10\t2back\n")
    assert _usable_events(run, plan) == str(events)
    assert len(plan.skipped) == 2 and all("GLM" in s for s in plan.skipped)
    rest = ParticipantPlan(subject="01")
    assert _usable_events(BoldRun(str(tmp_path / "sub-01_task-rest_bold.nii.gz"), {}),
                          rest) is None
    assert rest.skipped == []
