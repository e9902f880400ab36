"""Thin Nipype interfaces of the functional workflow: load, call a numeric function, save."""

from __future__ import annotations

import logging
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
    traits,
)

from brainscale.workflows.func import confounds as confounds_mod
from brainscale.workflows.func import (
    connectivity,
    fieldmap,
    figures,
    glm,
    reference,
    registration,
    resample,
)
from brainscale.workflows.func.motion import MOTION_COLUMNS, estimate_head_motion
from brainscale.workflows.func.slice_timing import slice_timing_plan
from brainscale.workflows.interface_utils import defined_or_none, out_path, save_image
from brainscale.writers import write_tsv

LOGGER = logging.getLogger("brainscale")


class _TemplateResourcesInputSpec(BaseInterfaceInputSpec):
    resolution = traits.Enum(2, 1, usedefault=True, desc="template resolution (mm)")


class _TemplateResourcesOutputSpec(TraitedSpec):
    template_file = File(exists=True, desc="MNI152NLin2009aSym T1w")
    mask_file = File(exists=True, desc="template brain mask")
    tpm_files = OutputMultiObject(File(exists=True), desc="[GM, WM, CSF] probabilities")


class TemplateResources(SimpleInterface):
    """Write the embedded template, its mask and tissue probabilities to files."""

    input_spec = _TemplateResourcesInputSpec
    output_spec = _TemplateResourcesOutputSpec

    def _run_interface(self, runtime):
        from brainscale import resources

        res = self.inputs.resolution
        self._results["template_file"] = str(resources.save_resource(
            resources.get_template(res), out_path(runtime, "template.nii.gz")))
        self._results["mask_file"] = str(resources.save_resource(
            resources.get_template_mask(res), out_path(runtime, "template_mask.nii.gz")))
        self._results["tpm_files"] = [
            str(resources.save_resource(resources.get_template_probseg(label, res),
                                        out_path(runtime, f"template_{label}.nii.gz")))
            for label in ("GM", "WM", "CSF")
        ]
        return runtime


class _BoldReferenceInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="raw BOLD run")
    metadata = traits.Dict(mandatory=True, desc="BIDS sidecar of the run")


class _BoldReferenceOutputSpec(TraitedSpec):
    boldref_file = File(exists=True, desc="BOLD reference (median of steady-state volumes)")
    bold_mask_file = File(exists=True, desc="brain mask of the reference")
    n_nonsteady = traits.Int(desc="leading non-steady-state volumes")
    repetition_time = traits.Float(desc="RepetitionTime (s)")


class BoldReference(SimpleInterface):
    """Validate a BOLD run, count non-steady-state volumes, compute reference and mask."""

    input_spec = _BoldReferenceInputSpec
    output_spec = _BoldReferenceOutputSpec

    def _run_interface(self, runtime):
        img = nib.load(self.inputs.bold_file)
        name = os.path.basename(self.inputs.bold_file)
        tr = reference.validate_bold(img, self.inputs.metadata, name)
        slice_timing_plan(self.inputs.metadata, img.shape, tr, name)
        data = np.asarray(img.dataobj, dtype=np.float32)
        n_nonsteady = reference.detect_nonsteady_states(data)
        ref = nib.Nifti1Image(reference.compute_boldref(data, n_nonsteady), img.affine)
        self._results["boldref_file"] = save_image(ref.get_fdata(), img.affine,
                                              out_path(runtime, "boldref.nii.gz"))
        mask = reference.compute_bold_mask(ref)
        self._results["bold_mask_file"] = save_image(mask.dataobj, img.affine,
                                                out_path(runtime, "bold_mask.nii.gz"), np.uint8)
        self._results["n_nonsteady"] = n_nonsteady
        self._results["repetition_time"] = tr
        return runtime


class _HeadMotionInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True)
    boldref_file = File(exists=True, mandatory=True)
    bold_mask_file = File(exists=True, mandatory=True)


class _HeadMotionOutputSpec(TraitedSpec):
    motion_params_file = File(exists=True, desc="TSV of trans_x..rot_z (mm, rad)")
    motion_matrices_file = File(exists=True, desc=".npy (T, 4, 4) reference-to-volume matrices")


class HeadMotion(SimpleInterface):
    """Estimate rigid head motion of every volume relative to the BOLD reference."""

    input_spec = _HeadMotionInputSpec
    output_spec = _HeadMotionOutputSpec

    def _run_interface(self, runtime):
        img = nib.load(self.inputs.bold_file)
        ref = np.asarray(nib.load(self.inputs.boldref_file).dataobj, dtype=np.float32)
        mask = np.asarray(nib.load(self.inputs.bold_mask_file).dataobj) > 0
        data = np.asarray(img.dataobj, dtype=np.float32)  # one read, not one per volume
        params, matrices = estimate_head_motion(data, img.affine, ref, mask)
        frame = pd.DataFrame(params, columns=list(MOTION_COLUMNS))
        self._results["motion_params_file"] = str(write_tsv(frame, out_path(runtime, "motion.tsv")))
        np.save(out_path(runtime, "motion_matrices.npy"), matrices)
        self._results["motion_matrices_file"] = out_path(runtime, "motion_matrices.npy")
        return runtime


class _CoregisterInputSpec(BaseInterfaceInputSpec):
    boldref_file = File(exists=True, mandatory=True)
    bold_mask_file = File(exists=True, mandatory=True)
    anat_file = File(exists=True, mandatory=True, desc="T1w (or template on the BOLD-only path)")
    anat_mask_file = File(exists=True, mandatory=True, desc="brain mask of anat_file")
    transform_type = traits.Enum("Rigid", "Affine", usedefault=True)
    seed = traits.Int(0, usedefault=True)


class _CoregisterOutputSpec(TraitedSpec):
    anat2boldref_file = File(exists=True, desc="4x4 RAS matrix: anatomical point -> boldref")
    itk_transform_file = File(exists=True, desc="ITK transform boldref -> anat (image mode)")


class Coregister(SimpleInterface):
    """Register the brain-extracted BOLD reference to the brain-extracted anatomy."""

    input_spec = _CoregisterInputSpec
    output_spec = _CoregisterOutputSpec

    def _run_interface(self, runtime):
        anat_img, boldref_img = registration.coregistration_brains(
            nib.load(self.inputs.anat_file), nib.load(self.inputs.anat_mask_file),
            nib.load(self.inputs.boldref_file), nib.load(self.inputs.bold_mask_file))
        anat_brain = out_path(runtime, "anat_brain.nii.gz")
        nib.save(anat_img, anat_brain)
        boldref_brain = out_path(runtime, "boldref_brain.nii.gz")
        nib.save(boldref_img, boldref_brain)
        itk_file = out_path(runtime, "boldref2anat_xfm.txt")
        matrix = registration.register_boldref(
            anat_brain, boldref_brain, itk_file,
            transform_type=self.inputs.transform_type, seed=self.inputs.seed,
        )
        self._results["anat2boldref_file"] = registration.save_matrix(
            matrix, out_path(runtime, "anat2boldref.txt"))
        self._results["itk_transform_file"] = itk_file
        return runtime


class _ResampleBoldInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="raw BOLD run")
    metadata = traits.Dict(mandatory=True, desc="BIDS sidecar (SliceTiming)")
    repetition_time = traits.Float(mandatory=True)
    boldref_file = File(exists=True, mandatory=True)
    motion_matrices_file = File(exists=True, mandatory=True)
    anat2boldref_file = File(exists=True, mandatory=True)
    target_file = File(exists=True, mandatory=True, desc="image whose grid is the target")
    bold_resolution = traits.Bool(False, usedefault=True,
                                  desc="resample the target grid to the BOLD voxel size")
    target_mask_file = File(exists=True, desc="brain mask in target space (restricts output)")
    xfm_file = File(exists=True, desc="template->T1w displacement field (ITK/ANTs)")
    order = traits.Int(3, usedefault=True, desc="spline order of the interpolation")
    vsm_file = File(exists=True, desc="voxel-shift map on the BOLD reference grid (SDC)")
    pe_direction = traits.Str(desc="BIDS PhaseEncodingDirection of the BOLD run")


class _ResampleBoldOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="4D BOLD on the target grid (float32)")
    boldref_file = File(exists=True, desc="BOLD reference on the target grid")
    mask_file = File(exists=True, desc="brain mask within the BOLD field of view")


class ResampleBold(SimpleInterface):
    """Slice-timing correct in memory, then resample every volume once to a target grid."""

    input_spec = _ResampleBoldInputSpec
    output_spec = _ResampleBoldOutputSpec

    def _run_interface(self, runtime):
        vsm = defined_or_none(self.inputs.vsm_file, nib.load)
        result = resample.resample_bold_run(
            nib.load(self.inputs.bold_file),
            np.asarray(nib.load(self.inputs.boldref_file).dataobj, dtype=np.float32),
            np.load(self.inputs.motion_matrices_file), np.loadtxt(self.inputs.anat2boldref_file),
            nib.load(self.inputs.target_file), metadata=self.inputs.metadata,
            repetition_time=self.inputs.repetition_time,
            source_name=os.path.basename(self.inputs.bold_file),
            bold_resolution=self.inputs.bold_resolution,
            target_mask=defined_or_none(self.inputs.target_mask_file, nib.load),
            displacement_field=defined_or_none(self.inputs.xfm_file, nib.load),
            vsm=None if vsm is None else np.asarray(vsm.dataobj, dtype=np.float64),
            pe_direction=self.inputs.pe_direction if vsm is not None else None,
            order=self.inputs.order,
        )
        out_img = nib.Nifti1Image(result.bold, result.affine)
        out_img.header.set_xyzt_units("mm", "sec")
        out_img.header["pixdim"][4] = self.inputs.repetition_time
        self._results["out_file"] = out_path(runtime, "bold_resampled.nii.gz")
        nib.save(out_img, self._results["out_file"])
        self._results["boldref_file"] = save_image(
            result.boldref, result.affine, out_path(runtime, "boldref_resampled.nii.gz"))
        self._results["mask_file"] = save_image(
            result.mask, result.affine, out_path(runtime, "mask.nii.gz"), np.uint8)
        return runtime


class _ConfoundsInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="motion-corrected BOLD")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    tpm_files = InputMultiObject(File(exists=True), mandatory=True, desc="[GM, WM, CSF]")
    motion_params_file = File(exists=True, mandatory=True)
    repetition_time = traits.Float(mandatory=True)
    n_nonsteady = traits.Int(0, usedefault=True)


class _ConfoundsOutputSpec(TraitedSpec):
    confounds_file = File(exists=True)
    confounds_metadata = traits.Dict()


class BoldConfounds(SimpleInterface):
    """Compute the confounds table (fMRIPrep column names) of one run."""

    input_spec = _ConfoundsInputSpec
    output_spec = _ConfoundsOutputSpec

    def _run_interface(self, runtime):
        bold = nib.load(self.inputs.bold_file)
        _, wm_file, csf_file = self.inputs.tpm_files
        mask, wm, csf = confounds_mod.tissues_on_bold_grid(
            bold.shape[:3], bold.affine, nib.load(self.inputs.mask_file), nib.load(wm_file),
            nib.load(csf_file))
        motion = pd.read_csv(self.inputs.motion_params_file, sep="\t")[list(MOTION_COLUMNS)]
        table, meta = confounds_mod.compute_confounds(
            np.asarray(bold.dataobj, dtype=np.float32), mask, csf, wm, motion.to_numpy(),
            self.inputs.repetition_time, self.inputs.n_nonsteady,
        )
        self._results["confounds_file"] = str(write_tsv(table, out_path(runtime, "confounds.tsv")))
        self._results["confounds_metadata"] = meta
        return runtime


class _ConnectivityInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed BOLD in the atlas space")
    atlas_name = traits.Str(mandatory=True)
    confounds_file = File(exists=True, mandatory=True)
    strategy = traits.Str(mandatory=True, desc="denoising strategy")
    repetition_time = traits.Float(mandatory=True)
    source_name = traits.Str("", usedefault=True, desc="raw BOLD name for messages")


class _ConnectivityOutputSpec(TraitedSpec):
    timeseries_file = File(exists=True, desc="denoised parcel time series (n/a = censored)")
    pearson_file = File(exists=True, desc="Pearson correlation relmat TSV")
    partial_file = File(exists=True, desc="partial correlation relmat TSV")
    pearson_z_file = File(exists=True, desc="Fisher z of the Pearson correlation")
    partial_z_file = File(exists=True, desc="Fisher z of the partial correlation")
    figure_file = File(exists=True, desc="heatmap of the Pearson matrix")
    metadata = traits.Dict(desc="denoising description for the sidecars")


class Connectivity(SimpleInterface):
    """Denoise parcel time series of one atlas and compute connectivity matrices."""

    input_spec = _ConnectivityInputSpec
    output_spec = _ConnectivityOutputSpec

    def _run_interface(self, runtime):
        from brainscale.resources import get_atlas

        atlas = get_atlas(self.inputs.atlas_name)
        table = pd.read_csv(self.inputs.confounds_file, sep="\t", na_values=["n/a"])
        denoised, matrices = connectivity.atlas_connectivity(
            nib.load(self.inputs.bold_file), atlas.load(), atlas.labels, table,
            self.inputs.strategy, self.inputs.repetition_time, self.inputs.source_name)
        if denoised.note:
            LOGGER.warning("%s: %s", self.inputs.source_name, denoised.note)
        self._results["timeseries_file"] = str(write_tsv(
            denoised.timeseries, out_path(runtime, "timeseries.tsv")))
        for label, matrix in matrices.items():
            self._results[f"{label}_file"] = str(write_tsv(
                connectivity.relmat_frame(matrix, denoised.names),
                out_path(runtime, f"{label}_relmat.tsv")))
        self._results["figure_file"] = figures.plot_connectivity(
            matrices["pearson"], denoised.names, f"{atlas.name}: Pearson r ({denoised.strategy})",
            out_path(runtime, "connectivity.svg"))
        self._results["metadata"] = {
            "DenoisingStrategy": denoised.strategy,
            "DenoisingStrategyRequested": self.inputs.strategy,
            **({"DenoisingNote": denoised.note} if denoised.note else {}),
            "ConfoundRegressors": denoised.confound_columns,
            "NumberOfVolumesKept": int(len(denoised.kept)),
            "NumberOfVolumesCensored": int(len(table) - len(denoised.kept)),
            "RegionsWithoutSignal": denoised.regions_without_signal,
            "Atlas": atlas.name,
            "AtlasCitation": atlas.citation,
        }
        return runtime


class _FirstLevelInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    events_file = File(exists=True, mandatory=True)
    confounds_file = File(exists=True, mandatory=True)
    repetition_time = traits.Float(mandatory=True)
    n_nonsteady = traits.Int(0, usedefault=True)


class _FirstLevelOutputSpec(TraitedSpec):
    zmap_files = OutputMultiObject(File(exists=True))
    condition_labels = traits.List(traits.Str)


class FirstLevelGLM(SimpleInterface):
    """Fit a first-level GLM and save one z map per condition."""

    input_spec = _FirstLevelInputSpec
    output_spec = _FirstLevelOutputSpec

    def _run_interface(self, runtime):
        events = glm.read_events(self.inputs.events_file)
        table = pd.read_csv(self.inputs.confounds_file, sep="\t", na_values=["n/a"])
        zmaps = glm.fit_first_level(
            nib.load(self.inputs.bold_file), nib.load(self.inputs.mask_file), events, table,
            self.inputs.repetition_time, self.inputs.n_nonsteady,
        )
        files, labels = [], []
        for label, img in zmaps.items():
            zmap_file = out_path(runtime, f"z_{label}.nii.gz")
            files.append(save_image(img.get_fdata(), img.affine, zmap_file))
            labels.append(label)
        self._results["zmap_files"] = files
        self._results["condition_labels"] = labels
        return runtime


class _CarpetInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    confounds_file = File(exists=True, mandatory=True)
    repetition_time = traits.Float(mandatory=True)


class _FigureOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class CarpetPlot(SimpleInterface):
    """Plot the carpet of brain voxels with FD and standardized DVARS."""

    input_spec = _CarpetInputSpec
    output_spec = _FigureOutputSpec

    def _run_interface(self, runtime):
        table = pd.read_csv(self.inputs.confounds_file, sep="\t", na_values=["n/a"])
        self._results["out_file"] = figures.plot_carpet_with_confounds(
            nib.load(self.inputs.bold_file), nib.load(self.inputs.mask_file), table,
            self.inputs.repetition_time, out_path(runtime, "carpet.svg"))
        return runtime


class _CoregPlotInputSpec(BaseInterfaceInputSpec):
    anat_file = File(exists=True, mandatory=True)
    boldref_file = File(exists=True, mandatory=True, desc="BOLD reference in the anat space")


class CoregistrationPlot(SimpleInterface):
    """Plot the BOLD reference in anatomical space with the anatomy's edges."""

    input_spec = _CoregPlotInputSpec
    output_spec = _FigureOutputSpec

    def _run_interface(self, runtime):
        self._results["out_file"] = figures.plot_coregistration(
            nib.load(self.inputs.anat_file), nib.load(self.inputs.boldref_file),
            out_path(runtime, "coreg.svg"))
        return runtime


class _FieldmapSDCInputSpec(BaseInterfaceInputSpec):
    phasediff_file = File(exists=True, mandatory=True)
    magnitude_file = File(exists=True, mandatory=True)
    echo_time1 = traits.Float(mandatory=True)
    echo_time2 = traits.Float(mandatory=True)
    boldref_file = File(exists=True, mandatory=True)
    bold_mask_file = File(exists=True, mandatory=True)
    total_readout_time = traits.Float(mandatory=True)
    pe_direction = traits.Str(mandatory=True)
    seed = traits.Int(0, usedefault=True)


class _FieldmapSDCOutputSpec(TraitedSpec):
    vsm_file = File(exists=True, desc="voxel-shift map (voxels) on the BOLD reference grid")
    fieldmap_file = File(exists=True, desc="field map (Hz) on the BOLD reference grid")
    boldref_file = File(exists=True, desc="distortion-corrected BOLD reference")
    mask_file = File(exists=True, desc="brain mask of the corrected reference")


class FieldmapSDC(SimpleInterface):
    """Map a phase-difference field map onto the BOLD reference as a voxel-shift map."""

    input_spec = _FieldmapSDCInputSpec
    output_spec = _FieldmapSDCOutputSpec

    def _run_interface(self, runtime):
        boldref = nib.load(self.inputs.boldref_file)
        corrected = fieldmap.correct_with_fieldmap(
            nib.load(self.inputs.magnitude_file), nib.load(self.inputs.phasediff_file),
            self.inputs.echo_time1, self.inputs.echo_time2, boldref,
            nib.load(self.inputs.bold_mask_file), self.inputs.total_readout_time,
            self.inputs.pe_direction, work_dir=runtime.cwd, seed=self.inputs.seed)
        for key, data, name, dtype in (
            ("fieldmap_file", corrected.fieldmap_hz, "fieldmap_hz.nii.gz", np.float32),
            ("vsm_file", corrected.vsm, "vsm.nii.gz", np.float32),
            ("boldref_file", corrected.boldref, "boldref_sdc.nii.gz", np.float32),
            ("mask_file", corrected.mask, "mask_sdc.nii.gz", np.uint8),
        ):
            self._results[key] = save_image(data, boldref.affine, out_path(runtime, name), dtype)
        return runtime
