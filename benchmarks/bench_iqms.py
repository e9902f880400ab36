"""What the image quality metrics add to a participant's run time.

Reads a participant-level work directory (``-w``) after a run: every node's recorded
duration (Nipype's ``result_*.pklz``), the IQM nodes' (``t1w_iqms``, ``bold_iqms``,
``dwi_iqms``) and their share of the participant's total. With ``--recompute`` the IQM
interfaces are run again on the cached inputs of a run made before the IQM nodes existed,
timed with process CPU time and peak memory.

    python benchmarks/bench_iqms.py WORK_DIR [--recompute BIDS_DIR]

The limit in issue 15 is 10 % of a participant's run time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from nipype.utils.filemanip import loadpkl

IQM_NODES = ("t1w_iqms", "bold_iqms", "dwi_iqms")


def node_durations(participant_wf: Path) -> dict[str, float]:
    """Return ``{node path: duration (s)}`` of every finished node of a participant."""
    durations = {}
    for result in participant_wf.rglob("result_*.pklz"):
        try:
            runtime = loadpkl(result).runtime
        except Exception:  # noqa: BLE001 - a half-written or foreign pickle: skip it
            continue
        runtimes = runtime if isinstance(runtime, list) else [runtime]
        total = sum(float(getattr(r, "duration", 0) or 0) for r in runtimes if r is not None)
        durations[str(result.parent.relative_to(participant_wf))] = total
    return durations


def _recompute(participant_wf: Path, bids_dir: Path, subject: str) -> dict[str, tuple]:
    """Run the IQM interfaces on a finished run's cached inputs: (wall s, CPU s)."""
    from brainscale.workflows.qc_interfaces import BoldIQMs, DwiIQMs, T1wIQMs

    out, cwd = {}, Path.cwd()
    anat = participant_wf / "anat_wf"
    jobs = []
    if (anat / "segment").is_dir():
        seg = loadpkl(anat / "segment" / "result_segment.pklz").outputs
        jobs.append(("anat_wf/t1w_iqms", T1wIQMs(
            raw_file=loadpkl(anat / "conform" / "result_conform.pklz").outputs.out_file,
            corrected_file=loadpkl(anat / "bias_correct" / "result_bias_correct.pklz")
            .outputs.out_file, mask_file=seg.mask, tpm_files=seg.tpms,
            source_file=f"sub-{subject}_T1w.nii.gz")))
    for func in sorted(participant_wf.glob("func_*_wf")):
        ref = loadpkl(func / "bold_reference" / "result_bold_reference.pklz")
        series_node = "resample_t1w" if (func / "resample_t1w").is_dir() else "resample_std"
        series = loadpkl(func / series_node / f"result_{series_node}.pklz").outputs
        confounds = loadpkl(func / "confounds" / "result_confounds.pklz").outputs
        jobs.append((f"{func.name}/bold_iqms", BoldIQMs(
            bold_file=ref.inputs["bold_file"], boldref_mask_file=ref.outputs.bold_mask_file,
            series_file=series.out_file, series_mask_file=series.mask_file,
            confounds_file=confounds.confounds_file, n_nonsteady=ref.outputs.n_nonsteady)))
    for dwi in sorted(participant_wf.glob("dwi_*_wf")):
        hmc = loadpkl(dwi / "hmc" / "result_hmc.pklz").outputs
        series = loadpkl(dwi / "denoise" / "result_denoise.pklz").inputs  # one per raw series
        ref = loadpkl(dwi / "dwi_reference" / "result_dwi_reference.pklz").outputs
        tensor = loadpkl(dwi / "tensor" / "result_tensor.pklz").outputs
        extra = {}
        register = dwi / "register" / "result_register.pklz"
        if register.is_file() and loadpkl(register).outputs.tpms_dwi:
            extra["tpm_files"] = loadpkl(register).outputs.tpms_dwi
        jobs.append((f"{dwi.name}/dwi_iqms", DwiIQMs(
            in_file=ref.out_file, bval_file=hmc.out_bval, bvec_file=hmc.out_bvec,
            raw_files=[s["in_file"] for s in series], raw_bval_files=[s["bval_file"] for s in
                                                                         series],
            raw_bvec_files=[s["bvec_file"] for s in series],
            mask_file=ref.mask_file, map_files=tensor.map_files, motion_file=hmc.motion_file,
            source_file=[str(bids_dir)], **extra)))
    import os

    for name, interface in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            interface.run()
            out[name] = (time.perf_counter() - wall0, time.process_time() - cpu0)
            os.chdir(cwd)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--recompute", metavar="BIDS_DIR", type=Path)
    args = parser.parse_args(argv)
    for participant_wf in sorted(args.work_dir.glob("sub-*/sub_*_wf")):
        subject = participant_wf.name.split("_")[1]
        durations = node_durations(participant_wf)
        iqm = {k: v for k, v in durations.items() if k.rsplit("/", 1)[-1] in IQM_NODES}
        total = sum(durations.values())
        if args.recompute:
            try:
                recomputed = _recompute(participant_wf, args.recompute, subject)
            except (OSError, AttributeError) as err:  # a participant whose run did not finish
                print(f"sub-{subject}: not recomputed ({err})")
                recomputed = {}
            for name, (wall, cpu) in recomputed.items():
                print(f"sub-{subject} {name}: recomputed wall {wall:.1f} s, CPU {cpu:.1f} s")
                if name not in iqm:
                    iqm[name] = wall
                    total += wall
        for name, seconds in sorted(iqm.items()):
            print(f"sub-{subject} {name}: {seconds:.1f} s")
        share = 100 * sum(iqm.values()) / total if total else float("nan")
        print(f"sub-{subject}: nodes {total:.0f} s, IQMs {sum(iqm.values()):.1f} s "
              f"({share:.1f} % of the participant)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
