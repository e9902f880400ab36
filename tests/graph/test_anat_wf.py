import pytest

from brainscale.workflows.anat.workflow import OUTPUT_FIELDS, init_anat_wf


@pytest.fixture
def anat_wf(tmp_path):
    t1w = tmp_path / "sub-01_ses-1_T1w.nii.gz"
    t1w.touch()
    return init_anat_wf(t1w_files=[str(t1w)], output_dir=str(tmp_path / "out"),
                        atlases=["DesikanKilliany", "AAL"], name="anat_wf")


def test_public_faces_follow_the_contract(anat_wf):
    names = set(anat_wf.list_node_names())
    assert {"inputnode", "outputnode"} <= names
    outputnode = anat_wf.get_node("outputnode")
    assert set(outputnode.inputs.copyable_trait_names()) == set(OUTPUT_FIELDS)
    assert set(OUTPUT_FIELDS) == {"t1w_preproc", "t1w_mask", "t1w_dseg", "t1w_tpms",
                                  "anat2std_xfm", "std2anat_xfm", "std_t1w", "atlas_native"}
    for field in OUTPUT_FIELDS:  # every output is connected
        assert any(field in [c[1] for c in data["connect"]]
                   for _, dst, data in anat_wf._graph.in_edges(outputnode, data=True)
                   if dst is outputnode), field


def test_every_derivative_is_written_by_a_ds_node(anat_wf):
    sinks = {n for n in anat_wf.list_node_names() if n.startswith("ds_")}
    assert sinks == {"ds_t1w_preproc", "ds_t1w_mask", "ds_t1w_dseg", "ds_t1w_tpms",
                     "ds_std_t1w", "ds_anat2std_xfm", "ds_std2anat_xfm", "ds_thickness",
                     "ds_regional_morph", "ds_global_morph", "ds_seg_figure", "ds_norm_figure",
                     "ds_t1w_iqms", "ds_modulated_gm", "ds_white", "ds_pial",
                     "ds_surface_thickness"}
    for name, extension in (("ds_white", ".surf.gii"), ("ds_pial", ".surf.gii"),
                            ("ds_surface_thickness", ".shape.gii")):
        mesh = anat_wf.get_node(name).inputs
        assert (mesh.hemi, mesh.extension) == (["L", "R"], extension)
    vbm = anat_wf.get_node("ds_modulated_gm").inputs
    assert (vbm.space, vbm.res, vbm.label, vbm.desc) == ("MNI152NLin2009aSym", "2", "GM",
                                                         "modulated")
    assert anat_wf.get_node("ds_regional_morph").inputs.atlas == ["DesikanKilliany", "AAL"]
    assert anat_wf.get_node("atlas_to_native").inputs.atlas == ["DesikanKilliany", "AAL"]
    fwd = anat_wf.get_node("ds_anat2std_xfm").inputs
    assert (fwd.from_, fwd.to, fwd.mode) == ("T1w", "MNI152NLin2009aSym", "image")
