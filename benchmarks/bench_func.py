"""Benchmark the functional workflow on ds-real-mini (wall time per node, peak memory).

Usage::

    OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 \
        python benchmarks/bench_func.py --subject 01 --work /tmp/bench_func

The anatomical inputs (T1w, mask, tissue probabilities, T1w->MNI displacement field) are
produced first by a quick stand-in (T1w at 1.5 mm, ANTs SyN to the 2 mm template) in a
child process; that stage is excluded from the functional timing, as the issue asks.
Peak memory is ``ru_maxrss`` of the process running the functional workflow (Linear
plugin, in-process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ds-real-mini"


def prepare_anat(t1w_file: str, out_dir: str, seed: int = 0) -> dict:
    """Stand-in for the anatomical workflow's outputs (not the real anat workflow)."""
    import ants
    import nibabel as nib
    import numpy as np

    from brainscale import resources

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t1w = ants.resample_image(ants.image_read(t1w_file), (1.5, 1.5, 1.5), False, 0)
    t1w = ants.n4_bias_field_correction(t1w)
    ants.image_write(t1w, str(out / "t1w.nii.gz"))
    tpl_path = str(resources.save_resource(resources.get_template(2), out / "tpl.nii.gz"))
    tpl_mask = str(resources.save_resource(resources.get_template_mask(2), out / "tplm.nii.gz"))
    tpl = ants.image_read(tpl_path)
    reg = ants.registration(fixed=tpl, moving=t1w, type_of_transform="SyN", random_seed=seed,
                            reg_iterations=(40, 20, 0))
    warp = ants.apply_transforms(fixed=tpl, moving=t1w, transformlist=reg["fwdtransforms"],
                                 compose=str(out / "anat2std_"))
    mask = ants.apply_transforms(fixed=t1w, moving=ants.image_read(tpl_mask),
                                 transformlist=reg["invtransforms"], whichtoinvert=[True, False],
                                 interpolator="nearestNeighbor")
    ants.image_write(mask, str(out / "t1w_mask.nii.gz"))
    tpms = []
    for label in ("GM", "WM", "CSF"):
        path = resources.save_resource(resources.get_template_probseg(label, 2),
                                       out / f"tpl_{label}.nii.gz")
        prob = ants.apply_transforms(fixed=t1w, moving=ants.image_read(str(path)),
                                     transformlist=reg["invtransforms"],
                                     whichtoinvert=[True, False])
        ants.image_write(prob, str(out / f"t1w_{label}.nii.gz"))
        tpms.append(str(out / f"t1w_{label}.nii.gz"))
    dseg = np.argmax([nib.load(p).get_fdata() for p in tpms], axis=0)
    nib.save(nib.Nifti1Image(dseg.astype(np.uint8), nib.load(tpms[0]).affine),
             out / "t1w_dseg.nii.gz")
    return {"t1w_preproc": str(out / "t1w.nii.gz"), "t1w_mask": str(out / "t1w_mask.nii.gz"),
            "t1w_dseg": str(out / "t1w_dseg.nii.gz"), "t1w_tpms": tpms,
            "anat2std_xfm": warp, "std2anat_xfm": warp}


def _prepare_in_child(t1w_file, out_dir, queue):
    queue.put(prepare_anat(t1w_file, out_dir))


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", default="01")
    parser.add_argument("--work", default="/tmp/bench_func")
    parser.add_argument("--strategy", default="36P")
    parser.add_argument("--no-anat", action="store_true", help="BOLD-only path")
    args = parser.parse_args()
    work = Path(args.work)
    sub = DATA / f"sub-{args.subject}"
    bold = sorted((sub / "func").glob("*_bold.nii.gz"))[0]
    metadata = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    events = bold.with_name(bold.name.replace("_bold.nii.gz", "_events.tsv"))

    anat = None
    if not args.no_anat:
        start = time.perf_counter()
        anat_json = work / "anat" / "anat.json"
        if anat_json.exists():
            anat = json.loads(anat_json.read_text())
        else:
            queue = multiprocessing.Queue()
            child = multiprocessing.Process(
                target=_prepare_in_child,
                args=(str(next((sub / "anat").glob("*_T1w.nii.gz"))), str(work / "anat"), queue))
            child.start()
            anat = queue.get()
            child.join()
            anat_json.write_text(json.dumps(anat))
        print(f"[excluded] anatomical stand-in: {time.perf_counter() - start:7.1f} s")

    from brainscale.workflows.func.workflow import init_func_wf

    wf = init_func_wf(bold_file=str(bold), metadata=metadata, has_anat=anat is not None,
                      output_dir=str(work / "out"), atlases=["DesikanKilliany"],
                      denoise_strategy=args.strategy,
                      events_file=str(events) if events.exists() else None)
    wf.base_dir = str(work / "wd")
    wf.config["execution"]["crashdump_dir"] = str(work / "crash")
    if anat:
        for key, value in anat.items():
            setattr(wf.get_node("inputnode").inputs, key, value)
    start = time.perf_counter()
    graph = wf.run(plugin="Linear")
    total = time.perf_counter() - start
    rows = []
    for node in graph.nodes():
        duration = getattr(node.result.runtime, "duration", None) if node.result else None
        if isinstance(node.result.runtime, list):
            duration = sum(r.duration for r in node.result.runtime)
        rows.append((node.name, duration or 0.0))
    for name, duration in sorted(rows, key=lambda r: -r[1]):
        if duration >= 0.05:
            print(f"{name:28s} {duration:7.1f} s")
    glm = dict(rows).get("first_level", 0.0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"total wall (all nodes)        {total:7.1f} s")
    print(f"total without first_level GLM {total - glm:7.1f} s")
    print(f"peak memory (ru_maxrss)       {peak_gb:7.2f} GB")
    print(f"cpu threads: OMP={os.environ.get('OMP_NUM_THREADS')}")


if __name__ == "__main__":
    main()
