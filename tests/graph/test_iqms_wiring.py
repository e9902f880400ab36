"""The IQM nodes of each modality are wired to what they measure and to their writers."""

import json

import pytest

from brainscale.workflows.anat.workflow import init_anat_wf
from brainscale.workflows.dwi.workflow import init_dwi_wf
from brainscale.workflows.func.workflow import init_func_wf
from tests.graph.wiring import flat_connections


def _edges(wf):
    return {(u.name, v.name): d["connect"] for u, v, d in wf._graph.edges(data=True)}


def test_anat_iqms_read_the_raw_and_corrected_t1w(tmp_path):
    t1w = tmp_path / "sub-01_T1w.nii.gz"
    t1w.touch()
    wf = init_anat_wf(t1w_files=[str(t1w)], output_dir=str(tmp_path / "out"), atlases=[])
    edges = _edges(wf)
    assert ("out_file", "raw_file") in edges[("conform", "t1w_iqms")]
    assert ("out_file", "corrected_file") in edges[("bias_correct", "t1w_iqms")]
    assert ("tpms", "tpm_files") in edges[("segment", "t1w_iqms")]
    sink = wf.get_node("ds_t1w_iqms").inputs
    assert (sink.desc, sink.suffix, sink.extension) == ("iqms", "T1w", ".json")


@pytest.mark.parametrize("has_anat", [True, False])
def test_bold_iqms_use_the_motion_corrected_series(tmp_path, has_anat):
    bold = tmp_path / "sub-01_task-rest_bold.nii.gz"
    bold.touch()
    wf = init_func_wf(bold_file=str(bold), metadata={"RepetitionTime": 2.0}, has_anat=has_anat,
                      output_dir=str(tmp_path / "out"), atlases=["DesikanKilliany"])
    edges = flat_connections(wf)  # across the faces of its sub-workflows
    series = "resample_t1w" if has_anat else "resample_std"
    assert ("out_file", "series_file") in edges[(series, "bold_iqms")]
    assert ("confounds_file", "confounds_file") in edges[("confounds", "bold_iqms")]
    assert ("n_nonsteady", "n_nonsteady") in edges[("bold_reference", "bold_iqms")]
    assert ("bold_iqms", "ds_bold_iqms") in edges


@pytest.mark.parametrize("has_anat", [True, False])
def test_dwi_iqms_see_the_series_before_motion_correction(tmp_path, has_anat):
    files = []
    for direction in ("AP", "PA"):
        stem = tmp_path / f"sub-02_dir-{direction}_dwi"
        for ext in (".nii.gz", ".bval", ".bvec"):
            (stem.parent / (stem.name + ext)).touch()
        files.append(str(stem))
    wf = init_dwi_wf(dwi_files=[f + ".nii.gz" for f in files],
                     bval_files=[f + ".bval" for f in files],
                     bvec_files=[f + ".bvec" for f in files],
                     metadata=[json.loads('{"PhaseEncodingDirection": "j"}')] * 2,
                     has_anat=has_anat, output_dir=str(tmp_path / "out"), atlases=[])
    edges = _edges(wf)
    assert wf.get_node("dwi_iqms").inputs.raw_files == [f + ".nii.gz" for f in files]
    assert ("map_files", "map_files") in edges[("tensor", "dwi_iqms")]
    assert (("register", "dwi_iqms") in edges) is has_anat
    sink = wf.get_node("ds_dwi_iqms").inputs
    assert (sink.desc, sink.suffix, sink.extension) == ("iqms", "dwi", ".json")
