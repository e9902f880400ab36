"""Benchmark decoding and dynamic FC on ds-real-mini sub-01 (time per step, peak memory).

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_brain_states.py

Steps: BOLD reference, head motion and affine registration to the template (cached in
``$BRAINSCALE_CACHE`` or /tmp/bs_cache after the first run; the participant workflow does
these anyway), ventral temporal parcel and voxel series, LSS trial patterns, every
classifier's cross-validation with its permutation test (the defaults of
``--decode-conditions``: linsvm, logreg with 100 permutations, rf with 20), the sequence
model, and dynamic FC of the run's 83 Desikan-Killiany parcels (windows, k-means).
CPU seconds are printed beside wall seconds: on a shared machine they are the honest cost.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ds-real-mini"
sys.path.insert(0, str(ROOT))


@contextmanager
def step(name: str):
    """Print the wall and CPU time of a step."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    print(f"{name:<44s} wall {time.perf_counter() - wall:7.2f} s   "
          f"cpu {time.process_time() - cpu:7.2f} s", flush=True)


def main() -> None:
    """Run the steps and print their times and the peak memory."""
    import nibabel as nib
    import numpy as np

    from brainscale.resources import get_atlas
    from brainscale.workflows.func import dynamic_connectivity as dfc
    from brainscale.workflows.func.decoding_analysis import RunData, decode_runs
    from brainscale.workflows.func.decoding_features import (
        VENTRAL_TEMPORAL_REGIONS,
        atlas_on_native_grid,
        select_regions,
    )
    from brainscale.workflows.func.denoise import denoise_timeseries
    from brainscale.workflows.func.glm import read_events
    from tests.unit.func.test_decoding_realdata import oneback_registration

    func = DATA / "sub-01" / "func"
    total = time.perf_counter()
    with step("load BOLD (80x80x35x156)"):
        bold = nib.load(func / "sub-01_task-oneback_bold.nii.gz")
        data = np.asarray(bold.dataobj, dtype=np.float32)
    with step("reference + motion + registration (cached)"):
        prep = oneback_registration(bold, data)
    atlas = get_atlas("DesikanKilliany")
    with step("atlas on the BOLD grid, parcel series"):
        labels = atlas_on_native_grid(atlas.load(), bold.shape, bold.affine, prep["M"])
        regions = select_regions(atlas.labels, list(VENTRAL_TEMPORAL_REGIONS))
        inside = [(labels == i) & prep["mask"] for i in regions["index"]]
        parcels = np.column_stack([data[m].mean(axis=0) for m in inside])
        voxels = data[np.any(inside, axis=0)].T.astype(float)
        all_parcels = np.column_stack([data[(labels == i) & prep["mask"]].mean(axis=0)
                                       for i in atlas.labels["index"]
                                       if ((labels == i) & prep["mask"]).any()])
    events = read_events(func / "sub-01_task-oneback_events.tsv")
    motion, n0 = prep["params"], int(prep["n0"])
    for space, series in (("parcels", parcels), ("voxels", voxels)):
        run = RunData(series, events, 2.0, motion, n0)
        names = [f"f{k}" for k in range(series.shape[1])]
        with step(f"decode {space} ({series.shape[1]}) defaults, total"):
            for model in ("linsvm", "logreg", "rf"):
                start = time.process_time()
                analysis = decode_runs([run], feature_names=names, models=(model,),
                                       n_permutations=100, seed=0)
                r = analysis.results[0]
                print(f"  {model:<8s} balanced accuracy {r.balanced_accuracy:.3f} "
                      f"p={r.p_value:.3f} ({r.n_permutations} permutations, "
                      f"{len(analysis.folds)} folds)  cpu {time.process_time() - start:.1f} s")
    with step("sequence model (tcn) on the VT parcels"):
        analysis = decode_runs([RunData(parcels, events, 2.0, motion, n0)],
                               feature_names=[f"f{k}" for k in range(parcels.shape[1])],
                               models=("logreg", "tcn"), n_permutations=0, seed=0,
                               device="cpu")
        for r in analysis.results:
            print(f"  {r.model:<8s} balanced accuracy {r.balanced_accuracy:.3f}")
    with step(f"dynamic FC: denoise {all_parcels.shape[1]} parcels (6P)"):
        import pandas as pd

        from brainscale.workflows.func.confounds import cosine_basis, expand_terms
        from brainscale.workflows.func.motion import MOTION_COLUMNS

        table = expand_terms(pd.DataFrame(motion, columns=list(MOTION_COLUMNS)))
        drift = cosine_basis(len(table), 2.0)
        for k in range(drift.shape[1]):
            table[f"cosine_{k:02d}"] = drift[:, k]
        cleaned, _ = denoise_timeseries(all_parcels.astype(float), table, "6P", 2.0)
    with step("dynamic FC: tapered windows (44 s, step 2 s)"):
        _, matrices = dfc.sliding_window_connectivity(cleaned, 2.0)
        edges = dfc.window_edges(matrices)
    with step(f"dynamic FC: k-means, 4 states ({len(edges)} windows)"):
        model = dfc.cluster_states([edges], n_states=4, seed=0)
        dfc.state_metrics(model.sequences[0], 4, 2.0)
    print(f"{'total':<44s} wall {time.perf_counter() - total:7.2f} s")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
