"""Thin Nipype interfaces of diffusion preprocessing: load, call a numeric function, save.

Gradient files passed between nodes are FSL/BIDS ``.bval``/``.bvec`` files (FSL frame);
they are converted to the voxel frame on loading (:mod:`workflows.dwi.gradients`).
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
    isdefined,
    traits,
)
from scipy import ndimage

from brainscale.errors import InputDataError
from brainscale.resources import get_atlas, get_template, get_template_mask, save_resource
from workflows.dwi import gradients, motion, reference, registration, sdc
from workflows.dwi.denoise import DENOISE_METHODS, denoise_dwi, remove_gibbs_ringing
from workflows.dwi.tensor import TENSOR_PARAMS, TENSOR_UNITS, fit_tensor
from workflows.interface_utils import out_path, save_image


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
        data = np.asarray(img.dataobj, dtype=np.float32)
        head = ndimage.binary_dilation(
            reference.brain_mask(reference.mean_b0(data, bvals)), iterations=4
        )
        data, _ = denoise_dwi(
            data, bvals, method=self.inputs.method, mask=head, n_threads=self.inputs.n_jobs
        )
        if self.inputs.gibbs:
            data = remove_gibbs_ringing(
                data, slice_axis=self.inputs.slice_axis, n_jobs=self.inputs.n_jobs
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


def _find_reversed_pair(metadata: list[dict]) -> tuple[int, int, int] | None:
    """Find a (+PE, -PE) pair of series on one axis: (plus, minus, axis), or None."""
    parsed = []
    for meta in metadata:
        try:
            parsed.append(sdc.parse_phase_encoding(meta.get("PhaseEncodingDirection", "")))
        except ValueError:
            parsed.append(None)
    for i, pe_i in enumerate(parsed):
        for j, pe_j in enumerate(parsed):
            if pe_i and pe_j and pe_i[0] == pe_j[0] and pe_i[1] == 1 and pe_j[1] == -1:
                return i, j, pe_i[0]
    return None


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
        metadata = list(self.inputs.metadata)
        names = (
            list(self.inputs.series_names)
            if isdefined(self.inputs.series_names)
            else [os.path.basename(f) for f in self.inputs.in_files]
        )
        pair = _find_reversed_pair(metadata)
        arrays = [np.asarray(img.dataobj, dtype=np.float32) for img, _, _ in series]
        affine = series[0][0].affine
        if pair is None:
            meta = {
                "SusceptibilityDistortionCorrection": "none: no reversed phase-encoding pair "
                "of DWI series (skipped)"
            }
        else:
            plus, minus, axis = pair
            b0_plus = reference.mean_b0(arrays[plus], series[plus][1])
            b0_minus = reference.mean_b0(arrays[minus], series[minus][1])
            disp = sdc.estimate_pe_displacement(b0_plus, b0_minus, axis)
            readout = [float(m.get("TotalReadoutTime", 0.0) or 0.0) for m in metadata]
            ref_time = readout[plus] or 1.0
            for k, meta_k in enumerate(metadata):
                try:
                    axis_k, sign_k = sdc.parse_phase_encoding(
                        meta_k.get("PhaseEncodingDirection", "")
                    )
                except ValueError:
                    continue
                if axis_k == axis:
                    scale = (readout[k] / ref_time) if readout[k] and readout[plus] else 1.0
                    arrays[k] = sdc.unwarp(arrays[k], disp * scale, axis, sign_k)
            field = sdc.displacement_to_fieldmap(disp, ref_time)
            self._results["fieldmap_file"] = save_image(
                field, affine, out_path(runtime, "fieldmap_hz.nii.gz")
            )
            meta = {
                "SusceptibilityDistortionCorrection": (
                    "reversed phase-encoding pair: symmetric 1D demons registration of the mean "
                    "b=0 images along the phase-encoding axis, Jacobian-modulated unwarping"
                ),
                "PhaseEncodingPair": [names[plus], names[minus]],
                "MaxDisplacementVoxels": float(np.abs(disp).max()),
            }
        data = np.concatenate(arrays, axis=-1)
        bvals = np.concatenate([b for _, b, _ in series])
        bvecs = np.concatenate([v for _, _, v in series])
        self._results["out_file"] = save_image(
            data, affine, out_path(runtime, "dwi_combined.nii.gz")
        )
        bval, bvec = _save_gradients(bvals, bvecs, affine, out_path(runtime, "dwi_combined"))
        self._results["out_bval"], self._results["out_bvec"] = bval, bvec
        self._results["sdc_meta"] = meta
        return runtime


class _MotionInputSpec(SeriesInputSpec):
    target = traits.Enum("mean", "prediction", usedefault=True, desc="target of DW volumes")
    dw_transform = traits.Enum("Affine", "Rigid", usedefault=True, desc="DW volume transform")
    seed = traits.Int(0, usedefault=True, desc="random seed")
    n_jobs = traits.Int(1, usedefault=True, desc="volumes registered in parallel")


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
        data = np.asarray(img.dataobj, dtype=np.float32)
        b0 = reference.mean_b0(data, bvals)
        mask = reference.brain_mask(b0)
        bias = reference.b1_bias_field(b0, mask, voxel_size(img))
        data /= bias[..., None]
        self._results["out_file"] = save_image(
            data, img.affine, out_path(runtime, "dwi_preproc.nii.gz")
        )
        self._results["b0_file"] = save_image(
            b0 / bias, img.affine, out_path(runtime, "b0ref.nii.gz")
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
        prefix = out_path(runtime, "dwi2ref_")
        if isdefined(inp.t1w_preproc):
            rigid = registration.register_dwi_to_anat(
                inp.b0_file,
                inp.t1w_preproc,
                prefix,
                inp.t1w_mask if isdefined(inp.t1w_mask) else None,
                seed=inp.seed,
            )
            atlas_chain, atlas_invert = [inp.std2anat_xfm, rigid], [False, True]
            tpms = (
                [
                    registration.resample_to_dwi(f, inp.b0_file, [rigid], [True], labels=False)
                    for f in inp.t1w_tpms
                ]
                if isdefined(inp.t1w_tpms)
                else []
            )
            self._results["transforms"] = [rigid]
            self._results["dwi2anat_xfm"] = rigid
            meta = {
                "Description": "bias-corrected mean b=0",
                "AtlasRegistration": "template -> T1w (anatomical workflow) -> DWI (rigid, "
                "mutual information, ANTs)",
            }
        else:
            _, inverse = registration.register_dwi_to_template(
                inp.b0_file, inp.mask_file, inp.template_file, inp.template_mask, prefix,
                seed=inp.seed,
            )
            atlas_chain, atlas_invert = inverse, [True, False]
            tpms = []
            self._results["transforms"] = inverse
            meta = {
                "Description": "bias-corrected mean b=0",
                "AtlasRegistration": "no T1w: mean b=0 registered directly to the template "
                "(affine + SyN, mutual information, ANTs); tracking stops on FA",
            }
        atlas_files = []
        for name, path in zip(inp.atlas_names, inp.atlas_files, strict=True):
            img = registration.resample_to_dwi(
                path, inp.b0_file, atlas_chain, atlas_invert, labels=True
            )
            atlas_files.append(
                save_image(
                    img.get_fdata(),
                    img.affine,
                    out_path(runtime, f"atlas-{name}_dwi.nii.gz"),
                    np.int32,
                )
            )
        tpm_files = []
        for label, img in zip(("GM", "WM", "CSF"), tpms, strict=False):
            tpm_files.append(
                save_image(img.get_fdata(), img.affine, out_path(runtime, f"{label}_dwi.nii.gz"))
            )
        self._results.update(atlas_dwi=atlas_files, tpms_dwi=tpm_files, registration_meta=meta)
        return runtime
