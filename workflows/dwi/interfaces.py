"""Thin Nipype interfaces of diffusion preprocessing: load, call a numeric function, save.

Gradient files passed between nodes are FSL/BIDS ``.bval``/``.bvec`` files (FSL frame);
they are converted to the voxel frame on loading (:mod:`brainscale.workflows.dwi.gradients`).
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from brainscale.errors import InputDataError
from brainscale.resources import get_atlas, get_template, get_template_mask, save_resource
from brainscale.workflows.dwi import gradients, motion, reference, registration, rigid_eddy, sdc
from brainscale.workflows.dwi.denoise import DENOISE_METHODS, denoise_series
from brainscale.workflows.dwi.tensor import TENSOR_PARAMS, TENSOR_UNITS, fit_tensor
from brainscale.workflows.interface_utils import defined_or_none, out_path, save_image


def load_series(dwi_file: str, bval_file: str, bvec_file: str):
    """Load a series and its checked gradients (voxel-frame b-vectors)."""
    img = nib.load(dwi_file)
    if img.ndim != 4:
        raise InputDataError(f"{dwi_file}: a DWI series must be 4D, found shape {img.shape}")
    bvals, bvecs = gradients.read_bval_bvec(bval_file, bvec_file, img.shape[3], dwi_file)
    return img, bvals, gradients.fsl_to_voxel_bvecs(bvecs, img.affine)


def _save_gradients(bvals, bvecs, affine, prefix: str) -> tuple[str, str]:
    """Write voxel-frame gradients as FSL ``.bval``/``.bvec`` files."""
    np.savetxt(prefix + ".bval", np.atleast_2d(bvals), fmt="%g")
    np.savetxt(prefix + ".bvec", gradients.voxel_to_fsl_bvecs(bvecs, affine).T, fmt="%.6f")
    return prefix + ".bval", prefix + ".bvec"


def voxel_size(img) -> tuple[float, float, float]:
    """Voxel size (mm) of an image."""
    return tuple(float(z) for z in img.header.get_zooms()[:3])


class _ResourcesInputSpec(BaseInterfaceInputSpec):
    atlas_names = traits.List(traits.Str, mandatory=True, desc="atlas names")
    template_resolution = traits.Enum(2, 1, usedefault=True, desc="template resolution (mm)")


class _ResourcesOutputSpec(TraitedSpec):
    atlas_files = OutputMultiObject(File(exists=True), desc="atlas label images (template)")
    region_tables = OutputMultiObject(File(exists=True), desc="region TSV (index, name)")
    template_file = File(exists=True, desc="template T1w")
    template_mask = File(exists=True, desc="template brain mask")


class TemplateAtlasResources(SimpleInterface):
    """Write the embedded template, its mask, the atlases and their region tables."""

    input_spec = _ResourcesInputSpec
    output_spec = _ResourcesOutputSpec

    def _run_interface(self, runtime):
        res = self.inputs.template_resolution
        atlas_files, tables = [], []
        for name in self.inputs.atlas_names:
            atlas = get_atlas(name)
            atlas_files.append(
                str(save_resource(atlas.load(), out_path(runtime, f"{name}.nii.gz")))
            )
            tables.append(out_path(runtime, f"{name}_regions.tsv"))
            atlas.labels[["index", "name"]].to_csv(tables[-1], sep="\t", index=False)
        self._results.update(
            atlas_files=atlas_files,
            region_tables=tables,
            template_file=str(
                save_resource(get_template(res), out_path(runtime, "template.nii.gz"))
            ),
            template_mask=str(
                save_resource(get_template_mask(res), out_path(runtime, "tpl_mask.nii.gz"))
            ),
        )
        return runtime


class SeriesInputSpec(BaseInterfaceInputSpec):
    """Inputs shared by interfaces reading one series and its gradients."""

    in_file = File(exists=True, mandatory=True, desc="4D diffusion series")
    bval_file = File(exists=True, mandatory=True, desc=".bval file")
    bvec_file = File(exists=True, mandatory=True, desc=".bvec file")


class _SeriesOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="processed series")
    out_bval = File(exists=True, desc=".bval file")
    out_bvec = File(exists=True, desc=".bvec file")


class _DenoiseInputSpec(SeriesInputSpec):
    method = traits.Enum(*DENOISE_METHODS, usedefault=True, desc="denoising method")
    gibbs = traits.Bool(True, usedefault=True, desc="remove Gibbs ringing")
    slice_axis = traits.Int(2, usedefault=True, desc="acquisition slice axis")
    n_jobs = traits.Int(1, usedefault=True, desc="MP-PCA threads and Gibbs processes")


class DenoiseDWI(SimpleInterface):
    """Check gradients, denoise (MP-PCA / Patch2Self) and remove Gibbs ringing of one series."""

    input_spec = _DenoiseInputSpec
    output_spec = _SeriesOutputSpec

    def _run_interface(self, runtime):
        img, bvals, bvecs = load_series(
            self.inputs.in_file, self.inputs.bval_file, self.inputs.bvec_file
        )
        data = denoise_series(
            np.asarray(img.dataobj, dtype=np.float32),
            bvals,
            method=self.inputs.method,
            gibbs=self.inputs.gibbs,
            slice_axis=self.inputs.slice_axis,
            n_jobs=self.inputs.n_jobs,
        )
        self._results["out_file"] = save_image(
            data, img.affine, out_path(runtime, "dwi_denoised.nii.gz")
        )
        bval, bvec = _save_gradients(bvals, bvecs, img.affine, out_path(runtime, "dwi_denoised"))
        self._results["out_bval"], self._results["out_bvec"] = bval, bvec
        return runtime


class _DistortionInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="series")
    bval_files = InputMultiObject(File(exists=True), mandatory=True, desc=".bval files")
    bvec_files = InputMultiObject(File(exists=True), mandatory=True, desc=".bvec files")
    metadata = traits.List(traits.Dict, mandatory=True, desc="BIDS sidecar of each series")
    series_names = traits.List(traits.Str, desc="raw file name of each series (sidecar)")


class _DistortionOutputSpec(_SeriesOutputSpec):
    fieldmap_file = File(desc="estimated off-resonance field (Hz), when corrected")
    sdc_meta = traits.Dict(desc="what was done, for the sidecar")
    pe_signs = traits.List(traits.Int, desc="PE polarity of every combined volume")


class CorrectDistortionAndCombine(SimpleInterface):
    """Estimate distortions from reversed-PE series when present, unwarp, concatenate."""

    input_spec = _DistortionInputSpec
    output_spec = _DistortionOutputSpec

    def _run_interface(self, runtime):
        series = [
            load_series(f, b, v)
            for f, b, v in zip(
                self.inputs.in_files, self.inputs.bval_files, self.inputs.bvec_files, strict=True
            )
        ]
        shapes = {img.shape[:3] for img, _, _ in series}
        if len(shapes) > 1:
            names = ", ".join(os.path.basename(f) for f in self.inputs.in_files)
            raise InputDataError(f"DWI series of one session differ in grid: {names}")
        names = defined_or_none(self.inputs.series_names, list)
        if names is None:
            names = [os.path.basename(f) for f in self.inputs.in_files]
        combined = sdc.correct_and_combine(
            [np.asarray(img.dataobj, dtype=np.float32) for img, _, _ in series],
            [b for _, b, _ in series],
            [v for _, _, v in series],
            list(self.inputs.metadata),
            names,
        )
        affine = series[0][0].affine
        if combined.fieldmap_hz is not None:
            self._results["fieldmap_file"] = save_image(
                combined.fieldmap_hz, affine, out_path(runtime, "fieldmap_hz.nii.gz")
            )
        self._results["out_file"] = save_image(
            combined.data, affine, out_path(runtime, "dwi_combined.nii.gz")
        )
        bval, bvec = _save_gradients(
            combined.bvals, combined.bvecs, affine, out_path(runtime, "dwi_combined")
        )
        self._results["out_bval"], self._results["out_bvec"] = bval, bvec
        self._results["sdc_meta"] = combined.meta
        self._results["pe_signs"] = rigid_eddy.pe_polarities(
            list(self.inputs.metadata), [img.shape[-1] if img.ndim == 4 else 1
                                         for img, _, _ in series])
        return runtime


class _MotionInputSpec(SeriesInputSpec):
    target = traits.Enum("mean", "prediction", usedefault=True, desc="target of DW volumes")
    dw_transform = traits.Enum("Affine", "Rigid", usedefault=True, desc="DW volume transform")
    seed = traits.Int(0, usedefault=True, desc="random seed")
    n_jobs = traits.Int(1, usedefault=True, desc="volumes registered in parallel")
    pe_axis = traits.Int(-1, usedefault=True,
                         desc="voxel axis of phase encoding (eddy currents); -1: inferred")
    pe_signs = traits.List(traits.Int, desc="PE polarity of every volume (default: all +1)")


class _MotionOutputSpec(_SeriesOutputSpec):
    motion_file = File(exists=True, desc="motion parameters and FD (TSV)")


class CorrectMotion(SimpleInterface):
    """Head-motion and eddy-current correction with b-vector rotation."""

    input_spec = _MotionInputSpec
    output_spec = _MotionOutputSpec

    def _run_interface(self, runtime):
        img, bvals, bvecs = load_series(
            self.inputs.in_file, self.inputs.bval_file, self.inputs.bvec_file
        )
        data, rotated, params = motion.correct_motion(
            np.asarray(img.dataobj, dtype=np.float32),
            bvals,
            bvecs,
            voxel_size(img),
            target=self.inputs.target,
            dw_transform=self.inputs.dw_transform,
            pe_axis=None if self.inputs.pe_axis < 0 else self.inputs.pe_axis,
            pe_sign=(np.asarray(self.inputs.pe_signs)
                     if defined_or_none(self.inputs.pe_signs) else None),
            seed=self.inputs.seed,
            n_jobs=self.inputs.n_jobs,
        )
        self._results["out_file"] = save_image(
            data, img.affine, out_path(runtime, "dwi_hmc.nii.gz")
        )
        bval, bvec = _save_gradients(bvals, rotated, img.affine, out_path(runtime, "dwi_hmc"))
        self._results["out_bval"], self._results["out_bvec"] = bval, bvec
        self._results["motion_file"] = out_path(runtime, "motion.tsv")
        params.to_csv(
            self._results["motion_file"], sep="\t", index=False, na_rep="n/a", float_format="%.8g"
        )
        return runtime


class _ReferenceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected series")
    b0_file = File(exists=True, desc="bias-corrected mean b=0")
    mask_file = File(exists=True, desc="brain mask")
    bias_file = File(exists=True, desc="multiplicative B1 bias field")


class DWIReference(SimpleInterface):
    """Brain mask, N4 bias field from the mean b=0, bias-corrected series and reference."""

    input_spec = SeriesInputSpec
    output_spec = _ReferenceOutputSpec

    def _run_interface(self, runtime):
        img, bvals, _ = load_series(
            self.inputs.in_file, self.inputs.bval_file, self.inputs.bvec_file
        )
        data, b0, mask, bias = reference.bias_corrected_series(
            np.asarray(img.dataobj, dtype=np.float32), bvals, voxel_size(img)
        )
        self._results["out_file"] = save_image(
            data, img.affine, out_path(runtime, "dwi_preproc.nii.gz")
        )
        self._results["b0_file"] = save_image(
            b0, img.affine, out_path(runtime, "b0ref.nii.gz")
        )
        self._results["mask_file"] = save_image(
            mask, img.affine, out_path(runtime, "mask.nii.gz"), np.uint8
        )
        self._results["bias_file"] = save_image(bias, img.affine, out_path(runtime, "bias.nii.gz"))
        return runtime


class _TensorInputSpec(SeriesInputSpec):
    mask_file = File(exists=True, mandatory=True, desc="brain mask")


class _TensorOutputSpec(TraitedSpec):
    fa_file = File(exists=True, desc="FA")
    colorfa_file = File(exists=True, desc="color FA (RGB, 4D)")
    map_files = OutputMultiObject(File(exists=True), desc="fa, md, ad, rd, colorfa maps")
    map_params = traits.List(traits.Str, desc="param- label of each map")
    map_meta = traits.List(traits.Dict, desc="sidecar of each map")


class FitTensorMaps(SimpleInterface):
    """Fit the diffusion tensor; write FA, MD, AD, RD and color FA."""

    input_spec = _TensorInputSpec
    output_spec = _TensorOutputSpec

    def _run_interface(self, runtime):
        img, bvals, bvecs = load_series(
            self.inputs.in_file, self.inputs.bval_file, self.inputs.bvec_file
        )
        mask = np.asanyarray(nib.load(self.inputs.mask_file).dataobj) > 0
        maps = fit_tensor(np.asarray(img.dataobj, dtype=np.float32), bvals, bvecs, mask)
        files, params, metas = [], [], []
        for param in (*TENSOR_PARAMS, "colorfa"):
            files.append(save_image(maps[param], img.affine, out_path(runtime, f"{param}.nii.gz")))
            params.append(param)
            metas.append(
                {
                    "Model": "tensor (dipy, weighted least squares)",
                    "Units": TENSOR_UNITS.get(param, "RGB in [0, 1]"),
                }
            )
        self._results.update(
            fa_file=files[0],
            colorfa_file=files[-1],
            map_files=files,
            map_params=params,
            map_meta=metas,
        )
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    b0_file = File(exists=True, mandatory=True, desc="diffusion reference")
    mask_file = File(exists=True, mandatory=True, desc="diffusion brain mask")
    atlas_names = traits.List(traits.Str, desc="atlas names")
    atlas_files = InputMultiObject(File(exists=True), desc="atlas images in template space")
    t1w_preproc = File(exists=True, desc="T1w (anatomy available)")
    t1w_mask = File(exists=True, desc="T1w brain mask")
    t1w_tpms = InputMultiObject(File(exists=True), desc="[GM, WM, CSF] in T1w space")
    std2anat_xfm = File(exists=True, desc="template-to-T1w transform")
    template_file = File(exists=True, desc="template T1w (no anatomy)")
    template_mask = File(exists=True, desc="template brain mask (no anatomy)")
    seed = traits.Int(0, usedefault=True, desc="random seed of the registrations' sampling")


class _RegisterOutputSpec(TraitedSpec):
    atlas_dwi = OutputMultiObject(File(exists=True), desc="atlases in diffusion space")
    tpms_dwi = OutputMultiObject(File(exists=True), desc="[GM, WM, CSF] in diffusion space")
    transforms = OutputMultiObject(File(exists=True), desc="ANTs transforms estimated")
    dwi2anat_xfm = File(exists=True, desc="rigid DWI-T1w transform (with a T1w)")
    registration_meta = traits.Dict(desc="how the atlases were brought in")


class RegisterDWI(SimpleInterface):
    """Bring atlases (and tissue maps) into diffusion space via the T1w or the template."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        inp = self.inputs
        has_t1w = defined_or_none(inp.t1w_preproc) is not None
        result = registration.register_atlases_to_dwi(
            inp.b0_file,
            inp.mask_file,
            list(inp.atlas_files),
            out_path(runtime, "dwi2ref_"),
            t1w_file=defined_or_none(inp.t1w_preproc),
            t1w_mask_file=defined_or_none(inp.t1w_mask) if has_t1w else None,
            t1w_tpm_files=(defined_or_none(inp.t1w_tpms, list) or []) if has_t1w else [],
            std2anat_xfm=defined_or_none(inp.std2anat_xfm),
            template_file=defined_or_none(inp.template_file),
            template_mask_file=defined_or_none(inp.template_mask),
            seed=inp.seed,
        )
        self._results["transforms"] = result.transforms
        if result.dwi2anat_xfm is not None:
            self._results["dwi2anat_xfm"] = result.dwi2anat_xfm
        atlas_files = [
            save_image(
                img.get_fdata(), img.affine, out_path(runtime, f"atlas-{name}_dwi.nii.gz"), np.int32
            )
            for name, img in zip(inp.atlas_names, result.atlases, strict=True)
        ]
        tpm_files = [
            save_image(img.get_fdata(), img.affine, out_path(runtime, f"{label}_dwi.nii.gz"))
            for label, img in zip(("GM", "WM", "CSF"), result.tpms, strict=False)
        ]
        self._results.update(
            atlas_dwi=atlas_files, tpms_dwi=tpm_files, registration_meta=result.meta
        )
        return runtime
