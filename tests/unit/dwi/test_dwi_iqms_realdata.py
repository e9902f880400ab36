"""DWI IQMs of every real diffusion series in ds-real-mini within published ranges (slow).

sub-02: Siemens Prisma, b0 + 20 x b2500 per phase-encoding direction (AP, PA); sub-03:
Siemens TrioTim, 2 x b0 + 40 x b1000. Bounds: adult white-matter FA (median of voxels
with FA > 0.2) 0.3-0.65 and MD 0.5-1.0 x 10^-3 mm^2/s (Lebel et al. 2012, NeuroImage
60:340; MD falls at b = 2500, Jensen et al. 2005); eddy QUAD per-shell CNR of adult data
0.5-10 (Bastiani et al. 2019, NeuroImage 184:801); volunteers: under 20 % bad volumes.
``fd_mean`` is the head-motion FD of the rigid part of each transform (eddy scaling,
shears and gradient-linear PE offset removed, :mod:`brainscale.workflows.dwi.rigid_eddy`);
it is printed, with the eddy terms, but not bounded: no published DWI FD distribution is
cited here.
"""

import json

import numpy as np
import pytest

from brainscale.workflows.dwi.interfaces import load_series, voxel_size
from brainscale.workflows.dwi.iqms import compute_dwi_iqms
from brainscale.workflows.dwi.motion import correct_motion
from brainscale.workflows.dwi.reference import brain_mask, mean_b0
from brainscale.workflows.dwi.rigid_eddy import common_pe_axis
from brainscale.workflows.dwi.tensor import fit_tensor

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

DWI_RANGES = {
    "summary_fa_median": (0.3, 0.65),
    "summary_md_median": (0.5e-3, 1.0e-3),
    "bad_volumes_frac": (0.0, 0.2),
    "fa_degenerate": (0.0, 0.2),
}
CNR_RANGE = (0.5, 10.0)
SERIES = [("02", "sub-02_dir-AP_dwi"), ("02", "sub-02_dir-PA_dwi"), ("03", None)]


@pytest.mark.parametrize(("sub", "stem"), SERIES)
def test_dwi_iqms_in_published_ranges(ds_real_mini, sub, stem):
    folder = ds_real_mini / f"sub-{sub}" / "dwi"
    stem = stem or sorted(folder.glob("*_dwi.nii.gz"))[0].name[: -len(".nii.gz")]
    img, bvals, bvecs = load_series(str(folder / f"{stem}.nii.gz"), str(folder / f"{stem}.bval"),
                                    str(folder / f"{stem}.bvec"))
    raw = np.asarray(img.dataobj, dtype=np.float32)
    mask = brain_mask(mean_b0(raw, bvals))
    meta = json.loads((folder / f"{stem}.json").read_text())
    corrected, rotated, motion = correct_motion(raw, bvals, bvecs, voxel_size(img), mask=mask,
                                                pe_axis=common_pe_axis([meta]))
    eddy = motion[["eddy_offset", "eddy_x", "eddy_y", "eddy_z", "eddy_residual"]]
    print(stem, "FD mean", motion["framewise_displacement"].mean(), "max |eddy|",
          eddy.abs().max().to_dict())
    maps = fit_tensor(corrected, bvals, rotated, mask)
    iqms = compute_dwi_iqms(corrected, bvals, rotated, mask, maps["fa"], maps["md"],
                            motion["framewise_displacement"].to_numpy(), raw=raw,
                            raw_bvals=bvals, raw_bvecs=bvecs)
    print(stem, json.dumps({k: v for k, v in iqms.items() if k != "dropout_slices"}))
    for metric, (low, high) in DWI_RANGES.items():
        assert low <= iqms[metric] <= high, (stem, metric, iqms[metric])
    shells = [k for k in iqms if k.startswith("cnr_b")]
    assert shells == [f"cnr_b{2500 if sub == '02' else 1000}"]
    assert CNR_RANGE[0] <= iqms[shells[0]] <= CNR_RANGE[1]
