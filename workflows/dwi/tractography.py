"""Whole-brain tractography of a series: orientation model, stopping, seeding, tracking.

With T1w tissue probabilities the streamlines stop by the continuous map criterion and
are seeded at the grey/white-matter interface; without, they stop and are seeded on FA
(:mod:`brainscale.workflows.dwi.tracking`). Both a deterministic and a probabilistic tractogram
are made from one fit of the orientation model (:mod:`brainscale.workflows.dwi.odf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from dipy.tracking.streamline import Streamlines

from brainscale.workflows.dwi.odf import fit_orientation_model
from brainscale.workflows.dwi.tracking import (
    fa_stopping_criterion,
    seed_points,
    seeding_regions,
    tissue_stopping_criterion,
    track,
)

TRACTOGRAM_DESCS = {"deterministic": "det", "probabilistic": "prob"}
"""``desc-`` label of the tractogram of each tracker, in the order they are made."""


@dataclass
class Tractogram:
    """Streamlines of one tracker and their sidecar."""

    desc: str
    streamlines: Streamlines
    meta: dict


def reconstruct_tractograms(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    fa: np.ndarray,
    affine: np.ndarray,
    voxel_mm: float,
    tpms: Sequence[np.ndarray] | None = None,
    *,
    seed_density: int = 1,
    step_size: float = 1.0,
    max_angle: float = 30.0,
    fa_threshold: float = 0.15,
    seed: int = 0,
    n_jobs: int = 1,
) -> list[Tractogram]:
    """Fit CSD/CSA and track deterministic and probabilistic streamlines.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, n)
        Preprocessed diffusion series (float32).
    bvals, bvecs : ndarray
        b-values ``(n,)`` and voxel-frame b-vectors ``(n, 3)``.
    mask : ndarray of bool, shape (x, y, z)
        Brain mask.
    fa : ndarray, shape (x, y, z)
        Fractional anisotropy.
    affine : ndarray, shape (4, 4)
        Voxel-to-world matrix of the series (streamlines are in its RAS mm).
    voxel_mm : float
        Mean voxel size (mm), for the step of the tissue criterion.
    tpms : sequence of three ndarray, optional
        [GM, WM, CSF] probabilities on the diffusion grid; ``None`` stops on FA.
    seed_density : int
        Seeds per voxel along each axis.
    step_size : float
        Tracking step (mm).
    max_angle : float
        Largest turn between steps (degrees).
    fa_threshold : float
        FA stopping threshold (without tissue maps).
    seed : int
        Random seed of the probabilistic tracker.
    n_jobs : int
        Processes of the model fit and of the tracking.

    Returns
    -------
    list of Tractogram
        ``det`` then ``prob``, with the parameters of each in its sidecar.
    """
    model = fit_orientation_model(data, bvals, bvecs, mask, fa, n_jobs=n_jobs)
    if tpms is not None:
        gm, wm, csf = tpms
        stopping = tissue_stopping_criterion(
            wm * mask, gm * mask, csf * mask, step_size=step_size, voxel_size=voxel_mm
        )
        stop_desc = "continuous map criterion on T1w tissue probabilities (CMC)"
        regions = seeding_regions(mask, wm=wm, gm=gm)
    else:
        stopping = fa_stopping_criterion(fa * mask, fa_threshold)
        stop_desc = f"FA < {fa_threshold}"
        regions = seeding_regions(mask, fa=fa)
    tractograms = []
    for tracker, desc in TRACTOGRAM_DESCS.items():
        seed_mask, seed_desc = regions[tracker]
        seeds = seed_points(seed_mask, affine, seed_density)
        lines = track(
            model.shm_coeff,
            stopping,
            seeds,
            affine,
            tracker=tracker,
            step_size=step_size,
            max_angle=max_angle,
            seed=seed,
            n_jobs=n_jobs,
        )
        meta = {
            "Algorithm": f"dipy LocalTracking, {tracker} direction getter",
            "OrientationModel": model.method.upper(),
            "SHOrder": model.sh_order,
            "Shell": model.shell,
            "SeedCount": int(len(seeds)),
            "SeedingRegion": seed_desc,
            "SeedDensityPerAxis": seed_density,
            "StoppingCriterion": stop_desc,
            "StepSizeMM": step_size,
            "MaxAngleDeg": max_angle,
            "StreamlineCount": int(len(lines)),
            "RandomSeed": seed,
            "Space": "diffusion (RAS mm of the reference image)",
        }
        tractograms.append(Tractogram(desc, lines, meta))
    return tractograms
