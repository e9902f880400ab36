"""Sub-workflow: the confounds table of a BOLD run (fMRIPrep's column names)."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.methods import CONFOUNDS

INPUT_FIELDS = ("bold", "bold_mask", "tpm_files", "motion_params", "repetition_time",
                "n_nonsteady")
OUTPUT_FIELDS = ("confounds", "confounds_metadata")


def init_bold_confounds_wf(*, name: str = "bold_confounds_wf") -> pe.Workflow:
    """Compute the confounds of one run (:mod:`brainscale.workflows.func.confounds`).

    Parameters
    ----------
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (:data:`INPUT_FIELDS`: the motion-corrected series and its brain mask,
        the ``[GM, WM, CSF]`` probabilities, the head-motion parameters, the repetition time
        and the leading non-steady-state volumes) and ``outputnode``
        (:data:`OUTPUT_FIELDS`: the TSV and its sidecar content).
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = CONFOUNDS
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    confounds = pe.Node(fi.BoldConfounds(), name="confounds", mem_gb=2.0)
    workflow.connect([
        (inputnode, confounds, [("bold", "bold_file"), ("bold_mask", "mask_file"),
                                ("tpm_files", "tpm_files"),
                                ("motion_params", "motion_params_file"),
                                ("repetition_time", "repetition_time"),
                                ("n_nonsteady", "n_nonsteady")]),
        (confounds, outputnode, [("confounds_file", "confounds"),
                                 ("confounds_metadata", "confounds_metadata")]),
    ])
    return workflow
