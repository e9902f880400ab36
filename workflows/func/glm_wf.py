"""Sub-workflow: the first-level GLM of a task run."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.methods import GLM

INPUT_FIELDS = ("bold_std", "bold_std_mask", "confounds", "repetition_time", "n_nonsteady")
OUTPUT_FIELDS = ("zmaps", "condition_labels")


def init_bold_glm_wf(*, events_file: str, name: str = "bold_glm_wf") -> pe.Workflow:
    """Fit a first-level GLM to the template-space series (one z map per condition).

    Parameters
    ----------
    events_file : str
        The run's ``events.tsv``.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (:data:`INPUT_FIELDS`) and ``outputnode`` (:data:`OUTPUT_FIELDS`: the
        z maps and, in the same order, their condition labels).
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = GLM
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    first_level = pe.Node(fi.FirstLevelGLM(events_file=events_file), name="first_level",
                          mem_gb=3.0)
    workflow.connect([
        (inputnode, first_level, [("bold_std", "bold_file"), ("bold_std_mask", "mask_file"),
                                  ("confounds", "confounds_file"),
                                  ("repetition_time", "repetition_time"),
                                  ("n_nonsteady", "n_nonsteady")]),
        (first_level, outputnode, [("zmap_files", "zmaps"),
                                   ("condition_labels", "condition_labels")]),
    ])
    return workflow
