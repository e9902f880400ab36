"""Sub-workflow: the BOLD run's reference, head motion, coregistration and resampling."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.methods import FIT, registration_text
from brainscale.workflows.func.sdc_wf import init_bold_sdc_wf

INPUT_FIELDS = ("t1w_preproc", "t1w_mask", "anat2std_xfm")
OUTPUT_FIELDS = (
    "boldref", "bold_mask", "n_nonsteady", "repetition_time", "motion_params",
    "bold2anat_xfm", "bold_std", "boldref_std", "mask_std", "bold_t1w", "boldref_t1w",
    "mask_t1w", "template", "template_tpms",
)


def init_bold_fit_wf(
    *,
    bold_file: str,
    metadata: dict,
    has_anat: bool,
    sdc_params: dict | None = None,
    std_resolution: int = 2,
    omp_nthreads: int = 1,
    seed: int = 0,
    name: str = "bold_fit_wf",
) -> pe.Workflow:
    """Build the preprocessing of one BOLD run, up to its one-shot resampled series.

    The reference and mask (non-steady-state volumes left out), rigid head motion, the
    optional distortion correction (sub-workflow
    :func:`~brainscale.workflows.func.sdc_wf.init_bold_sdc_wf`), the coregistration to the
    T1w (to the template, affinely, without one) and the resampling of every volume once,
    slice-timing corrected, to the template grid and (with a T1w) to the T1w grid.

    Parameters
    ----------
    bold_file : str
        Raw BOLD NIfTI.
    metadata : dict
        Its BIDS sidecar.
    has_anat : bool
        Whether ``inputnode`` receives a T1w; otherwise the BOLD-only path.
    sdc_params : dict, optional
        Field-map inputs of :func:`~brainscale.workflows.func.sdc_wf.init_bold_sdc_wf`;
        ``None``: no distortion correction.
    std_resolution : int
        Voxel size (mm) of the template-space series.
    omp_nthreads : int
        Threads of the registration and resampling nodes.
    seed : int
        Random seed of the registrations.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (:data:`INPUT_FIELDS`) and ``outputnode`` (:data:`OUTPUT_FIELDS`;
        the ``*_t1w`` fields only with a T1w, ``template``/``template_tpms`` are the
        embedded template and its GM/WM/CSF probabilities at ``std_resolution``).
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = FIT
    workflow.__postdesc__ = registration_text(has_anat=has_anat, sdc=sdc_params is not None)
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    workflow.add_nodes([inputnode])  # a public face even on the BOLD-only path

    template = pe.Node(fi.TemplateResources(resolution=std_resolution), name="template")
    bold_reference = pe.Node(fi.BoldReference(bold_file=bold_file, metadata=metadata),
                             name="bold_reference", mem_gb=1.0)
    head_motion = pe.Node(fi.HeadMotion(bold_file=bold_file), name="head_motion", mem_gb=1.0)
    coregister = pe.Node(
        fi.Coregister(transform_type="Rigid" if has_anat else "Affine", seed=seed),
        name="coregister", n_procs=omp_nthreads)
    resample_std = pe.Node(fi.ResampleBold(bold_file=bold_file, metadata=metadata),
                           name="resample_std", n_procs=omp_nthreads, mem_gb=3.0)
    resamplers = [resample_std]
    if has_anat:
        resample_t1w = pe.Node(
            fi.ResampleBold(bold_file=bold_file, metadata=metadata, bold_resolution=True),
            name="resample_t1w", n_procs=omp_nthreads, mem_gb=2.0)
        resamplers.append(resample_t1w)
        workflow.connect([
            (inputnode, coregister, [("t1w_preproc", "anat_file"),
                                     ("t1w_mask", "anat_mask_file")]),
            (inputnode, resample_std, [("anat2std_xfm", "xfm_file")]),
            (inputnode, resample_t1w, [("t1w_preproc", "target_file"),
                                       ("t1w_mask", "target_mask_file")]),
            (resample_t1w, outputnode, [("out_file", "bold_t1w"), ("boldref_file", "boldref_t1w"),
                                        ("mask_file", "mask_t1w")]),
        ])
    else:
        workflow.connect(template, "template_file", coregister, "anat_file")
        workflow.connect(template, "mask_file", coregister, "anat_mask_file")

    if sdc_params is None:
        workflow.connect(bold_reference, "boldref_file", coregister, "boldref_file")
        workflow.connect(bold_reference, "bold_mask_file", coregister, "bold_mask_file")
    else:
        sdc_wf = init_bold_sdc_wf(sdc_params=sdc_params, seed=seed)
        workflow.connect([
            (bold_reference, sdc_wf, [("boldref_file", "inputnode.boldref"),
                                      ("bold_mask_file", "inputnode.bold_mask")]),
            (sdc_wf, coregister, [("outputnode.boldref", "boldref_file"),
                                  ("outputnode.bold_mask", "bold_mask_file")]),
        ])
    for resampler in resamplers:
        if sdc_params is not None:
            resampler.inputs.pe_direction = sdc_params["pe_direction"]
            workflow.connect(sdc_wf, "outputnode.vsm", resampler, "vsm_file")
        workflow.connect([
            (bold_reference, resampler, [("boldref_file", "boldref_file"),
                                         ("repetition_time", "repetition_time")]),
            (head_motion, resampler, [("motion_matrices_file", "motion_matrices_file")]),
            (coregister, resampler, [("anat2boldref_file", "anat2boldref_file")]),
        ])

    workflow.connect([
        (bold_reference, head_motion, [("boldref_file", "boldref_file"),
                                       ("bold_mask_file", "bold_mask_file")]),
        (template, resample_std, [("template_file", "target_file"),
                                  ("mask_file", "target_mask_file")]),
        (bold_reference, outputnode, [("boldref_file", "boldref"),
                                      ("bold_mask_file", "bold_mask"),
                                      ("n_nonsteady", "n_nonsteady"),
                                      ("repetition_time", "repetition_time")]),
        (head_motion, outputnode, [("motion_params_file", "motion_params")]),
        (coregister, outputnode, [("itk_transform_file", "bold2anat_xfm")]),
        (resample_std, outputnode, [("out_file", "bold_std"), ("boldref_file", "boldref_std"),
                                    ("mask_file", "mask_std")]),
        (template, outputnode, [("template_file", "template"), ("tpm_files", "template_tpms")]),
    ])
    return workflow
