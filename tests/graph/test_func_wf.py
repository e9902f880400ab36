import json

import pytest

from brainscale.errors import InputDataError, UsageError
from brainscale.workflows.func.workflow import INPUT_FIELDS, OUTPUT_FIELDS, init_func_wf
from tests.graph.wiring import flat_connections

META = {"RepetitionTime": 2.0, "TaskName": "rest"}


def _edges(wf):
    return set(flat_connections(wf))


def _names(wf):
    """Node names without the sub-workflow they sit in."""
    return {name.rsplit(".", 1)[-1] for name in wf.list_node_names()}


def _node(wf, name):
    """The node called ``name`` in whichever sub-workflow it sits."""
    (full,) = [n for n in wf.list_node_names() if n.rsplit(".", 1)[-1] == name]
    return wf.get_node(full)


def _build(tmp_path, **kwargs):
    bold = tmp_path / "sub-01_task-rest_bold.nii.gz"
    bold.touch()  # builds need existing (possibly empty) inputs, as in bids-examples
    args = dict(bold_file=str(bold), metadata=META,
                has_anat=True, output_dir=str(tmp_path / "out"),
                atlases=["DesikanKilliany"], denoise_strategy="36P")
    args.update(kwargs)
    return init_func_wf(**args)


def test_build_with_anat_faces_and_writers(tmp_path):
    wf = _build(tmp_path)
    assert wf.name == "func_sub_01_task_rest_wf"
    nodes = _names(wf)
    inputnode, outputnode = wf.get_node("inputnode"), wf.get_node("outputnode")
    assert set(inputnode.inputs.copyable_trait_names()) == set(INPUT_FIELDS)
    assert set(outputnode.inputs.copyable_trait_names()) == set(OUTPUT_FIELDS)
    for name in ["bold_reference", "head_motion", "coregister", "resample_std", "resample_t1w",
                 "confounds", "connectivity", "carpet_plot", "coregistration_plot"]:
        assert name in nodes, name
    writers = {n for n in nodes if n.startswith("ds_")}
    assert {"ds_bold_std", "ds_confounds", "ds_timeseries", "ds_relmat_pearson",
            "ds_relmat_partial", "ds_relmat_pearson_z", "ds_relmat_partial_z", "ds_bold_t1w",
            "ds_bold2t1w_xfm", "ds_carpet", "ds_coregistration"} <= writers
    edges = _edges(wf)
    assert ("inputnode", "coregister") in edges and ("inputnode", "resample_std") in edges
    assert ("resample_t1w", "confounds") in edges
    assert ("template", "coregister") not in edges
    assert _node(wf, "coregister").inputs.transform_type == "Rigid"
    ds = _node(wf, "ds_relmat_pearson_z")
    assert ds.inputs.meas == "PearsonCorrelation" and ds.inputs.desc == "fisherz"
    assert ds.inputs.atlas == ["DesikanKilliany"]
    meta = _node(wf, "ds_bold_std").inputs.meta_dict
    assert meta["SliceTimingCorrected"] is False and "SliceTimingNote" in meta


def test_bold_only_path(tmp_path):
    wf = _build(tmp_path, has_anat=False)
    nodes = _names(wf)
    assert "resample_t1w" not in nodes and "ds_bold_t1w" not in nodes
    edges = _edges(wf)
    assert ("template", "coregister") in edges and ("inputnode", "coregister") not in edges
    assert ("resample_std", "confounds") in edges
    assert _node(wf, "coregister").inputs.transform_type == "Affine"
    assert "RegistrationNote" in _node(wf, "ds_bold_std").inputs.meta_dict


def test_task_run_gets_glm(tmp_path):
    events = tmp_path / "sub-01_task-rest_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n0\t1\ta\n")
    wf = _build(tmp_path, events_file=str(events))
    assert {"first_level", "ds_zmaps"} <= _names(wf)
    assert "first_level" not in _names(_build(tmp_path))


def test_slice_timing_metadata(tmp_path):
    meta = dict(META, SliceTiming=[0.0, 1.0, 0.5, 1.5])
    wf = _build(tmp_path, metadata=meta)
    sidecar = _node(wf, "ds_bold_std").inputs.meta_dict
    assert sidecar["SliceTimingCorrected"] is True and sidecar["StartTime"] == 0.75


def test_bad_metadata_and_strategy(tmp_path):
    with pytest.raises(InputDataError, match="RepetitionTime"):
        _build(tmp_path, metadata={"TaskName": "rest"})
    with pytest.raises(UsageError, match="unknown denoising strategy"):
        _build(tmp_path, denoise_strategy="100P")


def test_builds_for_bids_examples_ds005(bids_examples, tmp_path):
    root = bids_examples / "ds005"
    metadata = json.loads((root / "task-mixedgamblestask_bold.json").read_text())
    bolds = sorted(root.glob("sub-0[12]/func/*_bold.nii.gz"))
    assert len(bolds) == 6
    names = set()
    for bold in bolds:
        events = bold.with_name(bold.name.replace("_bold.nii.gz", "_events.tsv"))
        wf = init_func_wf(bold_file=str(bold), metadata=metadata, has_anat=True,
                          output_dir=str(tmp_path), atlases=["DesikanKilliany", "AAL"],
                          denoise_strategy="acompcor_gsr", events_file=str(events))
        assert _node(wf, "connectivity").inputs.atlas_name == ["DesikanKilliany", "AAL"]
        names.add(wf.name)
    assert len(names) == 6  # one uniquely named workflow per run


def _fieldmap(tmp_path, **meta):
    phasediff, magnitude = tmp_path / "sub-01_phasediff.nii.gz", tmp_path / "sub-01_magnitude1.nii.gz"
    phasediff.touch()
    magnitude.touch()
    return {"phasediff": str(phasediff), "magnitude": str(magnitude),
            "metadata": {"EchoTime1": 0.00492, "EchoTime2": 0.00738, **meta}}


def test_fieldmap_sdc_is_wired_when_metadata_allow(tmp_path):
    meta = dict(META, PhaseEncodingDirection="j-", TotalReadoutTime=0.03)
    wf = _build(tmp_path, metadata=meta, fieldmap=_fieldmap(tmp_path))
    edges = _edges(wf)
    assert {("bold_reference", "fieldmap_sdc"), ("fieldmap_sdc", "coregister"),
            ("fieldmap_sdc", "resample_std"), ("fieldmap_sdc", "resample_t1w")} <= edges
    assert ("bold_reference", "coregister") not in edges
    sdc = _node(wf, "fieldmap_sdc").inputs
    assert sdc.pe_direction == "j-" and sdc.total_readout_time == 0.03
    assert _node(wf, "resample_t1w").inputs.pe_direction == "j-"
    note = _node(wf, "ds_bold_std").inputs.meta_dict["SusceptibilityDistortionCorrection"]
    assert note.startswith("phase-difference field map sub-01_phasediff.nii.gz")


def test_fieldmap_without_readout_time_is_skipped_with_a_note(tmp_path):
    wf = _build(tmp_path, metadata=dict(META, PhaseEncodingDirection="j"),
                fieldmap=_fieldmap(tmp_path))
    assert "fieldmap_sdc" not in _names(wf)
    note = _node(wf, "ds_bold_std").inputs.meta_dict["SusceptibilityDistortionCorrection"]
    assert note.startswith("None") and "TotalReadoutTime" in note
    note = _node(_build(tmp_path), "ds_bold_std").inputs.meta_dict[
        "SusceptibilityDistortionCorrection"]
    assert note.startswith("None: no phase-difference field map")
