"""Benchmark the anatomical workflow on one real T1w, and its normalization against plain SyN.

Usage::

    python benchmarks/bench_anat.py --subject 02 --work /tmp/bench_anat_02
    python benchmarks/bench_anat.py --dataset ds002748-mini --subject 20 --work /tmp/b20

Prints wall time per node, the total CPU time and peak memory (ru_maxrss of this
process and children), the global morphometry row, then normalization quality side by
side for the workflow and for a plain antspyx
``ants.registration(fixed, moving, type_of_transform="SyN")`` of the same brain (the
workflow's bias-corrected T1w inside its brain mask) onto the 1 mm template:

* ``r``: Pearson correlation of the MNI-space T1w with the template inside the
  template brain mask;
* ``Dice GM`` / ``Dice WM``: the participant's GM and WM probabilities warped to MNI,
  thresholded at 0.5, against the template priors thresholded at 0.5;
* wall seconds of the registration (the workflow's whole normalize node, brain
  extraction included; the plain call alone), and the ratios workflow / plain.

CPU time is the figure to compare when other jobs share the machine: wall time then
overstates the cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ants  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from brainscale.workflows.anat.images import ants_registration, to_ants, to_nibabel  # noqa: E402
from brainscale.workflows.anat.interfaces import embedded_template  # noqa: E402
from brainscale.workflows.anat.normalization import apply_displacement  # noqa: E402
from brainscale.workflows.anat.workflow import init_anat_wf  # noqa: E402
from tests.conftest import shared_data_dir  # noqa: E402


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def normalization_quality(std_t1w: nib.Nifti1Image, std_gm: nib.Nifti1Image,
                          std_wm: nib.Nifti1Image) -> dict[str, float]:
    """Return r with the 1 mm template (inside its brain mask) and GM/WM Dice vs its priors."""
    template = embedded_template(1)
    inside = np.asarray(template.brain_mask.dataobj) > 0
    t1w = std_t1w.get_fdata(dtype=np.float32)
    r = float(np.corrcoef(t1w[inside], template.t1w.get_fdata(dtype=np.float32)[inside])[0, 1])
    return {
        "r": r,
        "dice_gm": _dice(std_gm.get_fdata() > 0.5, template.gm.get_fdata() > 0.5),
        "dice_wm": _dice(std_wm.get_fdata() > 0.5, template.wm.get_fdata() > 0.5),
    }


def compare_with_plain_syn(anat: Path, subject: str, normalize_wall: float, seed: int = 0):
    """Print the workflow's normalization quality beside a plain ``type_of_transform="SyN"``."""
    template = embedded_template(1)
    prefix = anat / f"sub-{subject}"
    t1w = nib.load(f"{prefix}_desc-preproc_T1w.nii.gz")
    mask = nib.load(f"{prefix}_desc-brain_mask.nii.gz")
    gm = nib.load(f"{prefix}_label-GM_probseg.nii.gz")
    wm = nib.load(f"{prefix}_label-WM_probseg.nii.gz")
    fwd = str(anat / f"sub-{subject}_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.nii.gz")
    ours = normalization_quality(*(apply_displacement(img, template.t1w, fwd)
                                   for img in (t1w, gm, wm)))
    brain = to_ants(nib.Nifti1Image(t1w.get_fdata(dtype=np.float32) *
                                    (np.asarray(mask.dataobj) > 0), t1w.affine))
    start = time.time()
    plain = ants_registration(to_ants(template.t1w), brain, seed, type_of_transform="SyN",
                              outprefix=str(anat.parent.parent.parent / "plain_syn_"))
    plain_wall = time.time() - start

    def warp(img):
        return to_nibabel(ants.apply_transforms(to_ants(template.t1w), to_ants(img),
                                                plain["fwdtransforms"]))

    theirs = normalization_quality(warp(t1w), warp(gm), warp(wm))
    rows = pd.DataFrame({"workflow": {**ours, "wall_s": normalize_wall},
                         "plain SyN": {**theirs, "wall_s": plain_wall}})
    rows["ratio"] = rows["workflow"] / rows["plain SyN"]
    print("\nNormalization to MNI152NLin2009aSym (1 mm), same brain:")
    print(rows.round(3).to_string())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ds-real-mini")
    parser.add_argument("--subject", default="02")
    parser.add_argument("--work", default="/tmp/bench_anat")
    parser.add_argument("--atlas", default="DesikanKilliany")
    parser.add_argument("--thickness-method", default="surface",
                        choices=["surface", "laplace", "direct"])
    parser.add_argument("--no-compare", action="store_true", help="skip the plain SyN run")
    args = parser.parse_args()
    t1w = shared_data_dir() / args.dataset / f"sub-{args.subject}" / "anat" / \
        f"sub-{args.subject}_T1w.nii.gz"
    work = Path(args.work)
    wf = init_anat_wf(t1w_files=[str(t1w)], output_dir=str(work / "out"), atlases=[args.atlas],
                      template_resolution=1, thickness_method=args.thickness_method)
    wf.base_dir = str(work / "work")
    start = time.time()
    graph = wf.run(plugin="Linear")
    total = time.time() - start
    normalize_wall = float("nan")
    for node in graph.nodes():
        runtime = node.result.runtime
        items = runtime if isinstance(runtime, list) else [runtime]
        secs = sum(getattr(r, "duration", 0) or 0 for r in items)
        if node.name == "normalize":
            normalize_wall = secs
        print(f"{node.name:24s} {secs:8.1f} s")
    print(f"{'TOTAL':24s} {total:8.1f} s")
    print(f"{'CPU (user+sys)':24s} {_cpu():8.1f} s")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"peak RSS {peak:.0f} MB")
    out = work / "out" / f"sub-{args.subject}" / "anat"
    print(pd.read_csv(out / f"sub-{args.subject}_desc-brain_morph.tsv", sep="\t").T)
    if not args.no_compare:
        compare_with_plain_syn(out, args.subject, normalize_wall)


if __name__ == "__main__":
    main()
