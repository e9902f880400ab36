"""The functional workflow: one BOLD run from raw data to confounds and connectivity.

The methods boilerplate of this workflow, with citations, is in
:mod:`brainscale.workflows.func.methods`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.errors import InputDataError, UsageError
from brainscale.resources import TEMPLATE_SPACE
from brainscale.workflows.derivatives_sink import DerivativesDataSink
from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.denoise import DEFAULT_DENOISE_STRATEGY, parse_strategy
from brainscale.workflows.func.sdc import total_readout_time
from brainscale.workflows.qc_interfaces import BoldIQMs

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

    template = pe.Node(fi.TemplateResources(resolution=STD_RESOLUTION), name="template")
    bold_reference = pe.Node(fi.BoldReference(bold_file=bold_file, metadata=metadata),
                             name="bold_reference", mem_gb=1.0)
    head_motion = pe.Node(fi.HeadMotion(bold_file=bold_file), name="head_motion", mem_gb=1.0)
    coregister = pe.Node(
        fi.Coregister(transform_type="Rigid" if has_anat else "Affine", seed=seed),
        name="coregister", n_procs=omp_nthreads)
    resample_std = pe.Node(fi.ResampleBold(bold_file=bold_file, metadata=metadata),
                           name="resample_std", n_procs=omp_nthreads, mem_gb=3.0)
    confounds = pe.Node(fi.BoldConfounds(), name="confounds", mem_gb=2.0)
    connectivity = pe.MapNode(
        fi.Connectivity(strategy=denoise_strategy, source_name=Path(bold_file).name),
        iterfield=["atlas_name"], name="connectivity", mem_gb=2.0)
    connectivity.inputs.atlas_name = list(atlases)
    carpet_plot = pe.Node(fi.CarpetPlot(), name="carpet_plot")
    coregistration_plot = pe.Node(fi.CoregistrationPlot(), name="coregistration_plot")

    if sdc_params is None:
        workflow.connect(bold_reference, "boldref_file", coregister, "boldref_file")
        workflow.connect(bold_reference, "bold_mask_file", coregister, "bold_mask_file")
    else:
        fieldmap_sdc = pe.Node(fi.FieldmapSDC(seed=seed, **sdc_params), name="fieldmap_sdc")
        resample_std.inputs.pe_direction = sdc_params["pe_direction"]
        workflow.connect([
            (bold_reference, fieldmap_sdc, [("boldref_file", "boldref_file"),
                                            ("bold_mask_file", "bold_mask_file")]),
            (fieldmap_sdc, coregister, [("boldref_file", "boldref_file"),
                                        ("mask_file", "bold_mask_file")]),
            (fieldmap_sdc, resample_std, [("vsm_file", "vsm_file")]),
        ])

    workflow.connect([
        (bold_reference, head_motion, [("boldref_file", "boldref_file"),
                                       ("bold_mask_file", "bold_mask_file")]),
        (bold_reference, resample_std, [("boldref_file", "boldref_file"),
                                        ("repetition_time", "repetition_time")]),
        (head_motion, resample_std, [("motion_matrices_file", "motion_matrices_file")]),
        (coregister, resample_std, [("anat2boldref_file", "anat2boldref_file")]),
        (template, resample_std, [("template_file", "target_file"),
                                  ("mask_file", "target_mask_file")]),
        (bold_reference, confounds, [("repetition_time", "repetition_time"),
                                     ("n_nonsteady", "n_nonsteady")]),
        (head_motion, confounds, [("motion_params_file", "motion_params_file")]),
        (resample_std, connectivity, [("out_file", "bold_file")]),
        (confounds, connectivity, [("confounds_file", "confounds_file")]),
        (bold_reference, connectivity, [("repetition_time", "repetition_time")]),
        (confounds, carpet_plot, [("confounds_file", "confounds_file")]),
        (bold_reference, carpet_plot, [("repetition_time", "repetition_time")]),
        (bold_reference, outputnode, [("boldref_file", "boldref"),
                                      ("bold_mask_file", "bold_mask")]),
        (resample_std, outputnode, [("out_file", "bold_std")]),
        (confounds, outputnode, [("confounds_file", "confounds")]),
        (connectivity, outputnode, [("timeseries_file", "timeseries"),
                                    ("pearson_file", "relmat_pearson"),
                                    ("partial_file", "relmat_partial")]),
    ])

    if has_anat:
        resample_t1w = pe.Node(
            fi.ResampleBold(bold_file=bold_file, metadata=metadata, bold_resolution=True),
            name="resample_t1w", n_procs=omp_nthreads, mem_gb=2.0)
        if sdc_params is not None:
            resample_t1w.inputs.pe_direction = sdc_params["pe_direction"]
            workflow.connect(workflow.get_node("fieldmap_sdc"), "vsm_file",
                             resample_t1w, "vsm_file")
        workflow.connect([
            (inputnode, coregister, [("t1w_preproc", "anat_file"),
                                     ("t1w_mask", "anat_mask_file")]),
            (inputnode, resample_std, [("anat2std_xfm", "xfm_file")]),
            (bold_reference, resample_t1w, [("boldref_file", "boldref_file"),
                                            ("repetition_time", "repetition_time")]),
            (head_motion, resample_t1w, [("motion_matrices_file", "motion_matrices_file")]),
            (coregister, resample_t1w, [("anat2boldref_file", "anat2boldref_file")]),
            (inputnode, resample_t1w, [("t1w_preproc", "target_file"),
                                       ("t1w_mask", "target_mask_file")]),
            (resample_t1w, confounds, [("out_file", "bold_file"), ("mask_file", "mask_file")]),
            (inputnode, confounds, [("t1w_tpms", "tpm_files")]),
            (resample_t1w, carpet_plot, [("out_file", "bold_file"), ("mask_file", "mask_file")]),
            (inputnode, coregistration_plot, [("t1w_preproc", "anat_file")]),
            (resample_t1w, coregistration_plot, [("boldref_file", "boldref_file")]),
            (resample_t1w, outputnode, [("out_file", "bold_t1w")]),
        ])
    else:
        workflow.connect([
            (template, coregister, [("template_file", "anat_file"),
                                    ("mask_file", "anat_mask_file")]),
            (resample_std, confounds, [("out_file", "bold_file"), ("mask_file", "mask_file")]),
            (template, confounds, [("tpm_files", "tpm_files")]),
            (resample_std, carpet_plot, [("out_file", "bold_file"), ("mask_file", "mask_file")]),
            (template, coregistration_plot, [("template_file", "anat_file")]),
            (resample_std, coregistration_plot, [("boldref_file", "boldref_file")]),
        ])

    _connect_iqms(workflow, bold_file=bold_file, output_dir=output_dir, has_anat=has_anat)
    _connect_writers(workflow, bold_file=bold_file, output_dir=output_dir, atlases=atlases,
                     has_anat=has_anat, bold_meta=bold_meta, strategy=denoise_strategy)
    if events_file:
        _connect_glm(workflow, bold_file=bold_file, output_dir=output_dir,
                     events_file=events_file)
    if events_file and decoding is not None:
        _connect_brain_states(workflow, bold_file=bold_file, output_dir=output_dir,
                              events_file=events_file, atlas=atlases[0], seed=seed,
                              decoding=decoding)
    return workflow


def _sink(output_dir: str, bold_file: str, name: str, *, iterfield=None, **kwargs):
    """Create a DerivativesDataSink node (a MapNode when ``iterfield`` is given)."""
    mapped = {key: kwargs.pop(key) for key in list(kwargs) if key in (iterfield or [])}
    interface = DerivativesDataSink(base_directory=str(output_dir), source_file=bold_file,
                                    **kwargs)
    if not iterfield:
        return pe.Node(interface, name=name, run_without_submitting=True)
    node = pe.MapNode(interface, iterfield=iterfield, name=name, run_without_submitting=True)
    for key, value in mapped.items():
        setattr(node.inputs, key, list(value))
    return node


def _connect_writers(workflow, *, bold_file, output_dir, atlases, has_anat, bold_meta, strategy):
    """Add the ``ds_*`` writers of the preprocessing and connectivity outputs."""
    bold_reference = workflow.get_node("bold_reference")
    resample_std = workflow.get_node("resample_std")
    confounds = workflow.get_node("confounds")
    connectivity = workflow.get_node("connectivity")
    coregister = workflow.get_node("coregister")
    std = {"space": TEMPLATE_SPACE, "res": str(STD_RESOLUTION)}
    func = {"datatype": "func"}

    ds_boldref = _sink(output_dir, bold_file, "ds_boldref", desc="hmc", suffix="boldref",
                       meta_dict={"SkullStripped": False}, **func)
    ds_bold_mask = _sink(output_dir, bold_file, "ds_bold_mask", desc="brain", suffix="mask",
                         meta_dict={"Type": "Brain"}, **func)
    ds_bold_std = _sink(output_dir, bold_file, "ds_bold_std", desc="preproc", suffix="bold",
                        meta_dict=bold_meta, **std, **func)
    ds_boldref_std = _sink(output_dir, bold_file, "ds_boldref_std", suffix="boldref", **std,
                           **func)
    ds_mask_std = _sink(output_dir, bold_file, "ds_mask_std", desc="brain", suffix="mask",
                        meta_dict={"Type": "Brain"}, **std, **func)
    ds_confounds = _sink(output_dir, bold_file, "ds_confounds", desc="confounds",
                         suffix="timeseries", extension=".tsv", **func)
    ds_timeseries = _sink(output_dir, bold_file, "ds_timeseries", iterfield=["in_file", "atlas",
                          "meta_dict"], suffix="timeseries", extension=".tsv", atlas=atlases,
                          **func)
    ds_carpet = _sink(output_dir, bold_file, "ds_carpet", datatype="figures", desc="carpet",
                      suffix="bold", extension=".svg",
                      meta_dict={"Caption": "Carpet plot of brain voxels with FD and std DVARS"})
    ds_coregistration = _sink(
        output_dir, bold_file, "ds_coregistration", datatype="figures", desc="coreg",
        suffix="bold", extension=".svg",
        meta_dict={"Caption": "BOLD reference on the "
                   + ("T1w" if has_anat else "template") + " with its edges"})
    ds_connectivity_plot = _sink(
        output_dir, bold_file, "ds_connectivity_plot", iterfield=["in_file", "atlas"],
        datatype="figures", desc="connectivity", suffix="bold", extension=".svg", atlas=atlases,
        meta_dict={"Caption": f"Pearson connectivity after {strategy} denoising"})
    workflow.connect([
        (bold_reference, ds_boldref, [("boldref_file", "in_file")]),
        (bold_reference, ds_bold_mask, [("bold_mask_file", "in_file")]),
        (resample_std, ds_bold_std, [("out_file", "in_file")]),
        (resample_std, ds_boldref_std, [("boldref_file", "in_file")]),
        (resample_std, ds_mask_std, [("mask_file", "in_file")]),
        (confounds, ds_confounds, [("confounds_file", "in_file"),
                                   ("confounds_metadata", "meta_dict")]),
        (connectivity, ds_timeseries, [("timeseries_file", "in_file"), ("metadata", "meta_dict")]),
        (workflow.get_node("carpet_plot"), ds_carpet, [("out_file", "in_file")]),
        (workflow.get_node("coregistration_plot"), ds_coregistration, [("out_file", "in_file")]),
        (connectivity, ds_connectivity_plot, [("figure_file", "in_file")]),
    ])
    relmats = (
        ("ds_relmat_pearson", "pearson_file", "PearsonCorrelation", None),
        ("ds_relmat_partial", "partial_file", "PartialCorrelation", None),
        ("ds_relmat_pearson_z", "pearson_z_file", "PearsonCorrelation", "fisherz"),
        ("ds_relmat_partial_z", "partial_z_file", "PartialCorrelation", "fisherz"),
    )
    for node_name, field, meas, desc in relmats:
        extra = {"desc": desc} if desc else {}
        ds_relmat = _sink(output_dir, bold_file, node_name, iterfield=["in_file", "atlas",
                          "meta_dict"], suffix="relmat", extension=".tsv", atlas=atlases,
                          meas=meas, **extra, **func)
        workflow.connect(connectivity, field, ds_relmat, "in_file")
        workflow.connect(connectivity, "metadata", ds_relmat, "meta_dict")
    if has_anat:
        ds_bold_t1w = _sink(output_dir, bold_file, "ds_bold_t1w", space="T1w", desc="preproc",
                            suffix="bold", meta_dict=bold_meta, **func)
        ds_boldref_t1w = _sink(output_dir, bold_file, "ds_boldref_t1w", space="T1w",
                               suffix="boldref", **func)
        ds_bold2t1w_xfm = _sink(output_dir, bold_file, "ds_bold2t1w_xfm", from_="boldref",
                                to="T1w", mode="image", suffix="xfm", extension=".txt",
                                meta_dict={"Method": "ANTs rigid, Mattes mutual information"},
                                **func)
        resample_t1w = workflow.get_node("resample_t1w")
        workflow.connect([
            (resample_t1w, ds_bold_t1w, [("out_file", "in_file")]),
            (resample_t1w, ds_boldref_t1w, [("boldref_file", "in_file")]),
            (coregister, ds_bold2t1w_xfm, [("itk_transform_file", "in_file")]),
        ])


def _connect_iqms(workflow, *, bold_file, output_dir, has_anat):
    """Add the run's image quality metrics (:mod:`brainscale.workflows.func.iqms`) and writer."""
    bold_iqms = pe.Node(BoldIQMs(bold_file=bold_file), name="bold_iqms", mem_gb=2.0)
    ds_bold_iqms = _sink(output_dir, bold_file, "ds_bold_iqms", datatype="func", desc="iqms",
                         suffix="bold", extension=".json")
    series = workflow.get_node("resample_t1w" if has_anat else "resample_std")
    workflow.connect([
        (workflow.get_node("bold_reference"), bold_iqms, [
            ("bold_mask_file", "boldref_mask_file"), ("n_nonsteady", "n_nonsteady")]),
        (series, bold_iqms, [("out_file", "series_file"), ("mask_file", "series_mask_file")]),
        (workflow.get_node("confounds"), bold_iqms, [("confounds_file", "confounds_file")]),
        (bold_iqms, ds_bold_iqms, [("out_file", "in_file")]),
    ])


def _connect_glm(workflow, *, bold_file, output_dir, events_file):
    """Add the first-level GLM of a task run and its z-map writer."""
    first_level = pe.Node(fi.FirstLevelGLM(events_file=events_file), name="first_level",
                          mem_gb=3.0)
    ds_zmaps = _sink(output_dir, bold_file, "ds_zmaps", iterfield=["in_file", "desc"],
                     datatype="func", space=TEMPLATE_SPACE, res=str(STD_RESOLUTION), stat="z",
                     suffix="statmap",
                     meta_dict={"Model": "nilearn FirstLevelModel, Glover HRF, AR(1), cosine "
                                "128 s, 6 motion regressors, 5 mm FWHM; condition > baseline"})
    workflow.connect([
        (workflow.get_node("resample_std"), first_level, [("out_file", "bold_file"),
                                                          ("mask_file", "mask_file")]),
        (workflow.get_node("confounds"), first_level, [("confounds_file", "confounds_file")]),
        (workflow.get_node("bold_reference"), first_level, [
            ("repetition_time", "repetition_time"), ("n_nonsteady", "n_nonsteady")]),
        (first_level, ds_zmaps, [("zmap_files", "in_file"), ("condition_labels", "desc")]),
        (first_level, workflow.get_node("outputnode"), [("zmap_files", "zmaps")]),
    ])


def _connect_brain_states(workflow, *, bold_file, output_dir, events_file, atlas, seed, decoding):
    """Add the decoding sub-workflow of a task run (skipped, with a warning, if undecodable)."""
    from brainscale.workflows.func.brain_states_wf import (
        decoding_problem,
        init_bold_brain_states_wf,
    )

    problem = decoding_problem(events_file, decoding.conditions, bold_file,
                               workflow.get_node("bold_reference").inputs.metadata.get(
                                   "RepetitionTime"))
    if problem:
        logging.getLogger("nipype.workflow").warning(problem)
        return
    brain_states_wf = init_bold_brain_states_wf(
        bold_file=bold_file, events_file=events_file, output_dir=output_dir, atlas=atlas,
        std_resolution=STD_RESOLUTION, seed=seed, **decoding.factory_args())
    workflow.connect([
        (workflow.get_node("resample_std"), brain_states_wf, [
            ("out_file", "inputnode.bold_std"), ("mask_file", "inputnode.bold_std_mask")]),
        (workflow.get_node("confounds"), brain_states_wf, [
            ("confounds_file", "inputnode.confounds")]),
        (workflow.get_node("bold_reference"), brain_states_wf, [
            ("repetition_time", "inputnode.repetition_time")]),
    ])
