"""Benchmark the anatomical workflow on one ds-real-mini subject.

Usage: python benchmarks/bench_anat.py --subject 02 --work /tmp/bench_anat_02
Prints wall time per node, the total CPU time and peak memory (ru_maxrss of this
process and children). CPU time is the figure to compare when other jobs share the
machine: wall time then overstates the cost.
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

import pandas as pd  # noqa: E402

from tests.conftest import shared_data_dir  # noqa: E402
from workflows.anat.workflow import init_anat_wf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subject", default="02")
    parser.add_argument("--work", default="/tmp/bench_anat")
    parser.add_argument("--atlas", default="DesikanKilliany")
    parser.add_argument("--thickness-method", default="laplace", choices=["laplace", "direct"])
    args = parser.parse_args()
    t1w = shared_data_dir() / "ds-real-mini" / f"sub-{args.subject}" / "anat" / \
        f"sub-{args.subject}_T1w.nii.gz"
    work = Path(args.work)
    wf = init_anat_wf(t1w_files=[str(t1w)], output_dir=str(work / "out"), atlases=[args.atlas],
                      template_resolution=2, thickness_method=args.thickness_method)
    wf.base_dir = str(work / "work")
    start = time.time()
    graph = wf.run(plugin="Linear")
    total = time.time() - start
    for node in graph.nodes():
        runtime = node.result.runtime
        items = runtime if isinstance(runtime, list) else [runtime]
        secs = sum(getattr(r, "duration", 0) or 0 for r in items)
        print(f"{node.name:24s} {secs:8.1f} s")
    print(f"{'TOTAL':24s} {total:8.1f} s")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{'CPU (user+sys)':24s} {usage.ru_utime + usage.ru_stime:8.1f} s")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"peak RSS {peak:.0f} MB")
    out = work / "out" / f"sub-{args.subject}" / "anat"
    print(pd.read_csv(out / f"sub-{args.subject}_desc-brain_morph.tsv", sep="\t").T)


if __name__ == "__main__":
    main()
