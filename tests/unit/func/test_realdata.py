"""Checks on the real acquisitions of ds-real-mini (slow; plausibility, not exact truth)."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.func.confounds import expand_terms, framewise_displacement
from brainscale.workflows.func.denoise import denoise_timeseries
from brainscale.workflows.func.motion import MOTION_COLUMNS, estimate_head_motion
from brainscale.workflows.func.reference import (
    compute_bold_mask,
    compute_boldref,
    detect_nonsteady_states,
)
from brainscale.workflows.func.resample import fill_grid, grid_points, resample_series
from brainscale.workflows.func.slice_timing import correct_slice_timing, slice_timing_plan

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _load(ds, sub, task):
    bold = ds / f"sub-{sub}" / "func" / f"sub-{sub}_task-{task}_bold.nii.gz"
    meta = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    img = nib.load(bold)
    return img, np.asarray(img.dataobj, dtype=np.float32), meta


def test_sub01_motion_and_tsnr_are_plausible(ds_real_mini):
    img, data, _ = _load(ds_real_mini, "01", "oneback")
    assert data.shape == (80, 80, 35, 156)
    n_dummy = detect_nonsteady_states(data)
    ref = compute_boldref(data, n_dummy)
    mask = np.asarray(compute_bold_mask(nib.Nifti1Image(ref, img.affine)).dataobj) > 0
    params, matrices = estimate_head_motion(data, img.affine, ref, mask)
    fd = framewise_displacement(params)
    # a cooperative volunteer: sub-millimetre motion, mean FD well under 0.5 mm
    assert 0.01 < np.nanmean(fd) < 0.5
    assert np.abs(params[:, :3]).max() < 3.0
    corrected = fill_grid(resample_series(data, img.affine, grid_points(ref.shape, img.affine),
                                          matrices), ref.shape, None)
    tsnr = corrected[mask].mean(axis=1) / corrected[mask].std(axis=1)
    raw_tsnr = data[mask].mean(axis=1) / data[mask].std(axis=1)
    assert 30 < np.median(tsnr) < 300
    assert np.median(tsnr) >= 0.98 * np.median(raw_tsnr)


def test_sub02_multiband_slice_timing_and_short_run(ds_real_mini):
    img, data, meta = _load(ds_real_mini, "02", "fa")
    times, axis, ref_time = slice_timing_plan(meta, data.shape, float(meta["RepetitionTime"]))
    assert axis == 2 and len(np.unique(times)) == 11  # multiband factor 3 on 33 slices
    corrected = correct_slice_timing(data, times, axis, 1.0, ref_time)
    # slices acquired at the reference time are untouched; others change
    assert corrected.dtype == np.float32 and corrected.shape == data.shape
    same = np.flatnonzero(times == ref_time)
    assert np.array_equal(corrected[:, :, same], data[:, :, same]) if same.size else True
    # 20 volumes cannot support 36 regressors: a clear error, 6P is fine
    confounds = expand_terms(pd.DataFrame(np.random.default_rng(0).standard_normal((20, 6)),
                                          columns=list(MOTION_COLUMNS)))
    with pytest.raises(InputDataError, match="degrees of freedom"):
        denoise_timeseries(np.ones((20, 2)), confounds, "24P", 1.0, "sub-02_task-fa_bold.nii.gz")
    series = np.random.default_rng(1).standard_normal((20, 3))
    cleaned, kept = denoise_timeseries(series, confounds, "6P", 1.0)
    assert cleaned.shape == (20, 3) and len(kept) == 20


def test_sub02_bold_only_workflow_runs(ds_real_mini, tmp_path):
    """The BOLD-only path (no T1w connected) produces the contract's outputs."""
    from brainscale.workflows.func.workflow import init_func_wf

    bold = ds_real_mini / "sub-02" / "func" / "sub-02_task-fa_bold.nii.gz"
    meta = json.loads(bold.with_name("sub-02_task-fa_bold.json").read_text())
    out = tmp_path / "out"
    fmap = ds_real_mini / "sub-02" / "fmap"
    fieldmap = {"phasediff": str(fmap / "sub-02_phasediff.nii.gz"),
                "magnitude": str(fmap / "sub-02_magnitude1.nii.gz"),
                "metadata": json.loads((fmap / "sub-02_phasediff.json").read_text())}
    wf = init_func_wf(bold_file=str(bold), metadata=meta, has_anat=False, output_dir=str(out),
                      atlases=["DesikanKilliany"], denoise_strategy="6P", fieldmap=fieldmap)
    wf.base_dir = str(tmp_path / "work")
    wf.config["execution"]["crashdump_dir"] = str(tmp_path / "crash")
    wf.config["execution"]["remove_unnecessary_outputs"] = False  # inspect the field map
    wf.run(plugin="Linear")
    func = out / "sub-02" / "func"
    relmat = pd.read_csv(
        func / "sub-02_task-fa_atlas-DesikanKilliany_meas-PearsonCorrelation_relmat.tsv",
        sep="\t", na_values="n/a", index_col="node")
    assert list(relmat.index) == list(relmat.columns)
    values = relmat.to_numpy()
    valid = ~np.isnan(np.diag(values))
    assert valid.sum() > 50
    sub = values[np.ix_(valid, valid)]
    assert np.allclose(sub, sub.T) and np.allclose(np.diag(sub), 1.0)
    std_bold = nib.load(next(func.glob("*space-MNI152NLin2009aSym_res-2_desc-preproc_bold.nii.gz")))
    assert std_bold.shape[3] == 20 and std_bold.get_data_dtype() == np.float32
    sidecar = json.loads(next(func.glob("*desc-preproc_bold.json")).read_text())
    assert sidecar["SliceTimingCorrected"] is True and "RegistrationNote" in sidecar
    assert sidecar["SusceptibilityDistortionCorrection"].startswith("phase-difference")
    # the field map on the BOLD grid: a few tens of Hz in the brain, shifts of ~1 voxel
    sdc_dir = next((tmp_path / "work").rglob("fieldmap_sdc"))
    field = nib.load(sdc_dir / "fieldmap_hz.nii.gz").get_fdata()
    vsm = nib.load(sdc_dir / "vsm.nii.gz").get_fdata()
    mask = nib.load(next(func.glob("*desc-hmc_boldref.nii.gz"))).get_fdata() > 0
    assert 2.0 < np.percentile(np.abs(field[mask]), 95) < 250.0
    assert np.percentile(np.abs(vsm[mask]), 95) < 6.0
    confounds = pd.read_csv(func / "sub-02_task-fa_desc-confounds_timeseries.tsv", sep="\t",
                            na_values="n/a")
    assert len(confounds) == 20 and "framewise_displacement" in confounds
    assert (out / "sub-02" / "figures").is_dir()
