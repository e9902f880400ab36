"""Deterministic and probabilistic local tractography (dipy) and TRX output.

The tracker is selected by name (``"deterministic"`` or ``"probabilistic"``), so a GPU
tracker that consumes the same spherical-harmonic coefficients, seeds and stopping maps
can be added as another name without changing the workflow.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from dipy.data import default_sphere
from dipy.direction import DeterministicMaximumDirectionGetter, ProbabilisticDirectionGetter
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.tracking.local_tracking import LocalTracking
from dipy.tracking.stopping_criterion import CmcStoppingCriterion, ThresholdStoppingCriterion
from dipy.tracking.streamline import Streamlines, length
from dipy.tracking.utils import seeds_from_mask
from scipy import ndimage

from brainscale.workflows.dwi.parallel import fork_map

TRACKERS = ("deterministic", "probabilistic")


def fa_stopping_criterion(fa: np.ndarray, threshold: float = 0.15) -> ThresholdStoppingCriterion:
    """Stop streamlines where FA drops below a threshold (used without a T1w).

    Parameters
    ----------
    fa : ndarray, shape (x, y, z)
        Fractional anisotropy.
    threshold : float
        FA threshold.

    Returns
    -------
    ThresholdStoppingCriterion
        The criterion.
    """
    return ThresholdStoppingCriterion(np.asarray(fa, dtype=float), threshold)


def tissue_stopping_criterion(
    wm: np.ndarray, gm: np.ndarray, csf: np.ndarray, *, step_size: float, voxel_size: float
) -> CmcStoppingCriterion:
    """Continuous map criterion on partial-volume tissue maps (Girard et al. 2014).

    Parameters
    ----------
    wm, gm, csf : ndarray, shape (x, y, z)
        Tissue probabilities in diffusion space.
    step_size : float
        Tracking step in mm.
    voxel_size : float
        Mean voxel size in mm.

    Returns
    -------
    CmcStoppingCriterion
        The criterion.
    """
    include = np.asarray(gm, dtype=float)
    exclude = np.asarray(csf, dtype=float)
    background = np.clip(1.0 - (np.asarray(wm, float) + include + exclude), 0.0, 1.0)
    # the background counts as "include": streamlines leaving the brain end validly
    return CmcStoppingCriterion.from_pve(
        np.asarray(wm, float),
        include + background,
        exclude,
        step_size=step_size,
        average_voxel_size=voxel_size,
    )


def gm_wm_interface(wm: np.ndarray, gm: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """White-matter voxels that touch grey matter: the GM/WM interface seeding region.

    Parameters
    ----------
    wm, gm : ndarray, shape (x, y, z)
        White- and grey-matter probabilities in diffusion space.
    threshold : float
        Probability above which a voxel belongs to a tissue.

    Returns
    -------
    ndarray of bool
        Voxels with ``wm > threshold`` that have a ``gm > threshold`` voxel among their
        26 neighbours (or are themselves above the GM threshold too).
    """
    grey = np.asarray(gm, dtype=float) > threshold
    touching = ndimage.binary_dilation(grey, structure=np.ones((3, 3, 3), dtype=bool))
    return (np.asarray(wm, dtype=float) > threshold) & touching


def seeding_regions(
    mask: np.ndarray,
    *,
    fa: np.ndarray | None = None,
    wm: np.ndarray | None = None,
    gm: np.ndarray | None = None,
    fa_threshold: float = 0.25,
) -> dict[str, tuple[np.ndarray, str]]:
    """Seeding region of each tracker, with a description for the sidecar.

    With tissue maps (a T1w), deterministic tracking seeds in the white matter and
    probabilistic tracking at the GM/WM interface (:func:`gm_wm_interface`; the white
    matter when the interface is empty); without them both seed where FA is high.

    Parameters
    ----------
    mask : ndarray of bool, shape (x, y, z)
        Brain mask.
    fa : ndarray, optional
        FA map (used without tissue maps).
    wm, gm : ndarray, optional
        White- and grey-matter probabilities in diffusion space.
    fa_threshold : float
        FA above which a voxel counts as white matter without tissue maps.

    Returns
    -------
    dict
        ``{"deterministic": (seed_mask, description), "probabilistic": (...)}``.
    """
    mask = np.asarray(mask, dtype=bool)
    if wm is None or gm is None:
        if fa is None:
            raise ValueError("seeding needs tissue maps (wm, gm) or an FA map")
        region = (
            mask & (np.asarray(fa) > fa_threshold),
            f"white matter: FA > {fa_threshold} in the brain mask",
        )
        return {"deterministic": region, "probabilistic": region}
    white = (mask & (np.asarray(wm) > 0.5), "white matter (T1w WM probability > 0.5)")
    interface = mask & gm_wm_interface(wm, gm)
    if not interface.any():
        return {"deterministic": white, "probabilistic": white}
    border = (
        interface,
        "GM/WM interface: voxels with T1w WM probability > 0.5 next to a "
        "voxel with GM probability > 0.5 (26-neighbourhood, diffusion space)",
    )
    return {"deterministic": white, "probabilistic": border}


def seed_points(seed_mask: np.ndarray, affine: np.ndarray, density: int = 1) -> np.ndarray:
    """Place ``density**3`` seeds per voxel of a mask, in world (RAS mm) coordinates.

    Parameters
    ----------
    seed_mask : ndarray of bool
        Seeding region.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine.
    density : int
        Seeds per voxel along each axis.

    Returns
    -------
    ndarray, shape (n, 3)
        Seed coordinates.
    """
    return seeds_from_mask(np.asarray(seed_mask, bool), affine, density=(density,) * 3)


def track(
    shm_coeff: np.ndarray,
    stopping,
    seeds: np.ndarray,
    affine: np.ndarray,
    *,
    tracker: str = "deterministic",
    step_size: float = 0.5,
    max_angle: float = 30.0,
    min_length: float = 10.0,
    max_length: float = 250.0,
    seed: int = 0,
    n_jobs: int = 1,
) -> Streamlines:
    """Track streamlines from SH orientation distributions.

    Parameters
    ----------
    shm_coeff : ndarray, shape (x, y, z, n_coeff)
        ODF coefficients (dipy default basis).
    stopping : dipy StoppingCriterion
        Where to stop.
    seeds : ndarray, shape (n, 3)
        Seed points in world coordinates.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of ``shm_coeff``.
    tracker : {"deterministic", "probabilistic"}
        Maximum-direction or probabilistic direction getter.
    step_size, max_angle : float
        Step (mm) and largest turn between steps (degrees).
    min_length, max_length : float
        Streamline length limits in mm.
    seed : int
        Random seed of the probabilistic tracker.
    n_jobs : int
        Processes tracking chunks of the seeds (same streamlines, in seed order).

    Returns
    -------
    dipy.tracking.streamline.Streamlines
        Streamlines in world (RAS mm) coordinates.
    """
    if tracker == "deterministic":
        getter = DeterministicMaximumDirectionGetter.from_shcoeff(
            shm_coeff, max_angle=max_angle, sphere=default_sphere
        )
    elif tracker == "probabilistic":
        getter = ProbabilisticDirectionGetter.from_shcoeff(
            shm_coeff, max_angle=max_angle, sphere=default_sphere
        )
    else:
        raise ValueError(f"unknown tracker {tracker!r}; use one of {TRACKERS}")

    def track_chunk(chunk: np.ndarray) -> Streamlines:
        generator = LocalTracking(
            getter,
            stopping,
            chunk,
            affine,
            step_size=step_size,
            maxlen=int(max_length / step_size),
            return_all=False,
            random_seed=seed,
        )
        lines = Streamlines(generator)
        return lines[np.flatnonzero(length(lines) >= min_length)] if len(lines) else lines

    # dipy seeds its generator at every seed point: chunks give the same streamlines
    chunks = np.array_split(np.asarray(seeds), max(1, min(n_jobs, len(seeds))))
    streamlines = Streamlines()
    for part in fork_map(track_chunk, chunks, n_jobs=n_jobs):
        streamlines.extend(part)
    return streamlines


def save_trx(streamlines: Streamlines, reference: nib.Nifti1Image, path: str | Path) -> Path:
    """Save world-space streamlines as a TRX file referenced to an image.

    Parameters
    ----------
    streamlines : Streamlines
        Streamlines in RAS mm.
    reference : nibabel.Nifti1Image
        Image defining the space (diffusion reference).
    path : str or Path
        Output ``.trx`` file.

    Returns
    -------
    Path
        The written file.
    """
    from trx.trx_file_memmap import TrxFile, save

    sft = StatefulTractogram(streamlines, reference, Space.RASMM)
    trx = TrxFile.from_sft(sft)
    save(trx, str(path))
    trx.close()
    return Path(path)


def load_trx(path: str | Path) -> Streamlines:
    """Load the streamlines of a TRX file in world (RAS mm) coordinates.

    Parameters
    ----------
    path : str or Path
        A ``.trx`` file.

    Returns
    -------
    Streamlines
        The streamlines.
    """
    from trx.trx_file_memmap import load

    trx = load(str(path))
    streamlines = Streamlines([np.array(s) for s in trx.streamlines])
    trx.close()
    return streamlines
