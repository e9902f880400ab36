"""Thin Nipype interfaces computing the image quality metrics (IQMs) of each modality.

Each loads its images, calls one numeric function (:mod:`brainscale.workflows.anat.iqms`,
:mod:`brainscale.workflows.func.iqms`, :mod:`brainscale.workflows.dwi.iqms`) and writes one JSON in
MRIQC's
layout: the IQMs at the top level, plus ``bids_meta`` and ``provenance`` (thresholds and
the IQMs' units).
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from brainscale.workflows.interface_utils import out_path

UNITS = {
    "fwhm_x": "mm", "fwhm_y": "mm", "fwhm_z": "mm", "fwhm_avg": "mm", "fd_mean": "mm",
    "fd_perc": "percent", "outlier_volumes_perc": "percent", "summary_md_mean": "mm^2/s",
    "summary_md_median": "mm^2/s", "summary_md_stdv": "mm^2/s", "summary_md_p05": "mm^2/s",
    "summary_md_p95": "mm^2/s", "dummy_trs": "volumes", "size_t": "volumes",
}
"""Units of the IQMs that have one (the others are ratios or fractions)."""


def write_iqms(iqms: dict, path: str, *, modality: str, source: str, settings: dict) -> str:
    """Write IQMs as MRIQC-style JSON (``notes`` move into ``provenance``)."""
    iqms = dict(iqms)
    notes = iqms.pop("notes", [])
    from brainscale import __version__

    content = {
        **iqms,
        "bids_meta": {"modality": modality, "source_file": os.path.basename(source)},
        "provenance": {"software": "BrainScale", "version": __version__, "settings": settings,
                       "units": {k: v for k, v in UNITS.items() if k in iqms},
                       "notes": list(notes)},
    }
    with open(path, "w") as handle:
        json.dump(content, handle, indent=2, allow_nan=False)
    return path


def _data(path: str, dtype=np.float32) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=dtype)


def _fd(confounds_file: str) -> np.ndarray | None:
    table = pd.read_csv(confounds_file, sep="\t", na_values=["n/a"])
    if "framewise_displacement" not in table.columns:
        return None
    return table["framewise_displacement"].to_numpy(dtype=float)


class _T1wIQMsInputSpec(BaseInterfaceInputSpec):
    raw_file = File(exists=True, mandatory=True, desc="conformed T1w before bias correction")
    corrected_file = File(exists=True, mandatory=True, desc="N4-corrected T1w")
    mask_file = File(exists=True, mandatory=True, desc="brain mask")
    tpm_files = InputMultiObject(File(exists=True), mandatory=True, desc="[GM, WM, CSF]")
    source_file = traits.Str(mandatory=True, desc="raw BIDS T1w")


class _IQMsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="IQMs JSON")


class T1wIQMs(SimpleInterface):
    """Compute the T1w IQMs (:func:`brainscale.workflows.anat.iqms.compute_t1w_iqms`)."""

    input_spec = _T1wIQMsInputSpec
    output_spec = _IQMsOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.anat import iqms

        raw = nib.load(self.inputs.raw_file)
        gm, wm, csf = (_data(f) for f in self.inputs.tpm_files)
        values = iqms.compute_t1w_iqms(
            np.asarray(raw.dataobj, dtype=np.float32), _data(self.inputs.corrected_file),
            _data(self.inputs.mask_file) > 0, {"gm": gm, "wm": wm, "csf": csf},
            raw.header.get_zooms()[:3])
        self._results["out_file"] = write_iqms(
            values, out_path(runtime, "iqms_T1w.json"), modality="T1w",
            source=self.inputs.source_file,
            settings={"pure_tissue_probability": iqms.PURE_TISSUE,
                      "wm2max_wm_probability": iqms.MRIQC_WM_PROBABILITY,
                      "qi1_zscore": iqms.QI1_ZSCORE})
        return runtime


class _BoldIQMsInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="raw BOLD run")
    boldref_mask_file = File(exists=True, mandatory=True, desc="brain mask, raw grid")
    series_file = File(exists=True, mandatory=True, desc="motion-corrected resampled run")
    series_mask_file = File(exists=True, mandatory=True, desc="brain mask of series_file")
    confounds_file = File(exists=True, mandatory=True, desc="confounds TSV (FD)")
    n_nonsteady = traits.Int(0, usedefault=True, desc="leading non-steady-state volumes")


class BoldIQMs(SimpleInterface):
    """Compute the BOLD IQMs (:func:`brainscale.workflows.func.iqms.compute_bold_iqms`)."""

    input_spec = _BoldIQMsInputSpec
    output_spec = _IQMsOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.func import iqms

        raw = nib.load(self.inputs.bold_file)
        raw_data = np.asarray(raw.dataobj, dtype=np.float32)
        dummies = self.inputs.n_nonsteady
        raw_mean = raw_data[..., dummies:].mean(axis=-1)
        del raw_data
        series = nib.load(self.inputs.series_file)
        mask_img = nib.load(self.inputs.series_mask_file)
        if mask_img.shape[:3] != series.shape[:3]:  # the mask may be on the target's grid
            from nilearn.image import resample_to_img

            mask_img = resample_to_img(mask_img, nib.Nifti1Image(
                np.zeros(series.shape[:3], np.uint8), series.affine), interpolation="nearest",
                force_resample=True, copy_header=True)
        values = iqms.compute_bold_iqms(
            np.asarray(series.dataobj, dtype=np.float32),
            np.asarray(mask_img.dataobj) > 0, raw_mean,
            _data(self.inputs.boldref_mask_file) > 0, raw.header.get_zooms()[:3],
            _fd(self.inputs.confounds_file), dummies)
        self._results["out_file"] = write_iqms(
            values, out_path(runtime, "iqms_bold.json"), modality="bold",
            source=self.inputs.bold_file,
            settings={"fd_threshold_mm": iqms.FD_THRESHOLD_MM,
                      "outlier_volume_fraction": iqms.OUTLIER_VOLUME_FRACTION,
                      "outlier_qthr": iqms.OUTLIER_QTHR})
        return runtime


class _DwiIQMsInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="preprocessed series")
    bval_file = File(exists=True, mandatory=True)
    bvec_file = File(exists=True, mandatory=True)
    raw_files = InputMultiObject(File(exists=True), mandatory=True,
                                 desc="each acquired series before combination and motion "
                                      "correction (dropout detection)")
    raw_bval_files = InputMultiObject(File(exists=True), mandatory=True)
    raw_bvec_files = InputMultiObject(File(exists=True), mandatory=True)
    mask_file = File(exists=True, mandatory=True, desc="brain mask")
    map_files = InputMultiObject(File(exists=True), mandatory=True,
                                 desc="tensor maps, FA and MD first")
    motion_file = File(exists=True, mandatory=True, desc="motion TSV with FD")
    tpm_files = InputMultiObject(File(exists=True), desc="[GM, WM, CSF] in diffusion space")
    source_file = traits.List(traits.Str, mandatory=True, desc="raw series")
    slice_axis = traits.Int(2, usedefault=True, desc="acquisition slice axis")


class DwiIQMs(SimpleInterface):
    """Compute DWI IQMs and dropouts (:func:`brainscale.workflows.dwi.iqms.compute_dwi_iqms`)."""

    input_spec = _DwiIQMsInputSpec
    output_spec = _IQMsOutputSpec

    def _run_interface(self, runtime):
        from brainscale.workflows.dwi import iqms
        from brainscale.workflows.dwi.interfaces import load_series

        img, bvals, bvecs = load_series(self.inputs.in_file, self.inputs.bval_file,
                                        self.inputs.bvec_file)
        from brainscale.workflows.dwi.reference import brain_mask, mean_b0
        from brainscale.workflows.dwi.rigid_eddy import FD_DEFINITION

        raw, raw_bvals, raw_bvecs, raw_masks = [], [], [], []
        for series in zip(self.inputs.raw_files, self.inputs.raw_bval_files,
                          self.inputs.raw_bvec_files, strict=True):
            raw_img, b, v = load_series(*series)
            raw.append(np.asarray(raw_img.dataobj, dtype=np.float32))
            raw_bvals.append(b)
            raw_bvecs.append(v)
            raw_masks.append(brain_mask(mean_b0(raw[-1], b)))  # its own, distorted geometry
        wm = None
        if isdefined(self.inputs.tpm_files) and len(self.inputs.tpm_files) >= 2:
            from brainscale.workflows.anat.iqms import PURE_TISSUE

            wm = _data(self.inputs.tpm_files[1]) > PURE_TISSUE  # pure WM, as for the T1w
        values = iqms.compute_dwi_iqms(
            np.asarray(img.dataobj, dtype=np.float32), bvals, bvecs,
            _data(self.inputs.mask_file) > 0, _data(self.inputs.map_files[0]),
            _data(self.inputs.map_files[1]), _fd(self.inputs.motion_file),
            raw=raw, raw_bvals=raw_bvals, raw_masks=raw_masks,
            raw_bvecs=raw_bvecs, wm=wm, slice_axis=self.inputs.slice_axis)
        self._results["out_file"] = write_iqms(
            values, out_path(runtime, "iqms_dwi.json"), modality="dwi",
            source=self.inputs.source_file[0],
            settings={"dropout_z": iqms.DROPOUT_Z, "dropout_min_loss": iqms.DROPOUT_MIN_LOSS,
                      "slice_axis": self.inputs.slice_axis,
                      "dropout_handling": "recorded; slices are neither replaced nor "
                                          "excluded from the fits",
                      "framewise_displacement": FD_DEFINITION})
        return runtime
