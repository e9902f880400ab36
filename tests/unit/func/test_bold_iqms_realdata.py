"""BOLD IQMs of every real BOLD run in ds-real-mini within MRIQC's published ranges (slow).

Bounds: envelopes (about the 1st-99th percentiles, read from the figures and rounded
outwards) of the BOLD IQM distributions in Esteban et al. 2019, "Crowdsourced MRI quality
metrics and expert quality annotations for training of humans and machines", Sci Data
6:30 (doi:10.1038/s41597-019-0035-4; the MRIQC Web-API database). sub-01 is a 156-volume
3 T Philips run, sub-02 a 20-volume multiband-3 Siemens Prisma run (the short multiband
case: temporal IQMs get a note). ``fwhm_avg`` depends on the voxel size: bounded in voxels.
"""

import json

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.func.confounds import framewise_displacement
from brainscale.workflows.func.iqms import compute_bold_iqms
from brainscale.workflows.func.motion import estimate_head_motion
from brainscale.workflows.func.reference import (
    compute_bold_mask,
    compute_boldref,
    detect_nonsteady_states,
)
from brainscale.workflows.func.resample import fill_grid, grid_points, resample_series

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

BOLD_RANGES = {
    "tsnr": (5.0, 150.0),
    "dvars_std": (0.8, 3.0),
    "dvars_vstd": (0.7, 2.0),
    "fd_mean": (0.0, 1.0),
    "gcor": (0.0, 0.4),
    "aor": (0.0, 0.1),
    "aqi": (0.0, 0.1),
    "gsr_x": (-0.15, 0.3),
    "gsr_y": (-0.15, 0.3),
    "efc": (0.3, 0.8),
    "snr": (1.0, 15.0),
}
FWHM_VOXELS = (1.0, 3.0)
RUNS = [("01", "oneback"), ("02", "fa")]


@pytest.mark.parametrize(("sub", "task"), RUNS)
def test_bold_iqms_in_published_ranges(ds_real_mini, sub, task):
    bold = ds_real_mini / f"sub-{sub}" / "func" / f"sub-{sub}_task-{task}_bold.nii.gz"
    img = nib.load(bold)
    data = np.asarray(img.dataobj, dtype=np.float32)
    n_dummy = detect_nonsteady_states(data)
    ref = compute_boldref(data, n_dummy)
    mask = np.asarray(compute_bold_mask(nib.Nifti1Image(ref, img.affine)).dataobj) > 0
    params, matrices = estimate_head_motion(data, img.affine, ref, mask)
    corrected = fill_grid(resample_series(data, img.affine, grid_points(ref.shape, img.affine),
                                          matrices), ref.shape, None)
    zooms = img.header.get_zooms()[:3]
    iqms = compute_bold_iqms(corrected, mask, data[..., n_dummy:].mean(axis=-1), mask, zooms,
                             framewise_displacement(params), n_dummy)
    print(sub, json.dumps({k: iqms[k] for k in [*BOLD_RANGES, "fwhm_avg", "dummy_trs",
                                                "outlier_volumes"]}))
    for metric, (low, high) in BOLD_RANGES.items():
        assert low <= iqms[metric] <= high, (sub, metric, iqms[metric])
    assert FWHM_VOXELS[0] <= iqms["fwhm_avg"] / min(zooms) <= FWHM_VOXELS[1]
    assert iqms["outlier_volumes_perc"] <= 10  # cooperative volunteers
    short = iqms["size_t"] - n_dummy < 50
    assert short == any("imprecise" in n for n in iqms["notes"])
