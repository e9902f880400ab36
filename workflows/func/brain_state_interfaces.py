"""Thin Nipype interfaces of the brain-state analyses: load, one numeric call, save."""

from __future__ import annotations

import nibabel as nib
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from brainscale.errors import InputDataError
from brainscale.workflows.func import decoding, decoding_models
from brainscale.workflows.func.decoding_analysis import SEQUENCE_MODEL, RunData, decode_runs
from brainscale.workflows.func.decoding_features import (
    decoding_features,
    n_nonsteady_from_confounds,
)
from brainscale.workflows.func.glm import read_events
from brainscale.workflows.func.motion import MOTION_COLUMNS
from brainscale.workflows.interface_utils import out_path, save_image


def _tsv(frame: pd.DataFrame, path: str) -> str:
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    return path


class _DecodeInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed BOLD in template space")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    confounds_file = File(exists=True, mandatory=True, desc="confounds TSV of the run")
    events_file = File(exists=True, mandatory=True, desc="events.tsv of the run")
    repetition_time = traits.Float(mandatory=True)
    atlas_name = traits.Str(mandatory=True)
    space = traits.Enum("parcels", "voxels", usedefault=True)
    regions = traits.List(traits.Str, usedefault=True, desc="atlas region substrings")
    conditions = traits.List(traits.Str, usedefault=True, desc="trial types to decode (empty: all)")
    models = traits.List(traits.Str, value=list(decoding_models.MODELS), usedefault=True)
    pattern_kind = traits.Enum("lss", "block", usedefault=True)
    n_folds = traits.Int(0, usedefault=True, desc="folds of a single run (0: from the design)")
    gap_s = traits.Float(decoding.HRF_LENGTH_S, usedefault=True)
    n_permutations = traits.Int(100, usedefault=True)
    seed = traits.Int(0, usedefault=True)
    device = traits.Str("auto", usedefault=True)


class _DecodeOutputSpec(TraitedSpec):
    metrics_file = File(exists=True, desc="one row per model: balanced accuracy, p-value")
    patterns_file = File(exists=True, desc="the trial/block patterns")
    confusion_files = traits.List(File(exists=True), desc="confusion matrix per model")
    weights_files = traits.List(File(exists=True), desc="weights per feature per model")
    map_files = traits.List(File(exists=True), desc="weight/importance NIfTI per model")
    model_labels = traits.List(traits.Str, desc="model of each confusion file")
    map_models = traits.List(traits.Str, desc="model of each weights/map file (not tcn)")
    map_stats = traits.List(traits.Str, desc="'weight' or 'importance' per map")
    figure_file = File(exists=True, desc="confusion matrices and accuracies")
    metadata = traits.Dict(desc="method parameters for the sidecars")


class DecodeConditions(SimpleInterface):
    """Decode the task conditions of one run (see :mod:`brainscale.workflows.func.decoding`)."""

    input_spec = _DecodeInputSpec
    output_spec = _DecodeOutputSpec

    def _run_interface(self, runtime):
        from brainscale.resources import get_atlas
        from brainscale.workflows.func.figures_decoding import plot_decoding

        inputs = self.inputs
        atlas = get_atlas(inputs.atlas_name)
        series, space = decoding_features(
            nib.load(inputs.bold_file), nib.load(inputs.mask_file), atlas.load(), atlas.labels,
            space=inputs.space, regions=list(inputs.regions) or None)
        confounds = pd.read_csv(inputs.confounds_file, sep="\t", na_values=["n/a"])
        run = RunData(series, read_events(inputs.events_file), inputs.repetition_time,
                      confounds[list(MOTION_COLUMNS)].to_numpy(dtype=float),
                      n_nonsteady_from_confounds(confounds))
        models = [m for m in inputs.models if m != SEQUENCE_MODEL or space.kind == "parcels"]
        try:
            analysis = decode_runs([run], feature_names=space.names, kind=inputs.pattern_kind,
                                   conditions=list(inputs.conditions) or None, models=models,
                                   n_folds=inputs.n_folds or None, gap_s=inputs.gap_s,
                                   n_permutations=inputs.n_permutations, seed=inputs.seed,
                                   device=inputs.device)
        except InputDataError as err:  # the data cannot support decoding: a note, no failure
            self._not_decoded(runtime, f"{inputs.events_file}: not decoded ({err})", space)
            return runtime
        self._results["metrics_file"] = _tsv(analysis.metrics(), out_path(runtime, "metrics.tsv"))
        patterns = analysis.patterns.table().drop(columns="run")
        self._results["patterns_file"] = _tsv(patterns, out_path(runtime, "patterns.tsv"))
        labels = [result.model for result in analysis.results]
        self._results["model_labels"] = labels
        self._results["confusion_files"] = [
            _tsv(decoding_models.confusion_frame(r), out_path(runtime, f"confusion_{r.model}.tsv"))
            for r in analysis.results]
        mapped = [r for r in analysis.results if r.weights.shape[1] == len(space.names)]
        self._results["map_models"] = [r.model for r in mapped]
        self._results["map_stats"] = [r.weight_kind for r in mapped]
        self._results["weights_files"] = [
            _tsv(decoding_models.weight_frame(r, space.names),
                 out_path(runtime, f"weights_{r.model}.tsv"))
            for r in mapped]
        self._results["map_files"] = [
            save_image(space.to_image(r.weights).get_fdata(), space.affine,
                       out_path(runtime, f"map_{r.model}.nii.gz")) for r in mapped]
        self._results["figure_file"] = plot_decoding(analysis.results,
                                                     out_path(runtime, "decoding.svg"))
        classes = analysis.results[0].classes if analysis.results else []
        self._results["metadata"] = {
            "Conditions": classes,
            "FeatureSpace": space.kind,
            "Atlas": atlas.name,
            "Regions": space.names if space.kind == "parcels" else list(inputs.regions),
            "NumberOfFeatures": len(space.names),
            "Patterns": {"lss": "least-squares-separate trial betas (Mumford et al. 2012), "
                                "Glover HRF, 6 motion + cosine 128 s nuisance",
                         "block": "block-mean signal delayed by 4 s"}[inputs.pattern_kind],
            "CrossValidation": (f"{len(analysis.folds)} contiguous folds, training samples at "
                                f"least {inputs.gap_s:g} s from every test sample"),
            "PermutationTest": f"{inputs.n_permutations} block-label permutations",
            "Models": labels,
            "MapVolumes": classes,
        }
        return runtime

    def _not_decoded(self, runtime, note: str, space) -> None:
        """Write the outputs of an undecodable run: a metrics row with the reason, no maps."""
        from brainscale.workflows.func.figures_decoding import plot_decoding

        self._results["metrics_file"] = _tsv(pd.DataFrame([{"model": "n/a", "note": note}]),
                                             out_path(runtime, "metrics.tsv"))
        self._results["patterns_file"] = _tsv(pd.DataFrame(columns=["onset", "trial_type"]),
                                              out_path(runtime, "patterns.tsv"))
        for name in ("confusion_files", "weights_files", "map_files", "model_labels",
                     "map_models", "map_stats"):
            self._results[name] = []
        self._results["figure_file"] = plot_decoding([], out_path(runtime, "decoding.svg"))
        self._results["metadata"] = {"Note": note, "FeatureSpace": space.kind}

