"""The functional workflow: one BOLD run from raw data to confounds and connectivity.

:func:`init_func_wf` plans the run from its metadata and composes one sub-workflow per
stage, each in its own module and wired only through its ``inputnode``/``outputnode``:
preprocessing (:mod:`~brainscale.workflows.func.fit_wf`, with distortion correction in
:mod:`~brainscale.workflows.func.sdc_wf`), confounds
(:mod:`~brainscale.workflows.func.confounds_wf`), connectivity
(:mod:`~brainscale.workflows.func.connectivity_wf`), the GLM of a task run
(:mod:`~brainscale.workflows.func.glm_wf`), decoding
(:mod:`~brainscale.workflows.func.brain_states_wf`), and the outputs: derivatives
(:mod:`~brainscale.workflows.func.outputs`), figures and IQMs
(:mod:`~brainscale.workflows.func.reports_wf`). Each stage attaches its methods text
(``__desc__``, :mod:`brainscale.workflows.func.methods`), collected from the built graph by
:func:`brainscale.workflows.methods.collect_descriptions`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.errors import InputDataError, UsageError
from brainscale.workflows.func.confounds_wf import init_bold_confounds_wf
from brainscale.workflows.func.connectivity_wf import init_bold_connectivity_wf
from brainscale.workflows.func.denoise import DEFAULT_DENOISE_STRATEGY, parse_strategy
from brainscale.workflows.func.fit_wf import INPUT_FIELDS as FIT_INPUTS
from brainscale.workflows.func.fit_wf import init_bold_fit_wf
from brainscale.workflows.func.glm_wf import init_bold_glm_wf
from brainscale.workflows.func.outputs import init_func_derivatives_wf
from brainscale.workflows.func.reports_wf import init_bold_iqms_wf, init_func_reports_wf
from brainscale.workflows.func.sdc import total_readout_time

INPUT_FIELDS = ("t1w_preproc", "t1w_mask", "t1w_dseg", "t1w_tpms", "anat2std_xfm",
                "std2anat_xfm")
OUTPUT_FIELDS = ("boldref", "bold_mask", "bold_std", "bold_t1w", "confounds", "timeseries",
                 "relmat_pearson", "relmat_partial", "zmaps")
STD_RESOLUTION = 2
"""Voxel size (mm) of the template-space BOLD outputs."""


def _default_name(bold_file: str) -> str:
    stem = Path(bold_file).name.split(".")[0]
    stem = re.sub(r"_bold$", "", stem)
    return "func_" + re.sub(r"[^A-Za-z0-9]+", "_", stem) + "_wf"


def _check_metadata(bold_file: str, metadata: dict, denoise_strategy: str) -> float:
    tr = metadata.get("RepetitionTime")
    try:
        tr = float(tr)
    except (TypeError, ValueError) as err:
        raise InputDataError(
            f"{bold_file}: RepetitionTime is missing or not a number ({tr!r})") from err
    if tr <= 0:
        raise InputDataError(f"{bold_file}: RepetitionTime must be positive, got {tr}")
    try:
        parse_strategy(denoise_strategy)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return tr


def _sdc_plan(metadata: dict, fieldmap: dict | None) -> tuple[dict | None, str]:
    """Decide at build time whether distortion correction can run, and say why not."""
    if not fieldmap:
        return None, "None: no phase-difference field map for this run"
    fmap_meta = fieldmap.get("metadata", {})
    readout = total_readout_time(metadata)
    missing = [key for key, ok in (
        ("PhaseEncodingDirection", metadata.get("PhaseEncodingDirection")),
        ("TotalReadoutTime or EffectiveEchoSpacing", readout),
        ("EchoTime1", fmap_meta.get("EchoTime1")), ("EchoTime2", fmap_meta.get("EchoTime2")),
    ) if not ok]
    if missing:
        return None, f"None: field map found but {', '.join(missing)} missing"
    params = {
        "phasediff_file": str(fieldmap["phasediff"]),
        "magnitude_file": str(fieldmap["magnitude"]),
        "echo_time1": float(fmap_meta["EchoTime1"]),
        "echo_time2": float(fmap_meta["EchoTime2"]),
        "total_readout_time": readout,
        "pe_direction": str(metadata["PhaseEncodingDirection"]),
    }
    note = (f"phase-difference field map {Path(fieldmap['phasediff']).name} (unwrapped, "
            "registered rigidly to the BOLD reference), voxel shifts applied in the one-shot "
            "resampling")
    return params, note


def _bold_meta(metadata: dict, has_anat: bool) -> dict:
    times = metadata.get("SliceTiming")
    corrected = times is not None and len(set(times)) > 1
    meta = {
        "RepetitionTime": float(metadata["RepetitionTime"]),
        "SkullStripped": False,
        "SliceTimingCorrected": bool(corrected),
        "Interpolation": "cubic B-spline, one step (head motion + coregistration + warp)",
    }
    if corrected:
        meta["StartTime"] = (min(times) + max(times)) / 2.0
    else:
        meta["SliceTimingNote"] = "SliceTiming absent or constant: not corrected"
    if "TaskName" in metadata:
        meta["TaskName"] = metadata["TaskName"]
    if not has_anat:
        meta["RegistrationNote"] = (
            "No T1w: the BOLD reference was registered directly to the template (affine)")
    return meta


def init_func_wf(
    *,
    bold_file: str,
    metadata: dict,
    has_anat: bool,
    output_dir: str,
    atlases: list[str],
    denoise_strategy: str = DEFAULT_DENOISE_STRATEGY,
    omp_nthreads: int = 1,
    seed: int = 0,
    events_file: str | None = None,
    fieldmap: dict | None = None,
    decoding=None,
    name: str | None = None,
) -> pe.Workflow:
    """Build the workflow of one BOLD run.

    Parameters
    ----------
    bold_file : str
        Raw BOLD NIfTI.
    metadata : dict
        Its BIDS sidecar (``RepetitionTime`` required; ``SliceTiming`` optional).
    has_anat : bool
        Whether the anatomical inputs are connected; otherwise the BOLD-only path
        registers the BOLD reference to the template.
    output_dir : str
        Derivatives folder.
    atlases : list of str
        Atlas names (see :func:`brainscale.resources.get_atlas`).
    denoise_strategy : str
        Denoising strategy (:mod:`brainscale.workflows.func.denoise`).
    omp_nthreads : int
        Threads of the registration and resampling nodes.
    seed : int
        Random seed of the registration.
    events_file : str, optional
        ``events.tsv`` of a task run: a first-level GLM is fitted.
    fieldmap : dict, optional
        A GRE phase-difference field map intended for this run: ``{"phasediff": path,
        "magnitude": path (magnitude1), "metadata": phasediff sidecar}``. Used for
        susceptibility distortion correction when the run's sidecar has
        ``PhaseEncodingDirection`` and a readout time; otherwise skipped with a note.
    decoding : brainscale.workflows.func.brain_states_wf.DecodingSettings, optional
        With ``events_file``: decode the task conditions (sub-workflow
        :func:`~brainscale.workflows.func.brain_states_wf.init_bold_brain_states_wf`, first atlas).
    name : str, optional
        Workflow name (default from the BOLD file name).

    Returns
    -------
    nipype.pipeline.engine.Workflow
        With ``inputnode`` (fields :data:`INPUT_FIELDS`) and ``outputnode``
        (:data:`OUTPUT_FIELDS`).
    """
    _check_metadata(bold_file, metadata, denoise_strategy)
    sdc_params, sdc_note = _sdc_plan(metadata, fieldmap)
    workflow = pe.Workflow(name=name or _default_name(bold_file))
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    bold_meta = _bold_meta(metadata, has_anat)
    bold_meta["SusceptibilityDistortionCorrection"] = sdc_note
    # the series that confounds, carpet plot and IQMs measure: T1w space, else template
    space = "t1w" if has_anat else "std"

    fit_wf = init_bold_fit_wf(bold_file=bold_file, metadata=metadata, has_anat=has_anat,
                              sdc_params=sdc_params, std_resolution=STD_RESOLUTION,
                              omp_nthreads=omp_nthreads, seed=seed)
    confounds_wf = init_bold_confounds_wf()
    connectivity_wf = init_bold_connectivity_wf(atlases=atlases,
                                                denoise_strategy=denoise_strategy,
                                                source_name=Path(bold_file).name)
    derivatives_wf = init_func_derivatives_wf(
        bold_file=bold_file, output_dir=output_dir, atlases=atlases, has_anat=has_anat,
        bold_meta=bold_meta, std_resolution=STD_RESOLUTION, glm=bool(events_file))
    reports_wf = init_func_reports_wf(bold_file=bold_file, output_dir=output_dir,
                                      atlases=atlases, has_anat=has_anat,
                                      denoise_strategy=denoise_strategy)
    iqms_wf = init_bold_iqms_wf(bold_file=bold_file, output_dir=output_dir)

    fit = "outputnode."
    workflow.connect([
        (inputnode, fit_wf, [(f, f"inputnode.{f}") for f in FIT_INPUTS]),
        (fit_wf, confounds_wf, [(fit + f"bold_{space}", "inputnode.bold"),
                                (fit + f"mask_{space}", "inputnode.bold_mask"),
                                (fit + "motion_params", "inputnode.motion_params"),
                                (fit + "repetition_time", "inputnode.repetition_time"),
                                (fit + "n_nonsteady", "inputnode.n_nonsteady")]),
        (inputnode if has_anat else fit_wf, confounds_wf, [
            ("t1w_tpms" if has_anat else fit + "template_tpms", "inputnode.tpm_files")]),
        (fit_wf, connectivity_wf, [(fit + "bold_std", "inputnode.bold_std"),
                                   (fit + "repetition_time", "inputnode.repetition_time")]),
        (confounds_wf, connectivity_wf, [("outputnode.confounds", "inputnode.confounds")]),
        (fit_wf, derivatives_wf, [(fit + f, f"inputnode.{f}") for f in (
            "boldref", "bold_mask", "bold_std", "boldref_std", "mask_std", "bold2anat_xfm",
            *(("bold_t1w", "boldref_t1w") if has_anat else ()))]),
        (confounds_wf, derivatives_wf, [
            ("outputnode.confounds", "inputnode.confounds"),
            ("outputnode.confounds_metadata", "inputnode.confounds_metadata")]),
        (connectivity_wf, derivatives_wf, [
            ("outputnode.metadata", "inputnode.connectivity_metadata"),
            *[(f"outputnode.{f}", f"inputnode.{f}") for f in (
                "timeseries", "relmat_pearson", "relmat_partial", "relmat_pearson_z",
                "relmat_partial_z")]]),
        (fit_wf, reports_wf, [(fit + f"bold_{space}", "inputnode.bold"),
                              (fit + f"mask_{space}", "inputnode.bold_mask"),
                              (fit + "repetition_time", "inputnode.repetition_time"),
                              (fit + f"boldref_{space}", "inputnode.boldref_anat")]),
        (inputnode if has_anat else fit_wf, reports_wf, [
            ("t1w_preproc" if has_anat else fit + "template", "inputnode.anat")]),
        (confounds_wf, reports_wf, [("outputnode.confounds", "inputnode.confounds")]),
        (connectivity_wf, reports_wf, [("outputnode.figures",
                                        "inputnode.connectivity_figures")]),
        (fit_wf, iqms_wf, [(fit + "bold_mask", "inputnode.boldref_mask"),
                           (fit + "n_nonsteady", "inputnode.n_nonsteady"),
                           (fit + f"bold_{space}", "inputnode.series"),
                           (fit + f"mask_{space}", "inputnode.series_mask")]),
        (confounds_wf, iqms_wf, [("outputnode.confounds", "inputnode.confounds")]),
        (fit_wf, outputnode, [(fit + "boldref", "boldref"), (fit + "bold_mask", "bold_mask"),
                              (fit + "bold_std", "bold_std"),
                              *([(fit + "bold_t1w", "bold_t1w")] if has_anat else [])]),
        (confounds_wf, outputnode, [("outputnode.confounds", "confounds")]),
        (connectivity_wf, outputnode, [("outputnode.timeseries", "timeseries"),
                                       ("outputnode.relmat_pearson", "relmat_pearson"),
                                       ("outputnode.relmat_partial", "relmat_partial")]),
    ])
    if events_file:
        glm_wf = init_bold_glm_wf(events_file=events_file)
        workflow.connect([
            (fit_wf, glm_wf, [(fit + "bold_std", "inputnode.bold_std"),
                              (fit + "mask_std", "inputnode.bold_std_mask"),
                              (fit + "repetition_time", "inputnode.repetition_time"),
                              (fit + "n_nonsteady", "inputnode.n_nonsteady")]),
            (confounds_wf, glm_wf, [("outputnode.confounds", "inputnode.confounds")]),
            (glm_wf, derivatives_wf, [("outputnode.zmaps", "inputnode.zmaps"),
                                      ("outputnode.condition_labels",
                                       "inputnode.condition_labels")]),
            (glm_wf, outputnode, [("outputnode.zmaps", "zmaps")]),
        ])
    if events_file and decoding is not None:
        _connect_brain_states(workflow, fit_wf, confounds_wf, bold_file=bold_file,
                              output_dir=output_dir, events_file=events_file,
                              atlas=atlases[0], seed=seed, decoding=decoding,
                              repetition_time=metadata.get("RepetitionTime"))
    return workflow


def _connect_brain_states(workflow, fit_wf, confounds_wf, *, bold_file, output_dir, events_file,
                          atlas, seed, decoding, repetition_time):
    """Add the decoding sub-workflow of a task run (skipped, with a warning, if undecodable)."""
    from brainscale.workflows.func.brain_states_wf import (
        decoding_problem,
        init_bold_brain_states_wf,
    )

    problem = decoding_problem(events_file, decoding.conditions, bold_file, repetition_time)
    if problem:
        logging.getLogger("nipype.workflow").warning(problem)
        return
    brain_states_wf = init_bold_brain_states_wf(
        bold_file=bold_file, events_file=events_file, output_dir=output_dir, atlas=atlas,
        std_resolution=STD_RESOLUTION, seed=seed, **decoding.factory_args())
    workflow.connect([
        (fit_wf, brain_states_wf, [("outputnode.bold_std", "inputnode.bold_std"),
                                   ("outputnode.mask_std", "inputnode.bold_std_mask"),
                                   ("outputnode.repetition_time", "inputnode.repetition_time")]),
        (confounds_wf, brain_states_wf, [("outputnode.confounds", "inputnode.confounds")]),
    ])
