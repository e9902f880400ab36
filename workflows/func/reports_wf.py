"""Outputs sub-workflows: the report figures and the image quality metrics of a BOLD run.

Both are fed only through their ``inputnode`` and write with
:func:`~brainscale.workflows.func.outputs.func_sink`.
"""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.outputs import func_sink
from brainscale.workflows.qc_interfaces import BoldIQMs

REPORT_FIELDS = ("bold", "bold_mask", "confounds", "repetition_time", "anat", "boldref_anat",
                 "connectivity_figures")
IQM_FIELDS = ("boldref_mask", "n_nonsteady", "series", "series_mask", "confounds")


def init_func_reports_wf(
    *,
    bold_file: str,
    output_dir: str,
    atlases: list[str],
    has_anat: bool,
    denoise_strategy: str,
    name: str = "func_reports_wf",
) -> pe.Workflow:
    """Plot and write the carpet, coregistration and connectivity figures of a run.

    Parameters
    ----------
    bold_file : str
        Raw BOLD file (the source of the figure names).
    output_dir : str
        Derivatives folder.
    atlases : list of str
        Atlas names, in the order of ``connectivity_figures``.
    has_anat : bool
        Whether ``anat`` is the T1w (else the template), for the caption.
    denoise_strategy : str
        Denoising strategy, for the connectivity caption.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Only an ``inputnode`` (:data:`REPORT_FIELDS`: the motion-corrected series with its
        mask, the confounds, the repetition time, the anatomy the reference was registered
        to with the reference resampled onto it, one connectivity figure per atlas).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(REPORT_FIELDS)), name="inputnode")
    carpet_plot = pe.Node(fi.CarpetPlot(), name="carpet_plot")
    coregistration_plot = pe.Node(fi.CoregistrationPlot(), name="coregistration_plot")
    ds_carpet = func_sink(
        output_dir, bold_file, "ds_carpet", datatype="figures", desc="carpet", suffix="bold",
        extension=".svg",
        meta_dict={"Caption": "Carpet plot of brain voxels with FD and std DVARS"})
    ds_coregistration = func_sink(
        output_dir, bold_file, "ds_coregistration", datatype="figures", desc="coreg",
        suffix="bold", extension=".svg",
        meta_dict={"Caption": "BOLD reference on the "
                   + ("T1w" if has_anat else "template") + " with its edges"})
    ds_connectivity_plot = func_sink(
        output_dir, bold_file, "ds_connectivity_plot", iterfield=["in_file", "atlas"],
        datatype="figures", desc="connectivity", suffix="bold", extension=".svg", atlas=atlases,
        meta_dict={"Caption": f"Pearson connectivity after {denoise_strategy} denoising"})
    workflow.connect([
        (inputnode, carpet_plot, [("bold", "bold_file"), ("bold_mask", "mask_file"),
                                  ("confounds", "confounds_file"),
                                  ("repetition_time", "repetition_time")]),
        (inputnode, coregistration_plot, [("anat", "anat_file"),
                                          ("boldref_anat", "boldref_file")]),
        (carpet_plot, ds_carpet, [("out_file", "in_file")]),
        (coregistration_plot, ds_coregistration, [("out_file", "in_file")]),
        (inputnode, ds_connectivity_plot, [("connectivity_figures", "in_file")]),
    ])
    return workflow


def init_bold_iqms_wf(*, bold_file: str, output_dir: str,
                      name: str = "bold_iqms_wf") -> pe.Workflow:
    """Compute and write the run's image quality metrics (:mod:`~brainscale.workflows.func.iqms`).

    Parameters
    ----------
    bold_file : str
        Raw BOLD file (measured for the raw-data metrics, and the source of the name).
    output_dir : str
        Derivatives folder.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Only an ``inputnode`` (:data:`IQM_FIELDS`: the reference mask, the non-steady-state
        count, the motion-corrected series with its mask, the confounds).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(IQM_FIELDS)), name="inputnode")
    bold_iqms = pe.Node(BoldIQMs(bold_file=bold_file), name="bold_iqms", mem_gb=2.0)
    ds_bold_iqms = func_sink(output_dir, bold_file, "ds_bold_iqms", datatype="func",
                             desc="iqms", suffix="bold", extension=".json")
    workflow.connect([
        (inputnode, bold_iqms, [("boldref_mask", "boldref_mask_file"),
                                ("n_nonsteady", "n_nonsteady"), ("series", "series_file"),
                                ("series_mask", "series_mask_file"),
                                ("confounds", "confounds_file")]),
        (bold_iqms, ds_bold_iqms, [("out_file", "in_file")]),
    ])
    return workflow
