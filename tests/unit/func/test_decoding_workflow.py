"""The decoding sub-workflow end to end on a synthetic template-space run, and its wiring.

Truth: condition patterns planted per Desikan-Killiany parcel in a template-space BOLD
series are decoded above chance by the workflow; the outputs carry BIDS-Derivatives
names and sidecars; the weight maps are template-space NIfTI images with one volume per
condition and the parcel weights painted on the parcel's voxels.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.workflows.func import decoding
from brainscale.workflows.func.decoding_features import _atlas_on_grid
from brainscale.workflows.func.motion import MOTION_COLUMNS
from tests.unit.func.test_decoding import TR, block_events


@pytest.fixture(scope="module")
def synthetic_task_run(tmp_path_factory):
    from brainscale.resources import get_atlas
    from tests.unit.func.synthetic import template_grid

    root = tmp_path_factory.mktemp("decoding_wf")
    _, _, shape, affine = template_grid(voxel_mm=6.0)
    atlas = get_atlas("DesikanKilliany")
    labels = _atlas_on_grid(atlas.load(), shape, affine)
    events = block_events(n_repeats=3)
    n_volumes = int(np.ceil((events["onset"].max() + 20.0) / TR))
    regressors = decoding.trial_regressors(decoding.select_events(events), n_volumes, TR)
    rng = np.random.default_rng(0)
    n_parcels = len(atlas.labels)
    patterns = {c: rng.standard_normal(n_parcels) for c in events["trial_type"].unique()}
    amplitude = np.stack([1.0 + patterns[c] for c in decoding.select_events(events)["trial_type"]])
    parcel_signal = regressors @ amplitude  # (T, parcels)
    lookup = np.zeros((n_volumes, labels.max() + 1))
    lookup[:, atlas.labels["index"].to_numpy()] = parcel_signal
    data = 100.0 + np.moveaxis(lookup[:, labels], 0, -1)
    data += rng.standard_normal(data.shape) * 2.0
    bold_file = root / "sub-01_task-loc_bold.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), bold_file)
    nib.save(nib.Nifti1Image((labels > 0).astype(np.uint8), affine), root / "mask.nii.gz")
    events.to_csv(root / "sub-01_task-loc_events.tsv", sep="\t", index=False)
    pd.DataFrame(np.zeros((n_volumes, 6)), columns=list(MOTION_COLUMNS)).to_csv(
        root / "confounds.tsv", sep="\t", index=False)
    return root, bold_file


@pytest.mark.slow
def test_decoding_workflow_writes_bids_outputs_and_decodes(synthetic_task_run):
    from brainscale.workflows.func.brain_states_wf import init_bold_brain_states_wf

    root, bold_file = synthetic_task_run
    out = root / "out"
    wf = init_bold_brain_states_wf(
        bold_file=str(bold_file), events_file=str(root / "sub-01_task-loc_events.tsv"),
        output_dir=str(out), atlas="DesikanKilliany", models=["logreg", "rf"],
        n_permutations=9)
    wf.base_dir = str(root / "work")
    wf.inputs.inputnode.bold_std = str(bold_file)
    wf.inputs.inputnode.bold_std_mask = str(root / "mask.nii.gz")
    wf.inputs.inputnode.confounds = str(root / "confounds.tsv")
    wf.inputs.inputnode.repetition_time = TR
    wf.run()
    func = out / "sub-01" / "func"
    metrics = pd.read_csv(func / "sub-01_task-loc_atlas-DesikanKilliany_desc-decoding_metrics.tsv",
                          sep="\t").set_index("model")
    assert (metrics["balanced_accuracy"] > 0.6).all()
    assert metrics.loc["logreg", "permutation_p"] == pytest.approx(0.1)
    sidecar = json.loads((func / "sub-01_task-loc_atlas-DesikanKilliany_desc-decoding_"
                          "metrics.json").read_text())
    assert sidecar["Conditions"] == sorted(["body", "face", "house", "object"])
    assert "Sources" in sidecar
    assert (func / "sub-01_task-loc_atlas-DesikanKilliany_desc-lss_patterns.tsv").is_file()
    assert (func / "sub-01_task-loc_atlas-DesikanKilliany_model-logreg_desc-confusion_"
                   "metrics.tsv").is_file()
    weights = pd.read_csv(func / "sub-01_task-loc_atlas-DesikanKilliany_model-logreg_desc-"
                          "weights_metrics.tsv", sep="\t")
    weight_map = nib.load(func / "sub-01_task-loc_space-MNI152NLin2009aSym_res-2_atlas-"
                          "DesikanKilliany_model-logreg_stat-weight_statmap.nii.gz")
    assert weight_map.shape[-1] == 4  # one volume per condition, in Conditions order
    importance = nib.load(func / "sub-01_task-loc_space-MNI152NLin2009aSym_res-2_atlas-"
                          "DesikanKilliany_model-rf_stat-importance_statmap.nii.gz")
    assert importance.ndim == 3
    # the map paints each parcel's weight on its voxels
    data = weight_map.get_fdata()
    first = weights.iloc[0]
    voxel = np.argwhere(np.abs(data[..., 0] - first["body"]) < 1e-5)
    assert len(voxel) > 0
    assert (out / "sub-01" / "figures" / "sub-01_task-loc_desc-decoding_bold.svg").is_file()


def test_func_workflow_wires_decoding_only_when_asked(ds_real_mini_or_examples):
    from brainscale.workflows.func.brain_states_wf import DecodingSettings
    from brainscale.workflows.func.workflow import init_func_wf

    bold, events = ds_real_mini_or_examples
    meta = {"RepetitionTime": 2.0}
    plain = init_func_wf(bold_file=str(bold), metadata=meta, has_anat=False, output_dir="/tmp/o",
                         atlases=["DesikanKilliany"], events_file=str(events))
    assert "bold_brain_states_wf" not in plain.list_node_names()[0] and not any(
        n.startswith("bold_brain_states_wf") for n in plain.list_node_names())
    wf = init_func_wf(bold_file=str(bold), metadata=meta, has_anat=False, output_dir="/tmp/o",
                      atlases=["DesikanKilliany"], events_file=str(events),
                      decoding=DecodingSettings(space="voxels", regions=("fusiform",)))
    names = wf.list_node_names()
    assert "bold_brain_states_wf.decode" in names and "bold_brain_states_wf.ds_maps" in names
    assert "bold_brain_states_wf.ds_patterns" not in names  # voxel patterns are not kept
    decode = wf.get_node("bold_brain_states_wf.decode")
    assert decode.inputs.space == "voxels" and decode.inputs.regions == ["fusiform"]
    # conditions the events lack: the run is processed without decoding (a warning)
    skipped = init_func_wf(bold_file=str(bold), metadata=meta, has_anat=False,
                           output_dir="/tmp/o", atlases=["DesikanKilliany"],
                           events_file=str(events),
                           decoding=DecodingSettings(conditions=("face", "house")))
    assert not any(n.startswith("bold_brain_states_wf") for n in skipped.list_node_names())
    assert "func_derivatives_wf.ds_bold_std" in skipped.list_node_names()


@pytest.fixture
def ds_real_mini_or_examples(tmp_path):
    """A BOLD path and events file for graph building (the files are not read)."""
    bold = tmp_path / "sub-01_task-loc_bold.nii.gz"
    bold.touch()
    events = tmp_path / "sub-01_task-loc_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n0\t1\ta\n20\t1\tb\n")
    return bold, events


def test_command_line_options_become_decoding_settings(tmp_path):
    from brainscale.bids_app.cli import parse_args
    from brainscale.bids_app.participant_run import _decoding_settings

    base = [str(tmp_path), str(tmp_path / "out"), "participant"]
    assert _decoding_settings(parse_args(base)) is None  # decoding is opt-in
    settings = _decoding_settings(parse_args(base + ["--decode-conditions", "all"]))
    assert settings.conditions == () and settings.space == "parcels"
    config = parse_args(base + ["--decode-conditions", "face", "house", "--decode-space",
                                "voxels", "--decode-regions", "fusiform", "--decode-models",
                                "logreg", "tcn", "--decode-permutations", "50",
                                "--dfc-states", "3", "--dfc-window", "60"])
    settings = _decoding_settings(config)
    assert settings.conditions == ("face", "house") and settings.regions == ("fusiform",)
    assert settings.models == ("logreg", "tcn") and settings.n_permutations == 50
    assert config.group.dfc_states == 3 and config.group.dfc_window == 60.0
    assert settings.factory_args()["conditions"] == ["face", "house"]


def test_run_too_short_for_its_folds_is_a_note_not_a_failure(synthetic_task_run, tmp_path):
    """Events whose trials all fall in one fold: the interface writes the reason, no crash."""
    from brainscale.workflows.func.brain_state_interfaces import DecodeConditions

    root, bold_file = synthetic_task_run
    events = pd.DataFrame({"onset": [12.0, 14.0], "duration": [1.0, 1.0],
                           "trial_type": ["face", "house"]})
    events.to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    node = DecodeConditions(bold_file=str(bold_file), mask_file=str(root / "mask.nii.gz"),
                            confounds_file=str(root / "confounds.tsv"),
                            events_file=str(tmp_path / "events.tsv"), repetition_time=TR,
                            atlas_name="DesikanKilliany", models=["logreg"], n_permutations=0)
    result = node.run(cwd=str(tmp_path))
    metrics = pd.read_csv(result.outputs.metrics_file, sep="\t")
    assert "not decoded" in metrics["note"].iloc[0]
    assert result.outputs.map_files == [] and "Note" in result.outputs.metadata
    assert result.outputs.confusion_files == []
    # and the build-time check sees it, so that the func workflow leaves decoding out
    from brainscale.workflows.func.brain_states_wf import decoding_problem

    assert "no decoding" in decoding_problem(str(tmp_path / "events.tsv"), (), str(bold_file), TR)
    assert decoding_problem(str(root / "sub-01_task-loc_events.tsv"), (), str(bold_file), TR) == ""
