"""Sub-workflow: denoised parcel time series and connectivity matrices of a BOLD run."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.func import interfaces as fi
from brainscale.workflows.func.methods import connectivity_text

INPUT_FIELDS = ("bold_std", "confounds", "repetition_time")
OUTPUT_FIELDS = ("timeseries", "relmat_pearson", "relmat_partial", "relmat_pearson_z",
                 "relmat_partial_z", "figures", "metadata")


def init_bold_connectivity_wf(
    *,
    atlases: list[str],
    denoise_strategy: str,
    source_name: str = "",
    name: str = "bold_connectivity_wf",
) -> pe.Workflow:
    """Denoise the parcel time series of every atlas and correlate them.

    Parameters
    ----------
    atlases : list of str
        Atlas names (one ``connectivity`` map-node iteration each).
    denoise_strategy : str
        Denoising strategy (:mod:`brainscale.workflows.func.denoise`).
    source_name : str
        Raw BOLD file name, for messages.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (:data:`INPUT_FIELDS`: the template-space series, the confounds TSV,
        the repetition time) and ``outputnode`` (:data:`OUTPUT_FIELDS`, one list item per
        atlas: time series, Pearson and partial correlation matrices and their Fisher z,
        the heatmap figures and the sidecar content).
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = connectivity_text(denoise_strategy)
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    connectivity = pe.MapNode(
        fi.Connectivity(strategy=denoise_strategy, source_name=source_name),
        iterfield=["atlas_name"], name="connectivity", mem_gb=2.0)
    connectivity.inputs.atlas_name = list(atlases)
    workflow.connect([
        (inputnode, connectivity, [("bold_std", "bold_file"), ("confounds", "confounds_file"),
                                   ("repetition_time", "repetition_time")]),
        (connectivity, outputnode, [("timeseries_file", "timeseries"),
                                    ("pearson_file", "relmat_pearson"),
                                    ("partial_file", "relmat_partial"),
                                    ("pearson_z_file", "relmat_pearson_z"),
                                    ("partial_z_file", "relmat_partial_z"),
                                    ("figure_file", "figures"), ("metadata", "metadata")]),
    ])
    return workflow
