"""Build the diffusion workflow (without running it) for real and bids-examples layouts."""

import json

import pytest

from brainscale.workflows.dwi.workflow import init_dwi_wf

ATLAS = "DesikanKilliany"


def _edges(workflow):
    graph = workflow._graph
    return {(u.name, v.name): data["connect"] for u, v, data in graph.edges(data=True)}


def _sub02(ds):
    dwi = sorted((ds / "sub-02" / "dwi").glob("*_dwi.nii.gz"))
    meta = [json.loads(f.with_name(f.name.replace(".nii.gz", ".json")).read_text()) for f in dwi]
    return (
        [str(f) for f in dwi],
        [str(f).replace(".nii.gz", ".bval") for f in dwi],
        [str(f).replace(".nii.gz", ".bvec") for f in dwi],
        meta,
    )


@pytest.mark.realdata
@pytest.mark.parametrize("has_anat", [True, False])
def test_dwi_wf_builds_for_reversed_pe_pair(ds_real_mini, tmp_path, has_anat):
    dwi, bval, bvec, meta = _sub02(ds_real_mini)
    wf = init_dwi_wf(dwi_files=dwi, bval_files=bval, bvec_files=bvec, metadata=meta,
                     has_anat=has_anat, output_dir=str(tmp_path), atlases=[ATLAS], name="dwi_wf")
    names = set(wf.list_node_names())
    expected = {"inputnode", "outputnode", "denoise", "sdc", "hmc", "dwi_reference", "tensor",
                "register", "tractography", "connectomes", "report_figures", "ds_dwi",
                "ds_bval", "ds_bvec", "ds_mask", "ds_tensor", "ds_tractography", "ds_relmat",
                "ds_figures", "ds_confounds"}
    assert expected <= names
    edges = _edges(wf)
    # both series enter the distortion correction together
    assert wf.get_node("denoise").inputs.in_file == dwi
    assert ("denoise", "sdc") in edges
    assert wf.get_node("sdc").inputs.metadata[0]["PhaseEncodingDirection"] in ("j", "j-")
    assert wf.get_node("sdc").inputs.series_names == [f.split("/")[-1] for f in dwi]
    anat_edge = ("inputnode", "register") in edges
    template_edge = ("resources", "register") in edges and any(
        dst == "template_file" for _, dst in edges[("resources", "register")])
    assert anat_edge is has_anat
    assert template_edge is not has_anat
    assert (("register", "tractography") in edges) is has_anat
    assert (("register", "ds_dwi2anat_xfm") in edges) is has_anat
    # every writer names both raw series as its sources (the sink keeps shared entities)
    for writer in ("ds_dwi", "ds_tensor", "ds_relmat", "ds_tractography"):
        assert wf.get_node(writer).inputs.source_file == dwi


def test_dwi_wf_builds_for_bids_examples_ds114(bids_examples, tmp_path):
    root = bids_examples / "ds114"
    dwi = sorted(root.glob("sub-01/ses-test/dwi/*_dwi.nii.gz"))
    assert dwi, "ds114 has DWI"
    wf = init_dwi_wf(dwi_files=[str(dwi[0])], bval_files=[str(root / "dwi.bval")],
                     bvec_files=[str(root / "dwi.bvec")], metadata=[{}], has_anat=True,
                     output_dir=str(tmp_path), atlases=[], name="dwi_ses_test_wf")
    assert wf.name == "dwi_ses_test_wf"
    assert "connectomes" not in wf.list_node_names()
    assert ("report_figures", "ds_figures") in _edges(wf)


def test_mismatched_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="equal length"):
        init_dwi_wf(dwi_files=["a"], bval_files=[], bvec_files=["c"], metadata=[{}],
                    has_anat=False, output_dir=str(tmp_path), atlases=[])
