"""Outputs sub-workflow: the ``ds_*`` writers of a BOLD run's derivatives.

It is fed only through its ``inputnode``; each writer is a
:class:`~brainscale.workflows.derivatives_sink.DerivativesDataSink` whose file name is
built from the raw BOLD file's entities.
"""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.resources import TEMPLATE_SPACE
from brainscale.workflows.derivatives_sink import DerivativesDataSink

INPUT_FIELDS = (
    "boldref", "bold_mask", "bold_std", "boldref_std", "mask_std", "confounds",
    "confounds_metadata", "timeseries", "relmat_pearson", "relmat_partial", "relmat_pearson_z",
    "relmat_partial_z", "connectivity_metadata", "bold_t1w", "boldref_t1w", "bold2anat_xfm",
    "zmaps", "condition_labels",
)
GLM_MODEL = ("nilearn FirstLevelModel, Glover HRF, AR(1), cosine 128 s, 6 motion regressors, "
             "5 mm FWHM; condition > baseline")
"""``Model`` of the z-map sidecars."""
_RELMATS = (
    ("ds_relmat_pearson", "relmat_pearson", "PearsonCorrelation", None),
    ("ds_relmat_partial", "relmat_partial", "PartialCorrelation", None),
    ("ds_relmat_pearson_z", "relmat_pearson_z", "PearsonCorrelation", "fisherz"),
    ("ds_relmat_partial_z", "relmat_partial_z", "PartialCorrelation", "fisherz"),
)


def func_sink(output_dir: str, bold_file: str, name: str, *, iterfield=None, **kwargs):
    """Create a writer of a BOLD run's derivative (a MapNode when ``iterfield`` is given).

    Parameters
    ----------
    output_dir : str
        Derivatives folder.
    bold_file : str
        Raw BOLD file whose entities name the output.
    name : str
        Node name (``ds_*``).
    iterfield : list of str, optional
        Inputs iterated over; those given in ``kwargs`` are set as lists.
    **kwargs
        Other :class:`~brainscale.workflows.derivatives_sink.DerivativesDataSink` inputs.

    Returns
    -------
    nipype.pipeline.engine.Node or MapNode
    """
    mapped = {key: kwargs.pop(key) for key in list(kwargs) if key in (iterfield or [])}
    interface = DerivativesDataSink(base_directory=str(output_dir), source_file=bold_file,
                                    **kwargs)
    if not iterfield:
        return pe.Node(interface, name=name, run_without_submitting=True)
    node = pe.MapNode(interface, iterfield=iterfield, name=name, run_without_submitting=True)
    for key, value in mapped.items():
        setattr(node.inputs, key, list(value))
    return node


def init_func_derivatives_wf(
    *,
    bold_file: str,
    output_dir: str,
    atlases: list[str],
    has_anat: bool,
    bold_meta: dict,
    std_resolution: int,
    glm: bool = False,
    name: str = "func_derivatives_wf",
) -> pe.Workflow:
    """Write the preprocessed series, confounds, connectivity and GLM outputs of a run.

    Parameters
    ----------
    bold_file : str
        Raw BOLD file (the source of every output name).
    output_dir : str
        Derivatives folder.
    atlases : list of str
        Atlas names, in the order of the connectivity outputs.
    has_anat : bool
        Whether the T1w-space series and the BOLD-to-T1w transform are written.
    bold_meta : dict
        Sidecar of the preprocessed series.
    std_resolution : int
        Voxel size (mm) of the template-space outputs (``res-`` entity).
    glm : bool
        Whether the z maps of a first-level GLM are written.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Only an ``inputnode`` (:data:`INPUT_FIELDS`) and its ``ds_*`` writers.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    std = {"space": TEMPLATE_SPACE, "res": str(std_resolution)}
    func = {"datatype": "func"}

    def sink(node_name, **kwargs):
        return func_sink(output_dir, bold_file, node_name, **kwargs)

    writers = [
        (sink("ds_boldref", desc="hmc", suffix="boldref", meta_dict={"SkullStripped": False},
              **func), [("boldref", "in_file")]),
        (sink("ds_bold_mask", desc="brain", suffix="mask", meta_dict={"Type": "Brain"}, **func),
         [("bold_mask", "in_file")]),
        (sink("ds_bold_std", desc="preproc", suffix="bold", meta_dict=bold_meta, **std, **func),
         [("bold_std", "in_file")]),
        (sink("ds_boldref_std", suffix="boldref", **std, **func), [("boldref_std", "in_file")]),
        (sink("ds_mask_std", desc="brain", suffix="mask", meta_dict={"Type": "Brain"}, **std,
              **func), [("mask_std", "in_file")]),
        (sink("ds_confounds", desc="confounds", suffix="timeseries", extension=".tsv", **func),
         [("confounds", "in_file"), ("confounds_metadata", "meta_dict")]),
        (sink("ds_timeseries", iterfield=["in_file", "atlas", "meta_dict"], suffix="timeseries",
              extension=".tsv", atlas=atlases, **func),
         [("timeseries", "in_file"), ("connectivity_metadata", "meta_dict")]),
    ]
    for node_name, field, meas, desc in _RELMATS:
        extra = {"desc": desc} if desc else {}
        writers.append((sink(node_name, iterfield=["in_file", "atlas", "meta_dict"],
                             suffix="relmat", extension=".tsv", atlas=atlases, meas=meas,
                             **extra, **func),
                        [(field, "in_file"), ("connectivity_metadata", "meta_dict")]))
    if has_anat:
        writers += [
            (sink("ds_bold_t1w", space="T1w", desc="preproc", suffix="bold", meta_dict=bold_meta,
                  **func), [("bold_t1w", "in_file")]),
            (sink("ds_boldref_t1w", space="T1w", suffix="boldref", **func),
             [("boldref_t1w", "in_file")]),
            (sink("ds_bold2t1w_xfm", from_="boldref", to="T1w", mode="image", suffix="xfm",
                  extension=".txt", meta_dict={"Method": "ANTs rigid, Mattes mutual information"},
                  **func), [("bold2anat_xfm", "in_file")]),
        ]
    if glm:
        writers.append((sink("ds_zmaps", iterfield=["in_file", "desc"], stat="z",
                             suffix="statmap", meta_dict={"Model": GLM_MODEL}, **std, **func),
                        [("zmaps", "in_file"), ("condition_labels", "desc")]))
    workflow.connect([(inputnode, writer, fields) for writer, fields in writers])
    return workflow
