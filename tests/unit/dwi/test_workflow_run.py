"""Run the whole diffusion workflow on a phantom with fake anatomical inputs (slow)."""

import json

import ants
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from brainscale.workflows.dwi.gradients import voxel_to_fsl_bvecs
from brainscale.workflows.dwi.workflow import init_dwi_wf

from .conftest import REGIONS, fa_md, make_phantom

pytestmark = pytest.mark.slow
ATLAS = "DesikanKilliany"


def _write_series(folder, stem, phantom, noise_seed):
    rng = np.random.default_rng(noise_seed)
    sigma = 800.0 / 40.0
    noisy = np.sqrt((phantom.data + rng.normal(0, sigma, phantom.data.shape)) ** 2
                    + rng.normal(0, sigma, phantom.data.shape) ** 2)
    nib.save(nib.Nifti1Image(noisy.astype(np.float32), phantom.affine), folder / f"{stem}.nii.gz")
    np.savetxt(folder / f"{stem}.bval", phantom.bvals[None], fmt="%g")
    np.savetxt(folder / f"{stem}.bvec", voxel_to_fsl_bvecs(phantom.bvecs, phantom.affine).T,
               fmt="%.6f")
    return str(folder / f"{stem}.nii.gz")


def test_workflow_writes_every_derivative(tmp_path):
    phantom = make_phantom(shape=(28, 28, 20), n_dirs=30, bval=1000.0)
    raw = tmp_path / "raw" / "sub-phantom" / "dwi"
    raw.mkdir(parents=True)
    files = [_write_series(raw, "sub-phantom_dir-AP_dwi", phantom, 1),
             _write_series(raw, "sub-phantom_dir-PA_dwi", phantom, 2)]
    meta = [{"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.05},
            {"PhaseEncodingDirection": "j", "TotalReadoutTime": 0.05}]
    anat = tmp_path / "anat"
    anat.mkdir()
    t1w = anat / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(phantom.s0.astype(np.float32), phantom.affine), t1w)
    nib.save(nib.Nifti1Image(phantom.mask.astype(np.uint8), phantom.affine), anat / "mask.nii.gz")
    wm = np.isin(phantom.region, [1, 2, 3]).astype(np.float32)
    tpms = []
    for label, arr in (("GM", (phantom.region == 4) * 1.0), ("WM", wm),
                       ("CSF", np.zeros_like(wm))):
        tpms.append(str(anat / f"{label}.nii.gz"))
        nib.save(nib.Nifti1Image(arr.astype(np.float32), phantom.affine), tpms[-1])
    identity = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    ants.write_transform(identity, str(anat / "identity.mat"))

    out = tmp_path / "derivatives"
    wf = init_dwi_wf(dwi_files=files, bval_files=[f.replace(".nii.gz", ".bval") for f in files],
                     bvec_files=[f.replace(".nii.gz", ".bvec") for f in files], metadata=meta,
                     has_anat=True, output_dir=str(out), atlases=[ATLAS])
    wf.inputs.inputnode.t1w_preproc = str(t1w)
    wf.inputs.inputnode.t1w_mask = str(anat / "mask.nii.gz")
    wf.inputs.inputnode.t1w_tpms = tpms
    wf.inputs.inputnode.std2anat_xfm = str(anat / "identity.mat")
    wf.base_dir = str(tmp_path / "work")
    wf.run(plugin="Linear")

    dwi_dir = out / "sub-phantom" / "dwi"
    prefix = "sub-phantom"  # dir- is dropped: the two series were combined
    preproc = nib.load(dwi_dir / f"{prefix}_desc-preproc_dwi.nii.gz")
    assert preproc.shape[-1] == 2 * len(phantom.bvals)
    bvals = np.loadtxt(dwi_dir / f"{prefix}_desc-preproc_dwi.bval")
    bvecs = np.loadtxt(dwi_dir / f"{prefix}_desc-preproc_dwi.bvec")
    assert bvals.size == bvecs.shape[1] == preproc.shape[-1]
    sidecar = json.loads((dwi_dir / f"{prefix}_desc-preproc_dwi.json").read_text())
    assert "reversed phase-encoding" in sidecar["SusceptibilityDistortionCorrection"]
    assert sidecar["Sources"] == files  # both raw series (outside a BIDS root: paths)
    assert sidecar["PhaseEncodingPair"] == ["sub-phantom_dir-PA_dwi.nii.gz",
                                            "sub-phantom_dir-AP_dwi.nii.gz"]  # j, then j-

    # FA and MD of the full pipeline against the simulated tensors
    fa = nib.load(dwi_dir / f"{prefix}_model-tensor_param-fa_dwimap.nii.gz").get_fdata()
    md = nib.load(dwi_dir / f"{prefix}_model-tensor_param-md_dwimap.nii.gz").get_fdata()
    for code, (_, evals) in REGIONS.items():
        roi = ndimage.binary_erosion(phantom.region == code, iterations=1)
        fa_true, md_true = fa_md(evals)
        assert abs(np.median(fa[roi]) - fa_true) < 0.05, code
        assert abs(np.median(md[roi]) - md_true) < 0.08 * md_true, code
    for param in ("ad", "rd", "colorfa"):
        assert (dwi_dir / f"{prefix}_model-tensor_param-{param}_dwimap.nii.gz").exists()

    trx_meta = {}
    for desc in ("det", "prob"):
        trx_meta[desc] = json.loads(
            (dwi_dir / f"{prefix}_desc-{desc}_tractography.json").read_text())
        assert trx_meta[desc]["SeedCount"] > 0 and trx_meta[desc]["StreamlineCount"] > 0
        assert "CMC" in trx_meta[desc]["StoppingCriterion"]
    # with tissue maps, probabilistic seeds lie on the GM/WM interface, a part of the WM
    assert "interface" in trx_meta["prob"]["SeedingRegion"]
    assert trx_meta["prob"]["SeedCount"] < trx_meta["det"]["SeedCount"]
    for meas in ("count", "countnorm", "meanlength", "meanfa"):
        frame = pd.read_csv(dwi_dir / f"{prefix}_atlas-{ATLAS}_meas-{meas}_relmat.tsv", sep="\t")
        assert frame.columns[0] == "node"
        assert list(frame["node"]) == list(frame.columns[1:])
        values = frame.drop(columns="node").to_numpy()
        np.testing.assert_allclose(values, values.T)
        assert (values >= 0).all()
    confounds = pd.read_csv(dwi_dir / f"{prefix}_desc-confounds_timeseries.tsv", sep="\t")
    assert len(confounds) == preproc.shape[-1]
    assert (dwi_dir / f"{prefix}_from-dwi_to-T1w_mode-image_xfm.mat").exists()
    figures = sorted(p.name for p in (out / "sub-phantom" / "figures").glob("*.png"))
    assert len(figures) == 5, figures
