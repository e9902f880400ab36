"""Thin Nipype interfaces of the anatomical workflow: load, call a numeric function, save."""

from __future__ import annotations

import functools
import json
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

from brainscale.workflows.anat.images import TemplateImages
from brainscale.workflows.interface_utils import out_path


@functools.lru_cache(maxsize=2)
def embedded_template(resolution: int) -> TemplateImages:
    """Return the embedded MNI152 2009a template and priors (from brainscale.resources)."""
    from brainscale.resources import get_template, get_template_mask, get_template_probseg

    return TemplateImages(t1w=get_template(resolution),
                          gm=get_template_probseg("GM", resolution),
                          wm=get_template_probseg("WM", resolution),
                          csf=get_template_probseg("CSF", resolution),
                          mask=get_template_mask(resolution))


def _sidecar(image_file: str) -> dict | None:
    """Return the JSON sidecar beside a NIfTI file, or None when absent or unreadable."""
    stem = image_file[:-7] if image_file.endswith(".nii.gz") else os.path.splitext(image_file)[0]
    try:
        with open(f"{stem}.json", encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


SEGMENTATION_CAPTION = ("Brain mask (red), GM/CSF (green) and WM/GM (blue) boundaries over "
                        "the T1w.")


class _ConformInputSpec(BaseInterfaceInputSpec):
    t1w_files = InputMultiObject(File(exists=True), mandatory=True, desc="T1w images")
    skull_stripped = traits.Enum("auto", "yes", "no", usedefault=True,
                                 desc="whether the input is skull-stripped; auto: sidecar "
                                      "SkullStripped field, else detected from the image")


class _ConformOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="conformed T1w (float32, RAS+)")
    source_file = traits.Str(desc="the chosen raw T1w")
    skull_stripped = traits.Bool(desc="whether the input was already skull-stripped")
    meta = traits.Dict(desc="conformance report for the sidecar")
    mask_meta = traits.Dict(desc="brain mask sidecar: how the mask was obtained")
    seg_figure_meta = traits.Dict(desc="caption of the segmentation figure")


class ConformT1w(SimpleInterface):
    """Choose the reference T1w, conform it (checks, RAS+) and tell if it is skull-stripped."""

    input_spec = _ConformInputSpec
    output_spec = _ConformOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.brain_extraction import skull_stripped_status
        from brainscale.workflows.anat.conform import conform_t1w, load_t1w, select_reference_t1w

        files = list(self.inputs.t1w_files)
        images = [load_t1w(f) for f in files]
        chosen = select_reference_t1w(images)
        img, report = conform_t1w(images[chosen], files[chosen])
        self._results["out_file"] = out_path(runtime, "t1w_conformed.nii.gz")
        nib.save(img, self._results["out_file"])
        self._results["source_file"] = files[chosen]
        if self.inputs.skull_stripped == "auto":
            stripped, evidence = skull_stripped_status(img, _sidecar(files[chosen]))
        else:
            stripped = self.inputs.skull_stripped == "yes"
            evidence = "set by the caller"
        meta = {"SkullStripped": stripped, "SkullStrippedEvidence": evidence,
                "BiasCorrection": "N4 (antspyx)", **report.as_dict()}
        meta["ReferenceT1wChoice"] = (
            f"{os.path.basename(files[chosen])} of {len(files)} T1w image(s): highest resolution"
        )
        self._results["meta"] = meta
        self._results["skull_stripped"] = stripped
        self._results["mask_meta"] = {
            "Type": "Brain", "SkullStrippedInput": stripped,
            "BrainExtraction": (
                "none: the input was skull-stripped; the mask is its non-zero region "
                "trimmed by the tissue classification" if stripped else
                "template-based (rigid pseudo-head alignment, affine registration inside "
                "the template brain mask, tissue classification, warped template brain mask)"),
        }
        caption = SEGMENTATION_CAPTION
        if stripped:
            caption += (" The input T1w was already skull-stripped (" + evidence + "): no "
                        "brain extraction was run.")
        self._results["seg_figure_meta"] = {"Caption": caption}
        return runtime


class _InFileInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="input image")


class _OutFileOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="output file")


class BiasFieldCorrection(SimpleInterface):
    """N4 bias field correction (:func:`brainscale.workflows.anat.bias.correct_bias_field`)."""

    input_spec = _InFileInputSpec
    output_spec = _OutFileOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.bias import correct_bias_field

        corrected, _ = correct_bias_field(nib.load(self.inputs.in_file))
        self._results["out_file"] = out_path(runtime, "t1w_n4.nii.gz")
        nib.save(corrected, self._results["out_file"])
        return runtime


class _NormalizeInputSpec(_InFileInputSpec):
    seed = traits.Int(0, usedefault=True, desc="random seed")
    template_resolution = traits.Enum(1, 2, usedefault=True, desc="std_t1w resolution (mm)")
    skull_stripped = traits.Bool(False, usedefault=True, desc="input already skull-stripped")


class _NormalizeOutputSpec(TraitedSpec):
    forward_xfm = File(exists=True, desc="T1w -> MNI displacement field")
    inverse_xfm = File(exists=True, desc="MNI -> T1w displacement field")
    affine_xfm = File(exists=True, desc="affine stage (template -> T1w points), for eTIV")
    std_t1w = File(exists=True, desc="T1w resampled to the template")


class NormalizeToTemplate(SimpleInterface):
    """Brain extraction (unless pre-stripped), affine and SyN to the embedded template."""

    input_spec = _NormalizeInputSpec
    output_spec = _NormalizeOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.normalization import (
            AFFINE_RESOLUTION_MM,
            apply_displacement,
            normalize_to_template,
            syn_resolution,
        )

        t1w = nib.load(self.inputs.in_file)
        result = normalize_to_template(
            t1w, embedded_template(int(AFFINE_RESOLUTION_MM)),
            embedded_template(syn_resolution(t1w)), out_path(runtime, "anat2std_"),
            seed=self.inputs.seed, skull_stripped=self.inputs.skull_stripped)
        std = apply_displacement(t1w, embedded_template(self.inputs.template_resolution).t1w,
                                 result.forward)
        self._results.update(forward_xfm=result.forward, inverse_xfm=result.inverse,
                             affine_xfm=result.affine,
                             std_t1w=out_path(runtime, "t1w_std.nii.gz"))
        nib.save(std, self._results["std_t1w"])
        return runtime


class _ModulatedGMInputSpec(BaseInterfaceInputSpec):
    tpms = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF (GM first)")
    forward_xfm = File(exists=True, mandatory=True, desc="T1w -> MNI displacement field")


class ModulatedGM(SimpleInterface):
    """GM probability warped to the 2 mm template, modulated by the Jacobian (VBM input).

    See :func:`brainscale.workflows.anat.vbm.modulated_gm`.
    """

    input_spec = _ModulatedGMInputSpec
    output_spec = _OutFileOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.vbm import modulated_gm

        out = modulated_gm(nib.load(self.inputs.tpms[0]), self.inputs.forward_xfm,
                           embedded_template(2).t1w)
        self._results["out_file"] = out_path(runtime, "gm_modulated_std.nii.gz")
        nib.save(out, self._results["out_file"])
        return runtime


class _SegmentInputSpec(_InFileInputSpec):
    inverse_xfm = File(exists=True, mandatory=True, desc="MNI -> T1w displacement field")
    skull_stripped = traits.Bool(False, usedefault=True, desc="input already skull-stripped")


class _SegmentOutputSpec(TraitedSpec):
    mask = File(exists=True, desc="brain mask")
    dseg = File(exists=True, desc="0 bg, 1 CSF, 2 GM, 3 WM")
    tpms = OutputMultiObject(File(exists=True), desc="GM, WM, CSF probabilities")


class SegmentTissues(SimpleInterface):
    """Template-prior Gaussian mixture segmentation and brain mask refinement."""

    input_spec = _SegmentInputSpec
    output_spec = _SegmentOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.images import like
        from brainscale.workflows.anat.prior_segmentation import segment_with_template_priors
        from brainscale.workflows.anat.segmentation import discrete_segmentation

        t1w = nib.load(self.inputs.in_file)
        resolution = 1 if min(t1w.header.get_zooms()[:3]) < 1.5 else 2
        post, mask = segment_with_template_priors(t1w, self.inputs.inverse_xfm,
                                                  embedded_template(resolution),
                                                  skull_stripped=self.inputs.skull_stripped)
        paths = {}
        for name, data in (("mask", mask.astype(np.uint8)),
                           ("dseg", discrete_segmentation(post, mask)),
                           ("GM", post[1]), ("WM", post[2]), ("CSF", post[0])):
            paths[name] = out_path(runtime, f"t1w_{name}.nii.gz")
            nib.save(like(data, t1w), paths[name])
        self._results.update(mask=paths["mask"], dseg=paths["dseg"],
                             tpms=[paths["GM"], paths["WM"], paths["CSF"]])
        return runtime


class _ThicknessInputSpec(BaseInterfaceInputSpec):
    dseg = File(exists=True, mandatory=True, desc="discrete segmentation")
    tpms = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF")
    inverse_xfm = File(exists=True, desc="MNI -> T1w displacement field (to mask non-cortex)")
    method = traits.Enum("laplace", "direct", usedefault=True,
                         desc="Laplace/Eulerian streamlines or DiReCT (antspyx)")


class _ThicknessOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="thickness map (mm)")
    meta = traits.Dict(desc="method description for the sidecar")


class CorticalThickness(SimpleInterface):
    """Cortical thickness of the cerebral cortex (Laplace streamlines or DiReCT).

    See :func:`brainscale.workflows.anat.laplace_thickness.laplace_thickness` and
    :func:`brainscale.workflows.anat.thickness.direct_thickness`. With ``inverse_xfm`` the
    template's non-cortical grey matter (cerebellum, deep nuclei) is excluded.
    """

    input_spec = _ThicknessInputSpec
    output_spec = _ThicknessOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.thickness import cortical_thickness

        inverse_xfm = self.inputs.inverse_xfm if isdefined(self.inputs.inverse_xfm) else None
        thick, meta = cortical_thickness(nib.load(self.inputs.dseg),
                                         [nib.load(f) for f in self.inputs.tpms],
                                         method=self.inputs.method, inverse_xfm=inverse_xfm)
        self._results["out_file"] = out_path(runtime, "t1w_thickness.nii.gz")
        self._results["meta"] = meta
        nib.save(thick, self._results["out_file"])
        return runtime


class _AtlasInputSpec(BaseInterfaceInputSpec):
    atlas = traits.Str(mandatory=True, desc="atlas name")
    reference = File(exists=True, mandatory=True, desc="native T1w grid")
    inverse_xfm = File(exists=True, mandatory=True, desc="MNI -> T1w displacement field")


class AtlasToNative(SimpleInterface):
    """Resample an atlas into native T1w space (nearest neighbour)."""

    input_spec = _AtlasInputSpec
    output_spec = _OutFileOutputSpec

    def _run_interface(self, runtime):
        from brainscale.resources import get_atlas
        from brainscale.workflows.anat.images import like
        from brainscale.workflows.anat.normalization import apply_displacement

        ref = nib.load(self.inputs.reference)
        warped = apply_displacement(get_atlas(self.inputs.atlas).load(), ref,
                                    self.inputs.inverse_xfm, interpolation="nearestNeighbor")
        self._results["out_file"] = out_path(runtime, f"atlas_{self.inputs.atlas}.nii.gz")
        nib.save(like(np.rint(warped.get_fdata()).astype(np.int32), ref),
                 self._results["out_file"])
        return runtime


class _MorphInputSpec(BaseInterfaceInputSpec):
    tpms = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF")
    mask = File(exists=True, mandatory=True, desc="brain mask")
    thickness = File(exists=True, mandatory=True, desc="thickness map")
    atlas = traits.Str(desc="atlas name (regional table); empty: global table")
    atlas_file = File(exists=True, desc="atlas in native space")
    affine_xfm = File(exists=True, desc="affine T1w -> template stage (global table: eTIV)")


class _MorphOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="morphometry TSV")
    meta = traits.Dict(desc="sidecar with units")


class Morphometry(SimpleInterface):
    """Write the global (no atlas) or regional (atlas) morphometry TSV."""

    input_spec = _MorphInputSpec
    output_spec = _MorphOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from brainscale.resources import get_atlas
        from brainscale.workflows.anat import morphometry
        from brainscale.workflows.anat.images import voxel_volume

        gm_img = nib.load(self.inputs.tpms[0])
        vox = voxel_volume(gm_img)
        thick = nib.load(self.inputs.thickness).get_fdata(dtype=np.float32)
        if self.inputs.atlas:
            atlas = get_atlas(self.inputs.atlas)
            table = morphometry.regional_measures(
                np.asarray(nib.load(self.inputs.atlas_file).dataobj), atlas.labels,
                gm_img.get_fdata(dtype=np.float32), thick, vox)
            units = morphometry.REGIONAL_UNITS
            meta = {"Atlas": atlas.name, "AtlasCitation": atlas.citation}
        else:
            tpms = np.stack([nib.load(self.inputs.tpms[i]).get_fdata(dtype=np.float32)
                             for i in (2, 0, 1)])
            mask = np.asarray(nib.load(self.inputs.mask).dataobj) > 0
            etiv = float("nan")
            if isdefined(self.inputs.affine_xfm):
                from brainscale.workflows.anat.normalization import estimated_intracranial_volume

                etiv = estimated_intracranial_volume(
                    self.inputs.affine_xfm, embedded_template(1).intracranial_volume_mm3)
            table = pd.DataFrame([morphometry.global_measures(tpms, mask, thick, vox, etiv)])
            units = morphometry.GLOBAL_UNITS
            meta = {}
        meta.update({col: {"Units": unit} for col, unit in units.items()})
        for col, text in morphometry.GLOBAL_DESCRIPTIONS.items() if not self.inputs.atlas else ():
            meta[col]["Description"] = text
        self._results["out_file"] = out_path(runtime, "morph.tsv")
        table.to_csv(self._results["out_file"], sep="\t", index=False, na_rep="n/a")
        self._results["meta"] = json.loads(json.dumps(meta))
        return runtime


class _SegFigureInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True, desc="T1w")
    mask = File(exists=True, mandatory=True, desc="brain mask")
    dseg = File(exists=True, mandatory=True, desc="segmentation")


class SegmentationFigure(SimpleInterface):
    """SVG: brain mask and tissue boundaries over the T1w."""

    input_spec = _SegFigureInputSpec
    output_spec = _OutFileOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.figures import plot_segmentation

        self._results["out_file"] = plot_segmentation(
            nib.load(self.inputs.t1w), nib.load(self.inputs.mask), nib.load(self.inputs.dseg),
            out_path(runtime, "seg.svg"))
        return runtime


class _NormFigureInputSpec(BaseInterfaceInputSpec):
    std_t1w = File(exists=True, mandatory=True, desc="T1w in template space")
    template_resolution = traits.Enum(1, 2, usedefault=True, desc="template resolution")


class NormalizationFigure(SimpleInterface):
    """SVG: normalized T1w with the template brain outline."""

    input_spec = _NormFigureInputSpec
    output_spec = _OutFileOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat.figures import plot_normalization

        self._results["out_file"] = plot_normalization(
            nib.load(self.inputs.std_t1w),
            embedded_template(self.inputs.template_resolution).brain_mask,
            out_path(runtime, "norm.svg"))
        return runtime
