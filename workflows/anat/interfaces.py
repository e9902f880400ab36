"""Thin Nipype interfaces of the anatomical workflow: load, call a numeric function, save."""

from __future__ import annotations

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

from workflows.interface_utils import out_path


class _ConformInputSpec(BaseInterfaceInputSpec):
    t1w_files = InputMultiObject(File(exists=True), mandatory=True, desc="T1w images")


class _ConformOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="conformed T1w (float32, RAS+)")
    source_file = traits.Str(desc="the chosen raw T1w")
    meta = traits.Dict(desc="conformance report for the sidecar")


class ConformT1w(SimpleInterface):
    """Choose the reference T1w and conform it (checks, RAS+ orientation)."""

    input_spec = _ConformInputSpec
    output_spec = _ConformOutputSpec

    def _run_interface(self, runtime):
        from workflows.anat.conform import conform_t1w, load_t1w, select_reference_t1w

        files = list(self.inputs.t1w_files)
        images = [load_t1w(f) for f in files]
        chosen = select_reference_t1w(images)
        img, report = conform_t1w(images[chosen], files[chosen])
        self._results["out_file"] = out_path(runtime, "t1w_conformed.nii.gz")
        nib.save(img, self._results["out_file"])
        self._results["source_file"] = files[chosen]
        meta = {"SkullStripped": False, "BiasCorrection": "N4 (antspyx)", **report.as_dict()}
        meta["ReferenceT1wChoice"] = (
            f"{os.path.basename(files[chosen])} of {len(files)} T1w image(s): highest resolution"
        )
        self._results["meta"] = meta
        return runtime


class _InFileInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="input image")


class _OutFileOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="output file")


class BiasFieldCorrection(SimpleInterface):
    """N4 bias field correction (:func:`workflows.anat.bias.correct_bias_field`)."""

    input_spec = _InFileInputSpec
    output_spec = _OutFileOutputSpec

    def _run_interface(self, runtime):
        from workflows.anat.bias import correct_bias_field

        corrected, _ = correct_bias_field(nib.load(self.inputs.in_file))
        self._results["out_file"] = out_path(runtime, "t1w_n4.nii.gz")
        nib.save(corrected, self._results["out_file"])
        return runtime


class _NormalizeInputSpec(_InFileInputSpec):
    seed = traits.Int(0, usedefault=True, desc="random seed")
    template_resolution = traits.Enum(1, 2, usedefault=True, desc="std_t1w resolution (mm)")


class _NormalizeOutputSpec(TraitedSpec):
    forward_xfm = File(exists=True, desc="T1w -> MNI displacement field")
    inverse_xfm = File(exists=True, desc="MNI -> T1w displacement field")
    std_t1w = File(exists=True, desc="T1w resampled to the template")


class NormalizeToTemplate(SimpleInterface):
    """Rigid head alignment, brain extraction and SyN to the embedded template."""

    input_spec = _NormalizeInputSpec
    output_spec = _NormalizeOutputSpec

    def _run_interface(self, runtime):
        from brainscale.resources import get_template
        from workflows.anat.normalization import apply_displacement, normalize_head_to_template

        t1w = nib.load(self.inputs.in_file)
        forward, inverse = normalize_head_to_template(t1w, out_path(runtime, "anat2std_"),
                                                      seed=self.inputs.seed)
        std = apply_displacement(t1w, get_template(self.inputs.template_resolution), forward)
        self._results.update(forward_xfm=forward, inverse_xfm=inverse,
                             std_t1w=out_path(runtime, "t1w_std.nii.gz"))
        nib.save(std, self._results["std_t1w"])
        return runtime


class _SegmentInputSpec(_InFileInputSpec):
    inverse_xfm = File(exists=True, mandatory=True, desc="MNI -> T1w displacement field")


class _SegmentOutputSpec(TraitedSpec):
    mask = File(exists=True, desc="brain mask")
    dseg = File(exists=True, desc="0 bg, 1 CSF, 2 GM, 3 WM")
    tpms = OutputMultiObject(File(exists=True), desc="GM, WM, CSF probabilities")


class SegmentTissues(SimpleInterface):
    """Template-prior Gaussian mixture segmentation and brain mask refinement."""

    input_spec = _SegmentInputSpec
    output_spec = _SegmentOutputSpec

    def _run_interface(self, runtime):
        from workflows.anat.images import like
        from workflows.anat.prior_segmentation import segment_with_template_priors
        from workflows.anat.segmentation import discrete_segmentation

        t1w = nib.load(self.inputs.in_file)
        post, mask = segment_with_template_priors(t1w, self.inputs.inverse_xfm)
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

    See :func:`workflows.anat.laplace_thickness.laplace_thickness` and
    :func:`workflows.anat.thickness.direct_thickness`. With ``inverse_xfm`` the
    template's non-cortical grey matter (cerebellum, deep nuclei) is excluded.
    """

    input_spec = _ThicknessInputSpec
    output_spec = _ThicknessOutputSpec

    def _run_interface(self, runtime):
        from workflows.anat.thickness import cortical_thickness

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
        from workflows.anat.images import like
        from workflows.anat.normalization import apply_displacement

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
        from workflows.anat import morphometry
        from workflows.anat.images import voxel_volume

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
            table = pd.DataFrame([morphometry.global_measures(tpms, mask, thick, vox)])
            units = morphometry.GLOBAL_UNITS
            meta = {}
        meta.update({col: {"Units": unit} for col, unit in units.items()})
        meta["SurfaceAreaMethod"] = "GM volume / mean cortical thickness per region"
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
        from workflows.anat.figures import plot_segmentation

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
        from workflows.anat.brain_extraction import template_brain_mask
        from workflows.anat.figures import plot_normalization

        self._results["out_file"] = plot_normalization(
            nib.load(self.inputs.std_t1w), template_brain_mask(self.inputs.template_resolution),
            out_path(runtime, "norm.svg"))
        return runtime
