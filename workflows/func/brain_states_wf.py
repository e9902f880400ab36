"""Sub-workflow: decoding the task conditions of one BOLD run (brain states).

Methods (for the boilerplate): activity patterns were estimated per trial with
least-squares-separate GLMs (Mumford et al. 2012; Glover HRF, six motion parameters and a
128 s cosine drift basis as nuisance) or as block means delayed by 4 s, from atlas parcel
means or template-space voxels. Linear SVM, logistic regression (class-balanced, inputs
standardised within each training fold) and a random forest were cross-validated with
contiguous folds whose training samples were at least one haemodynamic response (16 s)
from every test sample; balanced accuracy was tested against a null distribution of
block-label permutations (Schreiber & Krekelberg 2013).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.resources import TEMPLATE_SPACE
from brainscale.workflows.derivatives_sink import DerivativesDataSink
from brainscale.workflows.func import decoding_models
from brainscale.workflows.func.brain_state_interfaces import DecodeConditions

METHODS = (
    "Task conditions were decoded within each run: activity patterns per trial from "
    "least-squares-separate GLMs [@mumford2012] (Glover HRF, motion and cosine drift "
    "nuisance regressors) or per block; linear SVM, logistic regression and random forest "
    "classifiers were cross-validated with contiguous folds separated by a 16 s gap and "
    "tested against block-label permutations [@schreiber2013]."
)
REFERENCES = {
    "mumford2012": "Mumford JA, Turner BO, Ashby FG, Poldrack RA. Deconvolving BOLD "
    "activation in event-related designs for multivoxel pattern classification analyses. "
    "NeuroImage 59(3):2636-2643, 2012.",
    "schreiber2013": "Schreiber K, Krekelberg B. The statistical analysis of multi-voxel "
    "patterns in functional imaging. PLoS One 8(7):e69328, 2013.",
}
INPUT_FIELDS = ("bold_std", "bold_std_mask", "confounds", "repetition_time")
OUTPUT_FIELDS = ("metrics", "patterns", "confusion", "maps", "figure")


@dataclass(frozen=True)
class DecodingSettings:
    """The user's decoding options (``--decode-*``), passed on to the factory."""

    space: str = "parcels"
    regions: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    models: tuple[str, ...] = decoding_models.MODELS
    pattern_kind: str = "lss"
    n_permutations: int = 100
    device: str = "auto"

    def factory_args(self) -> dict:
        """Keyword arguments of :func:`init_bold_brain_states_wf`."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


def init_bold_brain_states_wf(
    *,
    bold_file: str,
    events_file: str,
    output_dir: str,
    atlas: str,
    std_resolution: int = 2,
    space: str = "parcels",
    regions: list[str] | None = None,
    conditions: list[str] | None = None,
    models: list[str] | None = None,
    pattern_kind: str = "lss",
    n_permutations: int = 100,
    seed: int = 0,
    device: str = "auto",
    name: str = "bold_brain_states_wf",
) -> pe.Workflow:
    """Build the decoding sub-workflow of one task run.

    Parameters
    ----------
    bold_file : str
        Raw BOLD (source of the derivative names).
    events_file : str
        Its ``events.tsv``.
    output_dir : str
        Derivatives folder.
    atlas : str
        Atlas of the parcels (and of ``regions``).
    std_resolution : int
        Voxel size (mm) of the template-space BOLD.
    space : {"parcels", "voxels"}
        Features: parcel means or template-space voxels (inside ``regions`` when given).
    regions : list of str, optional
        Region-name substrings restricting the features (e.g. ventral temporal cortex).
    conditions : list of str, optional
        Trial types to decode (default: all).
    models : list of str, optional
        Among ``linsvm``, ``logreg``, ``rf``, ``tcn`` (default: the first three).
    pattern_kind : {"lss", "block"}
        Trial betas or block means.
    n_permutations : int
        Block permutations for the p-value.
    seed : int
        Seed of the permutations, forest and sequence model.
    device : str
        Torch device of the sequence model.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (:data:`INPUT_FIELDS`), ``outputnode`` (:data:`OUTPUT_FIELDS`).
    """
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = METHODS
    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")
    decode = pe.Node(DecodeConditions(
        events_file=events_file, atlas_name=atlas, space=space, regions=list(regions or []),
        conditions=list(conditions or []), models=list(models or decoding_models.MODELS),
        pattern_kind=pattern_kind, n_permutations=n_permutations, seed=seed, device=device),
        name="decode", mem_gb=3.0)
    features = ({"atlas": atlas} if space == "parcels"
                else {"space": TEMPLATE_SPACE, "res": str(std_resolution)})
    maps = {"space": TEMPLATE_SPACE, "res": str(std_resolution),
            **({"atlas": atlas} if space == "parcels" else {})}

    def sink(node_name, iterfield=None, **kwargs):
        interface = DerivativesDataSink(base_directory=str(output_dir), source_file=bold_file,
                                        datatype=kwargs.pop("datatype", "func"), **kwargs)
        if iterfield:
            return pe.MapNode(interface, iterfield=iterfield, name=node_name,
                              run_without_submitting=True)
        return pe.Node(interface, name=node_name, run_without_submitting=True)

    ds_metrics = sink("ds_metrics", desc="decoding", suffix="metrics", extension=".tsv",
                      **features)
    ds_patterns = sink("ds_patterns", desc=pattern_kind, suffix="patterns",
                       extension=".tsv", **features)
    ds_confusion = sink("ds_confusion", iterfield=["in_file", "model"], desc="confusion",
                        suffix="metrics", extension=".tsv", **features)
    ds_weights = sink("ds_weights", iterfield=["in_file", "model"], desc="weights",
                      suffix="metrics", extension=".tsv", **features)
    ds_maps = sink("ds_maps", iterfield=["in_file", "model", "stat"], suffix="statmap", **maps)
    ds_figure = sink("ds_figure", datatype="figures", desc="decoding", suffix="bold",
                     extension=".svg", meta_dict={"Caption": "Decoding: row-normalised "
                                                  "confusion matrices, balanced accuracy"})
    workflow.connect([
        (inputnode, decode, [("bold_std", "bold_file"), ("bold_std_mask", "mask_file"),
                             ("confounds", "confounds_file"),
                             ("repetition_time", "repetition_time")]),
        (decode, ds_metrics, [("metrics_file", "in_file"), ("metadata", "meta_dict")]),
        (decode, ds_confusion, [("confusion_files", "in_file"), ("model_labels", "model")]),
        (decode, ds_weights, [("weights_files", "in_file"), ("map_models", "model")]),
        (decode, ds_maps, [("map_files", "in_file"), ("map_models", "model"),
                           ("map_stats", "stat"), ("metadata", "meta_dict")]),
        (decode, ds_figure, [("figure_file", "in_file")]),
        (decode, outputnode, [("metrics_file", "metrics"), ("patterns_file", "patterns"),
                              ("confusion_files", "confusion"), ("map_files", "maps"),
                              ("figure_file", "figure")]),
    ])
    if space == "parcels":  # voxel patterns (trials x up to 10^5 voxels) are not kept
        workflow.connect(decode, "patterns_file", ds_patterns, "in_file")
        workflow.connect(decode, "metadata", ds_patterns, "meta_dict")
    return workflow


def decoding_problem(events_file: str, conditions: list[str] | tuple[str, ...] = (),
                     bold_file: str | None = None, tr: float | None = None) -> str:
    """Return why a run's events cannot be decoded ("" when they can), at build time.

    Checks the conditions and, when the run's length is known (``bold_file`` header and
    ``tr``), that the time-respecting folds keep two conditions for training. The run is
    then processed without decoding and the reason is logged, so that an unsuitable
    ``events.tsv`` never fails the functional outputs.
    """
    import nibabel as nib
    import numpy as np

    from brainscale.errors import InputDataError
    from brainscale.workflows.func.decoding import Patterns, select_events, time_respecting_folds
    from brainscale.workflows.func.decoding_analysis import default_n_folds
    from brainscale.workflows.func.glm import read_events

    try:
        events = select_events(read_events(events_file), list(conditions) or None)
        if bold_file and tr:
            try:
                n_volumes = nib.load(bold_file).shape[3]
            except Exception:  # noqa: BLE001 - unreadable headers are reported elsewhere
                return ""
            events = events[events["onset"] < n_volumes * tr]
            labels = events["trial_type"].to_numpy()
            patterns = Patterns(np.zeros((len(events), 1)), labels,
                                events["onset"].to_numpy(dtype=float),
                                np.zeros(len(events), int), events["block"].to_numpy())
            if len(set(labels)) < 2:
                raise InputDataError("fewer than two conditions inside the run")
            time_respecting_folds(patterns, n_folds=default_n_folds(patterns))
    except InputDataError as err:
        return f"{events_file}: no decoding ({err})"
    return ""
