"""Sub-workflow: susceptibility distortion correction of a BOLD run from a field map."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.methods import SDC

INPUT_FIELDS = ("boldref", "bold_mask")
OUTPUT_FIELDS = ("boldref", "bold_mask", "vsm")


def init_bold_sdc_wf(*, sdc_params: dict, seed: int = 0, name: str = "bold_sdc_wf"):
    """Map a phase-difference field map onto the BOLD reference as a voxel-shift map.

    Parameters
    ----------
    sdc_params : dict
        Inputs of :class:`~brainscale.workflows.func.interfaces.FieldmapSDC`
        (``phasediff_file``, ``magnitude_file``, ``echo_time1``, ``echo_time2``,
        ``total_readout_time``, ``pe_direction``), as planned from the sidecars.
    seed : int
        Random seed of the field map's registration to the reference.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (:data:`INPUT_FIELDS`: the uncorrected reference and its mask) and
        ``outputnode`` (:data:`OUTPUT_FIELDS`: the corrected reference, its mask and the
        voxel-shift map applied in the one-shot resampling).
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = SDC
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    fieldmap_sdc = pe.Node(fi.FieldmapSDC(seed=seed, **sdc_params), name="fieldmap_sdc")
    workflow.connect([
        (inputnode, fieldmap_sdc, [("boldref", "boldref_file"), ("bold_mask", "bold_mask_file")]),
        (fieldmap_sdc, outputnode, [("boldref_file", "boldref"), ("mask_file", "bold_mask"),
                                    ("vsm_file", "vsm")]),
    ])
    return workflow
