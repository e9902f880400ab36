"""Thin Nipype interfaces of tractography, connectomes and report figures."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from brainscale.workflows.dwi import connectome, figures
from brainscale.workflows.dwi.interfaces import SeriesInputSpec, load_series, out_path, voxel_size
from brainscale.workflows.dwi.tracking import load_trx, save_trx
from brainscale.workflows.dwi.tractography import reconstruct_tractograms


class _TractographyInputSpec(SeriesInputSpec):
    mask_file = File(exists=True, mandatory=True, desc="brain mask")
    fa_file = File(exists=True, mandatory=True, desc="FA map")
    tpms_dwi = InputMultiObject(File(exists=True), desc="[GM, WM, CSF] in diffusion space")
    seed_density = traits.Int(1, usedefault=True, desc="seeds per voxel along each axis")
    step_size = traits.Float(1.0, usedefault=True, desc="step (mm)")
    max_angle = traits.Float(30.0, usedefault=True, desc="largest turn (degrees)")
    fa_threshold = traits.Float(0.15, usedefault=True, desc="FA stopping threshold (no T1w)")
    seed = traits.Int(0, usedefault=True, desc="random seed")
    n_jobs = traits.Int(1, usedefault=True, desc="processes (ODF fit and tracking)")


class _TractographyOutputSpec(TraitedSpec):
    trx_files = OutputMultiObject(File(exists=True), desc="deterministic, probabilistic")
    trx_descs = traits.List(traits.Str, desc="desc- label of each tractogram")
    trx_meta = traits.List(traits.Dict, desc="sidecar of each tractogram")


class Tractography(SimpleInterface):
    """Fit CSD/CSA and track deterministic and probabilistic streamlines into TRX files."""

    input_spec = _TractographyInputSpec
    output_spec = _TractographyOutputSpec

    def _run_interface(self, runtime):
        inp = self.inputs
        img, bvals, bvecs = load_series(inp.in_file, inp.bval_file, inp.bvec_file)
        fa_img = nib.load(inp.fa_file)
        tpms = (
            [nib.load(f).get_fdata(dtype=np.float32) for f in inp.tpms_dwi]
            if isdefined(inp.tpms_dwi) and len(inp.tpms_dwi) == 3
            else None
        )
        tractograms = reconstruct_tractograms(
            np.asarray(img.dataobj, dtype=np.float32),
            bvals,
            bvecs,
            np.asanyarray(nib.load(inp.mask_file).dataobj) > 0,
            fa_img.get_fdata(dtype=np.float32),
            img.affine,
            float(np.mean(voxel_size(img))),
            tpms,
            seed_density=inp.seed_density,
            step_size=inp.step_size,
            max_angle=inp.max_angle,
            fa_threshold=inp.fa_threshold,
            seed=inp.seed,
            n_jobs=inp.n_jobs,
        )
        self._results.update(
            trx_files=[
                str(save_trx(t.streamlines, fa_img, out_path(runtime, f"{t.desc}.trx")))
                for t in tractograms
            ],
            trx_descs=[t.desc for t in tractograms],
            trx_meta=[t.meta for t in tractograms],
        )
        return runtime


class _ConnectomeInputSpec(BaseInterfaceInputSpec):
    trx_file = File(exists=True, mandatory=True, desc="tractogram")
    fa_file = File(exists=True, mandatory=True, desc="FA map (diffusion grid)")
    atlas_names = traits.List(traits.Str, mandatory=True, desc="atlas names")
    atlas_dwi = InputMultiObject(File(exists=True), mandatory=True, desc="atlases in DWI space")
    region_tables = InputMultiObject(File(exists=True), mandatory=True, desc="label TSV per atlas")


class _ConnectomeOutputSpec(TraitedSpec):
    relmat_files = OutputMultiObject(File(exists=True), desc="relmat TSV files")
    relmat_atlases = traits.List(traits.Str, desc="atlas of each file")
    relmat_meas = traits.List(traits.Str, desc="measure of each file")
    relmat_meta = traits.List(traits.Dict, desc="sidecar of each file")


class BuildConnectomes(SimpleInterface):
    """Count, normalized count, mean length and mean FA matrices for every atlas."""

    input_spec = _ConnectomeInputSpec
    output_spec = _ConnectomeOutputSpec

    def _run_interface(self, runtime):
        inp = self.inputs
        streamlines = load_trx(inp.trx_file)
        fa_img = nib.load(inp.fa_file)
        voxel_volume = float(np.prod(voxel_size(fa_img)))
        files, atlases, measures, metas = [], [], [], []
        for name, atlas_file, table in zip(
            inp.atlas_names, inp.atlas_dwi, inp.region_tables, strict=True
        ):
            regions = pd.read_csv(table, sep="\t")
            labels = np.asanyarray(nib.load(atlas_file).dataobj).astype(np.int64)
            mats = connectome.build_connectome(
                streamlines,
                labels,
                fa_img.affine,
                regions,
                fa_img.get_fdata(dtype=np.float32),
                voxel_volume,
            )
            for meas, frame in mats.items():
                path = out_path(runtime, f"atlas-{name}_meas-{meas}_relmat.tsv")
                frame.to_csv(path, sep="\t", index=False, float_format="%.8g")
                files.append(path)
                atlases.append(name)
                measures.append(meas)
                metas.append(
                    {
                        "Measure": meas,
                        "Description": connectome.CONNECTOME_MEASURES[meas],
                        "Tractogram": os.path.basename(inp.trx_file),
                        "SelfConnections": "excluded (zero diagonal)",
                    }
                )
        self._results.update(
            relmat_files=files, relmat_atlases=atlases, relmat_meas=measures, relmat_meta=metas
        )
        return runtime


class _FiguresInputSpec(BaseInterfaceInputSpec):
    fa_file = File(exists=True, mandatory=True, desc="FA")
    mask_file = File(exists=True, mandatory=True, desc="brain mask")
    colorfa_file = File(exists=True, mandatory=True, desc="color FA")
    motion_file = File(exists=True, mandatory=True, desc="motion TSV")
    trx_file = File(exists=True, mandatory=True, desc="tractogram to show")
    relmat_file = File(exists=True, desc="a count relmat to show")
    note = traits.Str(desc="sentence appended to every caption")


class _FiguresOutputSpec(TraitedSpec):
    figure_files = OutputMultiObject(File(exists=True), desc="figures")
    figure_descs = traits.List(traits.Str, desc="desc- of each figure")
    figure_meta = traits.List(traits.Dict, desc="caption of each figure")


class DWIReportFigures(SimpleInterface):
    """FA + mask, color FA, streamlines, motion and connectome figures."""

    input_spec = _FiguresInputSpec
    output_spec = _FiguresOutputSpec

    def _run_interface(self, runtime):
        inp = self.inputs
        fa = nib.load(inp.fa_file).get_fdata(dtype=np.float32)
        mask = np.asanyarray(nib.load(inp.mask_file).dataobj) > 0
        made = [
            (
                "fa",
                figures.plot_fa_with_mask(fa, mask, out_path(runtime, "fa.png")),
                "Fractional anisotropy with the diffusion brain mask.",
            ),
            (
                "colorfa",
                figures.plot_color_fa(
                    nib.load(inp.colorfa_file).get_fdata(), out_path(runtime, "colorfa.png")
                ),
                "Direction-encoded color FA.",
            ),
            (
                "streamlines",
                figures.plot_streamlines(
                    load_trx(inp.trx_file), out_path(runtime, "streamlines.png")
                ),
                "A random subsample of the streamlines (glass-brain projections).",
            ),
            (
                "motion",
                figures.plot_motion(
                    pd.read_csv(inp.motion_file, sep="\t"), out_path(runtime, "motion.png")
                ),
                "Head motion and framewise displacement of the DWI volumes.",
            ),
        ]
        if isdefined(inp.relmat_file):
            title = os.path.basename(inp.relmat_file).replace(".tsv", "")
            made.append(
                (
                    "connectome",
                    figures.plot_connectome(
                        pd.read_csv(inp.relmat_file, sep="\t"),
                        out_path(runtime, "connectome.png"),
                        title=title,
                    ),
                    "Structural connectome (streamline count, log scale).",
                )
            )
        self._results["figure_descs"] = [m[0] for m in made]
        self._results["figure_files"] = [m[1] for m in made]
        note = f" {inp.note}" if isdefined(inp.note) else ""
        self._results["figure_meta"] = [{"Caption": m[2] + note} for m in made]
        return runtime
