"""The diffusion workflow: preprocessing, tensor maps, tractography and connectomes.

The methods boilerplate of this workflow, with citations, is in
:mod:`brainscale.workflows.dwi.methods`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.derivatives_sink import DerivativesDataSink
from brainscale.workflows.dwi import methods
from brainscale.workflows.dwi.interfaces import (
    CorrectDistortionAndCombine,
    CorrectMotion,
    DenoiseDWI,
    DWIReference,
    FitTensorMaps,
    RegisterDWI,
    TemplateAtlasResources,
)
from brainscale.workflows.dwi.rigid_eddy import CONFOUNDS_SIDECAR, common_pe_axis
from brainscale.workflows.dwi.tractography_interfaces import (
    BuildConnectomes,
    DWIReportFigures,
    Tractography,
)
from brainscale.workflows.qc_interfaces import DwiIQMs

INPUT_FIELDS = ["t1w_preproc", "t1w_mask", "t1w_dseg", "t1w_tpms", "anat2std_xfm", "std2anat_xfm"]
OUTPUT_FIELDS = [
    "dwi_preproc", "bval", "bvec", "dwi_mask", "dwi_ref", "fa", "tensor_maps",
    "tractograms", "relmats", "motion_file", "figures",
]


def _pick_probabilistic(trx_files):
    """Select the probabilistic tractogram (second of deterministic, probabilistic)."""
    return trx_files[-1]


def _first(items):
    """First item of a list."""
    return items[0]


def init_dwi_wf(
    *,
    dwi_files: list[str],
    bval_files: list[str],
    bvec_files: list[str],
    metadata: list[dict],
    has_anat: bool,
    output_dir: str,
    atlases: list[str],
    omp_nthreads: int = 1,
    seed: int = 0,
    denoise_method: str = "mppca",
    hmc_target: str = "mean",
    seed_density: int = 1,
    step_size: float = 1.0,
    template_resolution: int = 2,
    name: str = "dwi_wf",
) -> pe.Workflow:
    """Build the workflow from raw DWI series of one session to connectomes.

    Parameters
    ----------
    dwi_files, bval_files, bvec_files : list of str
        Raw series of one session and their gradient files (same order).
    metadata : list of dict
        BIDS sidecar of each series (``PhaseEncodingDirection``, ``TotalReadoutTime``).
    has_anat : bool
        Whether the anatomical inputs (``inputnode``) will be connected.
    output_dir : str
        Derivatives folder.
    atlases : list of str
        Atlas names for connectomes.
    omp_nthreads : int
        Threads per node (ANTs and dipy).
    seed : int
        Random seed (registrations, probabilistic tracking).
    denoise_method : {"mppca", "patch2self", "none"}
        Thermal-noise removal.
    hmc_target : {"mean", "prediction"}
        Target of diffusion-weighted volumes in motion correction.
    seed_density : int
        Tracking seeds per voxel along each axis.
    step_size : float
        Tracking step (mm).
    template_resolution : int
        Template resolution (mm) for direct registration without a T1w.
    name : str
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        The workflow; inputs ``inputnode.{t1w_preproc, t1w_mask, t1w_dseg, t1w_tpms,
        anat2std_xfm, std2anat_xfm}`` (when ``has_anat``), outputs on ``outputnode``.
    """
    n_series = len(dwi_files)
    if not n_series or {len(bval_files), len(bvec_files), len(metadata)} != {n_series}:
        raise ValueError("dwi_files, bval_files, bvec_files and metadata must have equal length")
    # outputs of combined series keep the entities they share and list every raw series
    source_file = [str(f) for f in dwi_files]
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = methods.describe()  # methods text, collected from the built graph
    inputnode = pe.Node(IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    threads = {"num_threads": omp_nthreads}
    workflow.add_nodes([inputnode])  # a public face even when no anatomy is connected

    denoise = pe.MapNode(DenoiseDWI(method=denoise_method, n_jobs=omp_nthreads),
                         name="denoise", iterfield=["in_file", "bval_file", "bvec_file"],
                         n_procs=omp_nthreads)
    denoise.inputs.in_file = list(dwi_files)
    denoise.inputs.bval_file = list(bval_files)
    denoise.inputs.bvec_file = list(bvec_files)
    sdc = pe.Node(CorrectDistortionAndCombine(
        metadata=list(metadata), series_names=[Path(f).name for f in dwi_files]), name="sdc")
    pe_axis = common_pe_axis(metadata)
    hmc = pe.Node(CorrectMotion(target=hmc_target, seed=seed, n_jobs=omp_nthreads,
                                pe_axis=-1 if pe_axis is None else pe_axis), name="hmc",
                  n_procs=omp_nthreads)
    dwi_reference = pe.Node(DWIReference(), name="dwi_reference", n_procs=omp_nthreads)
    tensor = pe.Node(FitTensorMaps(), name="tensor")
    resources = pe.Node(TemplateAtlasResources(atlas_names=list(atlases),
                                               template_resolution=template_resolution),
                        name="resources")
    register = pe.Node(RegisterDWI(atlas_names=list(atlases), seed=seed), name="register",
                       **threads)
    tractography = pe.Node(Tractography(seed=seed, seed_density=seed_density,
                                        step_size=step_size, n_jobs=omp_nthreads),
                           name="tractography", n_procs=omp_nthreads)
    report_figures = pe.Node(DWIReportFigures(), name="report_figures")
    if not has_anat:
        report_figures.inputs.note = (
            "No T1w: the diffusion data were registered directly to the template and "
            "tracking stopped on FA.")

    # fmt: off
    workflow.connect([
        (denoise, sdc, [("out_file", "in_files"), ("out_bval", "bval_files"),
                        ("out_bvec", "bvec_files")]),
        (sdc, hmc, [("out_file", "in_file"), ("out_bval", "bval_file"), ("out_bvec", "bvec_file"),
                    ("pe_signs", "pe_signs")]),
        (hmc, dwi_reference, [("out_file", "in_file"), ("out_bval", "bval_file"),
                              ("out_bvec", "bvec_file")]),
        (dwi_reference, tensor, [("out_file", "in_file"), ("mask_file", "mask_file")]),
        (hmc, tensor, [("out_bval", "bval_file"), ("out_bvec", "bvec_file")]),
        (dwi_reference, register, [("b0_file", "b0_file"), ("mask_file", "mask_file")]),
        (resources, register, [("atlas_files", "atlas_files")]),
        (dwi_reference, tractography, [("out_file", "in_file"), ("mask_file", "mask_file")]),
        (hmc, tractography, [("out_bval", "bval_file"), ("out_bvec", "bvec_file")]),
        (tensor, tractography, [("fa_file", "fa_file")]),
        (tensor, report_figures, [("fa_file", "fa_file"), ("colorfa_file", "colorfa_file")]),
        (dwi_reference, report_figures, [("mask_file", "mask_file")]),
        (hmc, report_figures, [("motion_file", "motion_file")]),
        (tractography, report_figures, [(("trx_files", _pick_probabilistic), "trx_file")]),
        (dwi_reference, outputnode, [("out_file", "dwi_preproc"), ("mask_file", "dwi_mask"),
                                     ("b0_file", "dwi_ref")]),
        (hmc, outputnode, [("out_bval", "bval"), ("out_bvec", "bvec"),
                           ("motion_file", "motion_file")]),
        (tensor, outputnode, [("fa_file", "fa"), ("map_files", "tensor_maps")]),
        (tractography, outputnode, [("trx_files", "tractograms")]),
        (report_figures, outputnode, [("figure_files", "figures")]),
    ])
    if has_anat:
        ds_dwi2anat_xfm = pe.Node(
            DerivativesDataSink(base_directory=str(output_dir), source_file=source_file,
                                datatype="dwi", suffix="xfm", extension=".mat", from_="dwi",
                                to="T1w", mode="image",
                                meta_dict={"Description": "ANTs rigid transform; with fixed=T1w "
                                           "it maps T1w points to diffusion points"}),
            name="ds_dwi2anat_xfm")
        workflow.connect([
            (inputnode, register, [("t1w_preproc", "t1w_preproc"), ("t1w_mask", "t1w_mask"),
                                   ("t1w_tpms", "t1w_tpms"), ("std2anat_xfm", "std2anat_xfm")]),
            (register, tractography, [("tpms_dwi", "tpms_dwi")]),
            (register, ds_dwi2anat_xfm, [("dwi2anat_xfm", "in_file")]),
        ])
    else:
        workflow.connect([
            (resources, register, [("template_file", "template_file"),
                                   ("template_mask", "template_mask")]),
        ])
    # fmt: on
    if atlases:
        connectomes = pe.Node(BuildConnectomes(atlas_names=list(atlases)), name="connectomes")
        ds_relmat = pe.MapNode(
            DerivativesDataSink(base_directory=str(output_dir), source_file=source_file,
                                datatype="dwi", suffix="relmat", extension=".tsv"),
            iterfield=["in_file", "atlas", "meas", "meta_dict"], name="ds_relmat")
        # fmt: off
        workflow.connect([
            (tractography, connectomes, [(("trx_files", _pick_probabilistic), "trx_file")]),
            (tensor, connectomes, [("fa_file", "fa_file")]),
            (register, connectomes, [("atlas_dwi", "atlas_dwi")]),
            (resources, connectomes, [("region_tables", "region_tables")]),
            (connectomes, ds_relmat, [("relmat_files", "in_file"), ("relmat_atlases", "atlas"),
                                      ("relmat_meas", "meas"), ("relmat_meta", "meta_dict")]),
            (connectomes, report_figures, [(("relmat_files", _first), "relmat_file")]),
            (connectomes, outputnode, [("relmat_files", "relmats")]),
        ])
        # fmt: on
    dwi_iqms = pe.Node(DwiIQMs(source_file=source_file, raw_files=list(dwi_files),
                               raw_bval_files=list(bval_files), raw_bvec_files=list(bvec_files)),
                       name="dwi_iqms", mem_gb=2)  # dropouts: on each raw series
    ds_dwi_iqms = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                              source_file=source_file, datatype="dwi",
                                              suffix="dwi", desc="iqms", extension=".json"),
                          name="ds_dwi_iqms")
    workflow.connect([  # image quality metrics and dropouts, brainscale.workflows.dwi.iqms
        (hmc, dwi_iqms, [("out_bval", "bval_file"), ("out_bvec", "bvec_file"),
                         ("motion_file", "motion_file")]),
        (dwi_reference, dwi_iqms, [("out_file", "in_file"), ("mask_file", "mask_file")]),
        (tensor, dwi_iqms, [("map_files", "map_files")]),
        (dwi_iqms, ds_dwi_iqms, [("out_file", "in_file")]),
    ])
    if has_anat:
        workflow.connect(register, "tpms_dwi", dwi_iqms, "tpm_files")
    _connect_writers(workflow, output_dir=str(output_dir), source_file=source_file,
                     denoise_method=denoise_method,
                     nodes={"sdc": sdc, "hmc": hmc, "dwi_reference": dwi_reference,
                            "tensor": tensor, "tractography": tractography,
                            "register": register, "report_figures": report_figures})
    return workflow


DENOISING = {"mppca": "MP-PCA (dipy's estimator, vectorized)",
             "patch2self": "Patch2Self (dipy)", "none": "none"}
"""Sidecar description of each ``denoise_method``."""


def _preproc_sidecar(sdc_meta, denoising):
    """Sidecar of the preprocessed series: the steps run plus the distortion-correction note."""
    meta = {"SkullStripped": False, "Denoising": denoising,
            "GibbsRingingRemoval": True, "MotionCorrection": "ANTs, per volume, b-vectors rotated",
            "B1BiasCorrection": "N4 on the mean b=0"}
    meta.update(sdc_meta)
    return meta


def _connect_writers(workflow: pe.Workflow, *, output_dir: str, source_file: list[str],
                     denoise_method: str, nodes: dict[str, pe.Node]) -> None:
    """Add the ``ds_*`` derivative writers of the diffusion workflow."""
    preproc_meta = pe.Node(Function(input_names=["sdc_meta", "denoising"],
                                    output_names=["meta"], function=_preproc_sidecar),
                           name="preproc_meta")
    preproc_meta.inputs.denoising = DENOISING[denoise_method]
    common = {"base_directory": output_dir, "source_file": source_file}
    ds_dwi = pe.Node(DerivativesDataSink(**common, datatype="dwi", suffix="dwi", desc="preproc"),
                     name="ds_dwi")
    ds_bval = pe.Node(DerivativesDataSink(**common, datatype="dwi", suffix="dwi", desc="preproc",
                                          extension=".bval"), name="ds_bval")
    ds_bvec = pe.Node(DerivativesDataSink(**common, datatype="dwi", suffix="dwi", desc="preproc",
                                          extension=".bvec"), name="ds_bvec")
    ds_dwiref = pe.Node(DerivativesDataSink(**common, datatype="dwi", suffix="dwiref"),
                        name="ds_dwiref")
    ds_mask = pe.Node(DerivativesDataSink(**common, datatype="dwi", suffix="mask", desc="brain",
                                          meta_dict={"Type": "Brain"}), name="ds_mask")
    ds_confounds = pe.Node(DerivativesDataSink(
        **common, datatype="dwi", suffix="timeseries", desc="confounds", extension=".tsv",
        meta_dict=CONFOUNDS_SIDECAR),
        name="ds_confounds")
    ds_tensor = pe.MapNode(DerivativesDataSink(**common, datatype="dwi", suffix="dwimap",
                                               model="tensor"),
                           iterfield=["in_file", "param", "meta_dict"], name="ds_tensor")
    ds_tractography = pe.MapNode(DerivativesDataSink(**common, datatype="dwi",
                                                     suffix="tractography", extension=".trx"),
                                 iterfield=["in_file", "desc", "meta_dict"], name="ds_tractography")
    ds_figures = pe.MapNode(DerivativesDataSink(**common, datatype="figures", suffix="dwi",
                                                extension=".png"),
                            iterfield=["in_file", "desc", "meta_dict"], name="ds_figures")
    # fmt: off
    workflow.connect([
        (nodes["dwi_reference"], ds_dwi, [("out_file", "in_file")]),
        (nodes["sdc"], preproc_meta, [("sdc_meta", "sdc_meta")]),
        (preproc_meta, ds_dwi, [("meta", "meta_dict")]),
        (nodes["hmc"], ds_bval, [("out_bval", "in_file")]),
        (nodes["hmc"], ds_bvec, [("out_bvec", "in_file")]),
        (nodes["hmc"], ds_confounds, [("motion_file", "in_file")]),
        (nodes["dwi_reference"], ds_dwiref, [("b0_file", "in_file")]),
        (nodes["register"], ds_dwiref, [("registration_meta", "meta_dict")]),
        (nodes["dwi_reference"], ds_mask, [("mask_file", "in_file")]),
        (nodes["tensor"], ds_tensor, [("map_files", "in_file"), ("map_params", "param"),
                                      ("map_meta", "meta_dict")]),
        (nodes["tractography"], ds_tractography, [("trx_files", "in_file"),
                                                  ("trx_descs", "desc"),
                                                  ("trx_meta", "meta_dict")]),
        (nodes["report_figures"], ds_figures, [("figure_files", "in_file"),
                                               ("figure_descs", "desc"),
                                               ("figure_meta", "meta_dict")]),
    ])
    # fmt: on
