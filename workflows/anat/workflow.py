"""The anatomical workflow: T1w preprocessing, normalization, segmentation, morphometry.

The methods boilerplate of this workflow, with citations, is in
:mod:`brainscale.workflows.anat.methods`.
"""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from brainscale.resources import TEMPLATE_SPACE
from brainscale.workflows.anat import methods
from brainscale.workflows.anat.interfaces import (
    AtlasToNative,
    BiasFieldCorrection,
    ConformT1w,
    CorticalThickness,
    ModulatedGM,
    Morphometry,
    NormalizationFigure,
    NormalizeToTemplate,
    SegmentationFigure,
    SegmentTissues,
)
from brainscale.workflows.anat.surface_interfaces import CorticalSurfaces, SurfaceMorphometry
from brainscale.workflows.qc_interfaces import T1wIQMs

OUTPUT_FIELDS = ["t1w_preproc", "t1w_mask", "t1w_dseg", "t1w_tpms", "anat2std_xfm",
                 "std2anat_xfm", "std_t1w", "atlas_native"]


def _pick(items, index):
    return items[index]


def init_anat_wf(*, t1w_files: list[str], output_dir: str, atlases: list[str],
                 omp_nthreads: int = 1, seed: int = 0, template_resolution: int = 1,
                 thickness_method: str = "surface", skull_stripped: bool | None = None,
                 name: str = "anat_wf") -> pe.Workflow:
    """Build the anatomical workflow of one participant.

    N4 bias correction, brain extraction (none for a pre-stripped input) and
    affine + SyN normalization (finest level 1 mm) to the embedded MNI152 2009a
    template (antspyx), eTIV from the affine, template-prior tissue segmentation with
    partial-volume classes, cortical thickness (Laplace streamlines by default),
    atlases warped to native space, morphometry tables and report figures; every
    result is written with ``ds_*`` DerivativesDataSink nodes.

    Parameters
    ----------
    t1w_files : list of str
        Raw T1w images of the participant (the highest-resolution one is processed).
    output_dir : str
        Derivatives folder.
    atlases : list of str
        Atlas names (see :func:`brainscale.resources.available_atlases`).
    omp_nthreads : int
        Threads given to ANTs-heavy nodes.
    seed : int
        Random seed of the registrations.
    template_resolution : {1, 2}
        Resolution (mm) of the ``space-MNI152NLin2009aSym`` T1w output.
    thickness_method : {"surface", "laplace", "direct"}
        Cortical thickness method (see
        :data:`brainscale.workflows.anat.thickness.THICKNESS_METHODS`).
    skull_stripped : bool, optional
        Whether the T1w is already skull-stripped; ``None``: the sidecar's
        ``SkullStripped`` field, else detected from the image
        (:func:`brainscale.workflows.anat.brain_extraction.skull_stripped_status`). A stripped
        input gets no brain extraction.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Workflow with an ``outputnode`` carrying :data:`OUTPUT_FIELDS`.
    """
    from brainscale.workflows.derivatives_sink import DerivativesDataSink

    workflow = pe.Workflow(name=name)
    # methods text, collected from the built graph (brainscale.workflows.methods)
    workflow.__desc__ = methods.describe(thickness_method=thickness_method)
    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w_files"]), name="inputnode")
    inputnode.inputs.t1w_files = list(t1w_files)
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    conform = pe.Node(ConformT1w(skull_stripped={None: "auto", True: "yes", False: "no"}[
        skull_stripped]), name="conform")
    bias_correct = pe.Node(BiasFieldCorrection(), name="bias_correct", n_procs=omp_nthreads)
    normalize = pe.Node(NormalizeToTemplate(seed=seed, template_resolution=template_resolution),
                        name="normalize", n_procs=omp_nthreads, mem_gb=3)
    segment = pe.Node(SegmentTissues(), name="segment", mem_gb=3)
    surfaces = pe.Node(CorticalSurfaces(), name="surfaces", mem_gb=4)
    thickness = surfaces  # the surfaces node measures the default (surface) thickness
    if thickness_method != "surface":
        thickness = pe.Node(CorticalThickness(method=thickness_method), name="thickness",
                            n_procs=omp_nthreads, mem_gb=3)
        workflow.connect([(segment, thickness, [("dseg", "dseg"), ("tpms", "tpms")]),
                          (normalize, thickness, [("inverse_xfm", "inverse_xfm")])])
    atlas_to_native = pe.MapNode(AtlasToNative(), iterfield=["atlas"], name="atlas_to_native")
    atlas_to_native.inputs.atlas = list(atlases)
    regional_morph = pe.MapNode(Morphometry(), iterfield=["atlas", "atlas_file"],
                                name="regional_morph")
    regional_morph.inputs.atlas = list(atlases)
    global_morph = pe.Node(Morphometry(), name="global_morph")
    # areas (and FreeSurfer-style mean thickness) measured on the meshes
    regional_surface_morph = pe.MapNode(SurfaceMorphometry(),
                                        iterfield=["in_file", "meta", "atlas_file"],
                                        name="regional_surface_morph")
    global_surface_morph = pe.Node(SurfaceMorphometry(), name="global_surface_morph")
    seg_figure = pe.Node(SegmentationFigure(), name="seg_figure")
    norm_figure = pe.Node(NormalizationFigure(template_resolution=template_resolution),
                          name="norm_figure")
    t1w_iqms = pe.Node(T1wIQMs(), name="t1w_iqms", mem_gb=2)

    def sink(suffix, datatype="anat", extension=".nii.gz", **entities):
        return DerivativesDataSink(base_directory=str(output_dir), datatype=datatype,
                                   suffix=suffix, extension=extension, **entities)

    ds_t1w_preproc = pe.Node(sink("T1w", desc="preproc"), name="ds_t1w_preproc")
    ds_t1w_mask = pe.Node(sink("mask", desc="brain"), name="ds_t1w_mask")
    ds_t1w_dseg = pe.Node(sink("dseg", meta_dict={"Labels": {"0": "BG", "1": "CSF", "2": "GM",
                                                             "3": "WM"}}), name="ds_t1w_dseg")
    ds_t1w_tpms = pe.MapNode(sink("probseg"), iterfield=["in_file", "label"], name="ds_t1w_tpms")
    ds_t1w_tpms.inputs.label = ["GM", "WM", "CSF"]
    ds_std_t1w = pe.Node(sink("T1w", desc="preproc", space=TEMPLATE_SPACE,
                              res=str(template_resolution)), name="ds_std_t1w")
    ds_anat2std_xfm = pe.Node(sink("xfm", from_="T1w", to=TEMPLATE_SPACE, mode="image",
                                   meta_dict={"Type": "ITK displacement field (LPS)"}),
                              name="ds_anat2std_xfm")
    ds_std2anat_xfm = pe.Node(sink("xfm", from_=TEMPLATE_SPACE, to="T1w", mode="image",
                                   meta_dict={"Type": "ITK displacement field (LPS)"}),
                              name="ds_std2anat_xfm")
    ds_thickness = pe.Node(sink("morph", desc="thickness"), name="ds_thickness")
    ds_regional_morph = pe.MapNode(sink("morph", extension=".tsv"),
                                   iterfield=["in_file", "atlas", "meta_dict"],
                                   name="ds_regional_morph")
    ds_regional_morph.inputs.atlas = list(atlases)
    ds_global_morph = pe.Node(sink("morph", extension=".tsv", desc="brain"),
                              name="ds_global_morph")
    ds_seg_figure = pe.Node(sink("dseg", datatype="figures", extension=".svg"),
                            name="ds_seg_figure")
    ds_norm_figure = pe.Node(sink("T1w", datatype="figures", extension=".svg",
                                  space=TEMPLATE_SPACE,
                                  meta_dict={"Caption": "T1w normalized to MNI152NLin2009aSym "
                                             "with the template brain outline (red)."}),
                             name="ds_norm_figure")

    workflow.connect([
        (inputnode, conform, [("t1w_files", "t1w_files")]),
        (conform, bias_correct, [("out_file", "in_file")]),
        (bias_correct, normalize, [("out_file", "in_file")]),
        (conform, normalize, [("skull_stripped", "skull_stripped")]),
        (bias_correct, segment, [("out_file", "in_file")]),
        (conform, segment, [("skull_stripped", "skull_stripped")]),
        (normalize, global_morph, [("affine_xfm", "affine_xfm")]),
        (normalize, segment, [("inverse_xfm", "inverse_xfm")]),
        (segment, surfaces, [("dseg", "dseg"), ("tpms", "tpms")]),
        (normalize, surfaces, [("inverse_xfm", "inverse_xfm")]),
        (bias_correct, surfaces, [("out_file", "t1w")]),
        (thickness, ds_thickness, [("meta", "meta_dict")]),
        (bias_correct, atlas_to_native, [("out_file", "reference")]),
        (normalize, atlas_to_native, [("inverse_xfm", "inverse_xfm")]),
        (segment, regional_morph, [("tpms", "tpms"), ("mask", "mask")]),
        (thickness, regional_morph, [("out_file", "thickness")]),
        (atlas_to_native, regional_morph, [("out_file", "atlas_file")]),
        (segment, global_morph, [("tpms", "tpms"), ("mask", "mask")]),
        (thickness, global_morph, [("out_file", "thickness")]),
        (bias_correct, seg_figure, [("out_file", "t1w")]),
        (segment, seg_figure, [("mask", "mask"), ("dseg", "dseg")]),
        (normalize, norm_figure, [("std_t1w", "std_t1w")]),
        (bias_correct, outputnode, [("out_file", "t1w_preproc")]),
        (segment, outputnode, [("mask", "t1w_mask"), ("dseg", "t1w_dseg"), ("tpms", "t1w_tpms")]),
        (normalize, outputnode, [("forward_xfm", "anat2std_xfm"), ("inverse_xfm", "std2anat_xfm"),
                                 ("std_t1w", "std_t1w")]),
        (atlas_to_native, outputnode, [("out_file", "atlas_native")]),
    ])
    for ds, node, field in (
        (ds_t1w_preproc, bias_correct, "out_file"), (ds_t1w_mask, segment, "mask"),
        (ds_t1w_dseg, segment, "dseg"), (ds_t1w_tpms, segment, "tpms"),
        (ds_std_t1w, normalize, "std_t1w"), (ds_anat2std_xfm, normalize, "forward_xfm"),
        (ds_std2anat_xfm, normalize, "inverse_xfm"), (ds_thickness, thickness, "out_file"),
        (ds_regional_morph, regional_surface_morph, "out_file"),
        (ds_global_morph, global_surface_morph, "out_file"),
        (ds_seg_figure, seg_figure, "out_file"), (ds_norm_figure, norm_figure, "out_file"),
    ):
        workflow.connect([(node, ds, [(field, "in_file")]),
                          (conform, ds, [("source_file", "source_file")])])
    workflow.connect([
        (regional_surface_morph, ds_regional_morph, [("meta", "meta_dict")]),
        (global_surface_morph, ds_global_morph, [("meta", "meta_dict")]),
        (conform, ds_t1w_preproc, [("meta", "meta_dict")]),
        (conform, ds_t1w_mask, [("mask_meta", "meta_dict")]),
        (conform, ds_seg_figure, [("seg_figure_meta", "meta_dict")]),
    ])
    ds_t1w_iqms = pe.Node(sink("T1w", desc="iqms", extension=".json"), name="ds_t1w_iqms")
    workflow.connect([  # image quality metrics (MRIQC names), brainscale.workflows.anat.iqms
        (conform, t1w_iqms, [("out_file", "raw_file"), ("source_file", "source_file")]),
        (bias_correct, t1w_iqms, [("out_file", "corrected_file")]),
        (segment, t1w_iqms, [("mask", "mask_file"), ("tpms", "tpm_files")]),
        (t1w_iqms, ds_t1w_iqms, [("out_file", "in_file")]),
        (conform, ds_t1w_iqms, [("source_file", "source_file")]),
    ])
    modulated_gm = pe.Node(ModulatedGM(), name="modulated_gm", mem_gb=2)
    ds_modulated_gm = pe.Node(sink("probseg", space=TEMPLATE_SPACE, res="2", label="GM",
                                   desc="modulated", meta_dict={
                                       "Units": "mm^3 of GM per mm^3 of template",
                                       "Method": "GM fraction warped to the template (linear) "
                                                 "x Jacobian determinant of the warp"}),
                              name="ds_modulated_gm")
    workflow.connect([  # VBM input of the group image models, brainscale.workflows.anat.vbm
        (segment, modulated_gm, [("tpms", "tpms")]),
        (normalize, modulated_gm, [("forward_xfm", "forward_xfm")]),
        (modulated_gm, ds_modulated_gm, [("out_file", "in_file")]),
        (conform, ds_modulated_gm, [("source_file", "source_file")]),
    ])
    ds_surfaces = {kind: pe.MapNode(sink(kind, extension=".surf.gii"),
                                    iterfield=["in_file", "hemi"], name=f"ds_{kind}")
                   for kind in ("white", "pial")}
    ds_surface_thickness = pe.MapNode(sink("thickness", extension=".shape.gii",
                                           meta_dict={"Units": "mm"}),
                                      iterfield=["in_file", "hemi"], name="ds_surface_thickness")
    workflow.connect([  # meshes per hemisphere, brainscale.workflows.anat.surface_thickness
        (regional_morph, regional_surface_morph, [("out_file", "in_file"), ("meta", "meta")]),
        (atlas_to_native, regional_surface_morph, [("out_file", "atlas_file")]),
        (global_morph, global_surface_morph, [("out_file", "in_file"), ("meta", "meta")]),
        (thickness, regional_surface_morph, [("out_file", "thickness_map")]),
        (thickness, global_surface_morph, [("out_file", "thickness_map")]),
        (surfaces, ds_surface_thickness, [("thickness", "in_file")]),
        (conform, ds_surface_thickness, [("source_file", "source_file")]),
    ])
    for morph in (regional_surface_morph, global_surface_morph):
        workflow.connect(surfaces, "white", morph, "white")
        workflow.connect(surfaces, "pial", morph, "pial")
        workflow.connect(surfaces, "thickness", morph, "thickness")
    for kind, ds in ds_surfaces.items():
        ds.inputs.hemi = ["L", "R"]
        workflow.connect([(surfaces, ds, [(kind, "in_file"), ("surface_meta", "meta_dict")]),
                          (conform, ds, [("source_file", "source_file")])])
    ds_surface_thickness.inputs.hemi = ["L", "R"]
    return workflow
