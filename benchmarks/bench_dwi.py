"""Benchmark the diffusion workflow stage by stage on ds-real-mini (sub-03 by default).

Runs each interface of ``brainscale.workflows.dwi`` in order, exactly as the workflow chains them,
printing wall and CPU time per stage (CPU time is the honest number on a shared
machine), peak memory (ru_maxrss), mean FA in white matter
(FA > 0.25 in the mask), the streamline counts and the connectome size.

Usage::

    OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 \
        python benchmarks/bench_dwi.py [--subject 03] [--atlas DesikanKilliany] [--work DIR]
        [--anat OUT/sub-02/anat]   # with a T1w: tissue maps, CMC stopping, interface seeds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd

from brainscale.resources import TEMPLATE_SPACE
from brainscale.workflows.dwi import interfaces as itf
from brainscale.workflows.dwi import tractography_interfaces as trk_itf

ROOT = Path(__file__).resolve().parents[1]


def _peak_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024**2


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run(stage: str, interface, work: Path, timings: dict):
    cwd = work / stage
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cpu_start = _cpu_seconds()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = interface.run(cwd=str(cwd))
    finally:
        os.chdir(old)
    timings[stage] = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    print(f"{stage:<14s} wall {timings[stage]:8.1f} s   cpu {cpu:8.1f} s   "
          f"peak {_peak_gb():.2f} GB", flush=True)
    return result.outputs


def _anat_inputs(anat_dir: Path, subject: str) -> dict[str, object]:
    """RegisterDWI inputs from the anatomical derivatives of one participant."""
    prefix = anat_dir / f"sub-{subject}"
    return {
        "t1w_preproc": f"{prefix}_desc-preproc_T1w.nii.gz",
        "t1w_mask": f"{prefix}_desc-brain_mask.nii.gz",
        "t1w_tpms": [f"{prefix}_label-{t}_probseg.nii.gz" for t in ("GM", "WM", "CSF")],
        "std2anat_xfm": f"{prefix}_from-{TEMPLATE_SPACE}_to-T1w_mode-image_xfm.nii.gz",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/ds-real-mini"))
    parser.add_argument("--subject", default="03")
    parser.add_argument("--atlas", default="DesikanKilliany")
    parser.add_argument(
        "--anat",
        default=None,
        metavar="DIR",
        help="anatomical derivatives (sub-<label>/anat of an anat run): use the "
        "T1w, its tissue maps and template transform, as the workflow does "
        "when a T1w exists (default: none, as for sub-03)",
    )
    parser.add_argument("--work", default=None)
    parser.add_argument(
        "--nprocs", type=int, default=2, help="processes of denoising, motion correction, tracking"
    )
    parser.add_argument(
        "--reuse-denoised",
        default=None,
        metavar="DIR",
        help="reuse denoise_<k>/ outputs of an earlier run in DIR",
    )
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_dwi_"))
    dwi = sorted((Path(args.data) / f"sub-{args.subject}" / "dwi").glob("*_dwi.nii.gz"))
    if not dwi:
        print(f"no DWI for sub-{args.subject} in {args.data}", file=sys.stderr)
        return 1
    meta = [json.loads(Path(str(f).replace(".nii.gz", ".json")).read_text()) for f in dwi]
    print(f"sub-{args.subject}: {[nib.load(f).shape for f in dwi]}, work dir {work}")
    timings: dict[str, float] = {}
    total = time.perf_counter()
    cpu_total = _cpu_seconds()

    denoised = []
    for k, f in enumerate(dwi):
        if args.reuse_denoised:
            prev = Path(args.reuse_denoised) / f"denoise_{k}"
            denoised.append(SimpleNamespace(**{
                key: str(prev / f"dwi_denoised{ext}")
                for key, ext in (("out_file", ".nii.gz"), ("out_bval", ".bval"),
                                 ("out_bvec", ".bvec"))}))
            print(f"denoise_{k}: reused from {prev}")
            continue
        out = _run(
            f"denoise_{k}",
            itf.DenoiseDWI(
                in_file=str(f),
                bval_file=str(f).replace(".nii.gz", ".bval"),
                bvec_file=str(f).replace(".nii.gz", ".bvec"),
                n_jobs=args.nprocs,
            ),
            work,
            timings,
        )
        denoised.append(out)
    sdc = _run("sdc_combine", itf.CorrectDistortionAndCombine(
        in_files=[d.out_file for d in denoised], bval_files=[d.out_bval for d in denoised],
        bvec_files=[d.out_bvec for d in denoised], metadata=meta,
        series_names=[f.name for f in dwi]), work, timings)
    print("   ", sdc.sdc_meta)
    hmc = _run("hmc", itf.CorrectMotion(in_file=sdc.out_file, bval_file=sdc.out_bval,
                                        bvec_file=sdc.out_bvec, n_jobs=args.nprocs), work, timings)
    fd = pd.read_csv(hmc.motion_file, sep="\t")["framewise_displacement"]
    print(f"    mean FD {np.nanmean(fd.replace('n/a', np.nan).astype(float)):.3f} mm")
    ref = _run("reference", itf.DWIReference(in_file=hmc.out_file, bval_file=hmc.out_bval,
                                             bvec_file=hmc.out_bvec), work, timings)
    tensor = _run("tensor", itf.FitTensorMaps(in_file=ref.out_file, bval_file=hmc.out_bval,
                                              bvec_file=hmc.out_bvec, mask_file=ref.mask_file),
                  work, timings)
    res = _run("resources", itf.TemplateAtlasResources(atlas_names=[args.atlas]), work, timings)
    anat = _anat_inputs(Path(args.anat), args.subject) if args.anat else {}
    reg = _run(
        "register",
        itf.RegisterDWI(
            b0_file=ref.b0_file,
            mask_file=ref.mask_file,
            atlas_names=[args.atlas],
            atlas_files=res.atlas_files,
            template_file=res.template_file,
            template_mask=res.template_mask,
            **anat,
        ),
        work,
        timings,
    )
    trk = _run(
        "tractography",
        trk_itf.Tractography(
            in_file=ref.out_file,
            bval_file=hmc.out_bval,
            bvec_file=hmc.out_bvec,
            mask_file=ref.mask_file,
            fa_file=tensor.fa_file,
            n_jobs=args.nprocs,
            **({"tpms_dwi": reg.tpms_dwi} if anat else {}),
        ),
        work,
        timings,
    )
    con = _run(
        "connectome",
        trk_itf.BuildConnectomes(
            trx_file=trk.trx_files[-1],
            fa_file=tensor.fa_file,
            atlas_names=[args.atlas],
            atlas_dwi=reg.atlas_dwi,
            region_tables=res.region_tables,
        ),
        work,
        timings,
    )
    _run(
        "figures",
        trk_itf.DWIReportFigures(
            fa_file=tensor.fa_file,
            mask_file=ref.mask_file,
            colorfa_file=tensor.colorfa_file,
            motion_file=hmc.motion_file,
            trx_file=trk.trx_files[-1],
            relmat_file=con.relmat_files[0],
        ),
        work,
        timings,
    )
    total = time.perf_counter() - total
    cpu_total = _cpu_seconds() - cpu_total

    fa = nib.load(tensor.fa_file).get_fdata()
    mask = nib.load(ref.mask_file).get_fdata() > 0
    wm = mask & (fa > 0.25)
    count = pd.read_csv(con.relmat_files[0], sep="\t").drop(columns="node").to_numpy()
    print(f"mean FA in WM (FA>0.25 in mask): {fa[wm].mean():.3f} over {wm.sum()} voxels")
    for meta_k in trk.trx_meta:
        model = f"{meta_k['OrientationModel']} order {meta_k['SHOrder']}"
        print(
            f"    {meta_k['Algorithm']}: {meta_k['StreamlineCount']} streamlines from "
            f"{meta_k['SeedCount']} seeds ({model}; {meta_k['SeedingRegion']})"
        )
    print(
        f"connectome {count.shape[0]} regions, {int((count > 0).sum() // 2)} connected pairs, "
        f"{int(count.sum() // 2)} streamlines between regions"
    )
    print(f"TOTAL wall {total:.1f} s, cpu {cpu_total:.1f} s, peak memory {_peak_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
