"""Image quality metrics (IQMs) of a diffusion series and its signal-dropout detection.

- **Signal dropout** (per slice and per volume): in each shell, the log mean brain signal
  of every slice is predicted from the same slice in the shell's other volumes by a robust
  even spherical-harmonic fit over the gradient directions (the volume's own scale
  removed). A slice is flagged when it
  falls more than :data:`DROPOUT_Z` robust standard deviations and more than
  :data:`DROPOUT_MIN_LOSS` below its expectation: eddy's outlier rule (Andersson et al.
  2016, 4 SD) with an intensity-based prediction. A volume whose overall scale falls the
  same way is a dropped volume. ``dropout_slices`` lists ``[volume, slice]`` pairs.
- **bad_volumes_frac**: fraction of diffusion-weighted volumes with a dropped slice or a
  dropped volume.
- **cnr_b<b>** per shell: the contrast-to-noise ratio of eddy QUAD (Bastiani et al.
  2019), the standard deviation over directions of the signal predicted by a spherical
  harmonic model (even orders up to 4 with 20 or more directions, 2 with 11 or more) over
  the standard deviation of the residuals, median over the white matter; the noise
  variance captured by the model's own degrees of freedom is removed from the prediction.
- **summary_fa_{mean,median,stdv,p05,p95}**, **summary_md_*** (mm^2/s): tensor FA and
  MD in the white matter; ``fa_degenerate``: fraction of brain voxels with FA of 0 or 1
  (MRIQC's names, Esteban et al. 2017 and MRIQC's diffusion workflow).
- **fd_mean**, **fd_num**, **fd_perc**: framewise displacement (mm) as for BOLD, from the
  rigid part of each volume's transform only; eddy-current scaling, shears and offset
  along the phase-encoding axis are excluded
  (:data:`brainscale.workflows.dwi.rigid_eddy.FD_DEFINITION`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from brainscale.workflows.dwi.gradients import B0_THRESHOLD, detect_shells
from brainscale.workflows.func.iqms import fd_summary

DROPOUT_Z = 4.0
"""Robust standard deviations below expectation for a slice or volume to be flagged."""
DROPOUT_MIN_LOSS = 0.1
"""Minimum relative signal loss of a flagged slice or volume."""
MIN_SLICE_VOXELS = 20
"""Slices with fewer brain voxels are not tested (too noisy)."""
MIN_VOLUMES = 6
"""Shells with fewer volumes are not tested for dropout."""
WM_FA_THRESHOLD = 0.2
"""FA above which a brain voxel is white matter when no T1w tissue map is given."""


def shell_groups(bvals: np.ndarray, tolerance: float = 100.0) -> dict[int, np.ndarray]:
    """Return ``{shell b-value: volume indices}`` (0 for the b=0 volumes)."""
    bvals = np.asarray(bvals, dtype=float)
    groups = {}
    for shell in detect_shells(bvals):
        if shell == 0:
            members = np.flatnonzero(bvals <= B0_THRESHOLD)
        else:
            members = np.flatnonzero((bvals > B0_THRESHOLD) & (np.abs(bvals - shell) <= tolerance))
        if members.size:
            groups[int(shell)] = members
    return groups


def _robust_z(values: np.ndarray, axis: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    centre = np.median(values, axis=axis, keepdims=True)
    sigma = 1.4826 * np.median(np.abs(values - centre), axis=axis, keepdims=True)
    deviation = values - centre
    return deviation / np.maximum(sigma, floor), deviation


def _model_order(n_directions: int) -> int | None:
    """Even spherical-harmonic order the shell's directions support (None: too few)."""
    return 4 if n_directions >= 25 else 2 if n_directions >= 10 else None


def _robust_residuals(values: np.ndarray, design: np.ndarray, n_iter: int = 3) -> np.ndarray:
    """Residuals of a per-column least-squares fit that ignores its own outliers.

    ``values`` is ``(n_observations, n_columns)``; each column is fitted on ``design``,
    then refitted without the observations more than 3 robust SD from the fit.
    """
    resid = values - np.median(values, axis=0, keepdims=True)
    weights = np.ones(values.shape, bool)
    for _ in range(n_iter):
        for col in range(values.shape[1]):
            keep = weights[:, col]
            if keep.sum() <= design.shape[1]:
                continue
            beta, *_ = np.linalg.lstsq(design[keep], values[keep, col], rcond=None)
            resid[:, col] = values[:, col] - design @ beta
        sigma = 1.4826 * np.median(np.abs(resid), axis=0, keepdims=True)
        weights = np.abs(resid) <= 3 * np.maximum(sigma, 1e-6)
    return resid


def detect_dropouts(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray,
                    slice_axis: int = 2) -> dict:
    """Flag slices and volumes with signal dropout.

    The log mean brain signal of each slice is predicted, in each shell, by a robust
    even spherical-harmonic fit over the gradient directions (the shell median for b=0
    and for shells with few directions); the volume's own scale is the median residual
    over its slices. A slice (volume) is flagged when its residual (scale) is more than
    :data:`DROPOUT_Z` robust SD and :data:`DROPOUT_MIN_LOSS` below the prediction.

    Parameters
    ----------
    data : numpy.ndarray
        4D series in the acquisition grid (slices along ``slice_axis``).
    bvals, bvecs : numpy.ndarray
        b-values and unit b-vectors.
    mask : numpy.ndarray of bool
        Brain mask.
    slice_axis : int
        Axis of the acquired slices.

    Returns
    -------
    dict
        ``slices`` (bool, volumes x slices), ``volumes`` (bool per volume), ``tested``
        (bool per volume: in a shell with enough volumes) and ``notes``.
    """
    mask = np.moveaxis(np.asarray(mask, dtype=bool), slice_axis, -1)
    series = np.moveaxis(np.asarray(data, dtype=np.float32), slice_axis, -2)
    n_slices, n_volumes = series.shape[-2], series.shape[-1]
    counts = mask.reshape(-1, n_slices).sum(axis=0)
    usable = counts >= MIN_SLICE_VOXELS
    sums = np.einsum("xys,xysv->vs", mask.astype(np.float32), series, optimize=True)
    log_means = np.log(np.clip(sums[:, usable] / counts[usable], 1e-6, None))
    slices = np.zeros((n_volumes, n_slices), bool)
    volumes = np.zeros(n_volumes, bool)
    tested = np.zeros(n_volumes, bool)
    notes = []
    floor = -math.log(1 - DROPOUT_MIN_LOSS) / DROPOUT_Z / 2
    min_loss = math.log(1 - DROPOUT_MIN_LOSS)
    for shell, members in shell_groups(bvals).items():
        if members.size < MIN_VOLUMES:
            if shell:
                notes.append(f"b={shell}: {members.size} volumes, too few to test for dropout")
            continue
        order = _model_order(members.size) if shell else None
        design = (np.ones((members.size, 1)) if order is None
                  else _even_polynomials(np.asarray(bvecs, dtype=float)[members], order))
        resid = _robust_residuals(log_means[members], design)
        scale = np.median(resid, axis=1)
        z_vol, dev_vol = _robust_z(scale, 0, floor)
        volumes[members] = (z_vol < -DROPOUT_Z) & (dev_vol < min_loss)
        z_slc, dev_slc = _robust_z(resid - scale[:, None], 0, floor)
        flagged = np.zeros((members.size, n_slices), bool)
        flagged[:, usable] = (z_slc < -DROPOUT_Z) & (dev_slc < min_loss)
        slices[members] = flagged
        tested[members] = True
    return {"slices": slices, "volumes": volumes, "tested": tested, "notes": notes}


def _even_polynomials(directions: np.ndarray, order: int) -> np.ndarray:
    """Design matrix of the homogeneous polynomials of degree ``order`` on the sphere.

    On unit vectors they span the even spherical harmonics up to ``order``.
    """
    columns = [np.prod([directions[:, k] ** p for k, p in enumerate(powers)], axis=0)
               for powers in itertools.product(range(order + 1), repeat=3)
               if sum(powers) == order]
    return np.column_stack(columns)


def shell_cnr(signal: np.ndarray, directions: np.ndarray) -> np.ndarray | None:
    """Per-voxel CNR of one shell: predicted over residual standard deviation.

    Parameters
    ----------
    signal : numpy.ndarray
        ``(n_voxels, n_directions)`` signal of the shell.
    directions : numpy.ndarray
        ``(n_directions, 3)`` unit gradient directions.

    Returns
    -------
    numpy.ndarray or None
        CNR per voxel; None when the shell has too few directions for a model with
        residual degrees of freedom.
    """
    n = directions.shape[0]
    order = 4 if n >= 20 else 2 if n >= 11 else None
    if order is None:  # a model with residual degrees of freedom is needed
        return None
    design = _even_polynomials(directions, order)
    n_terms = design.shape[1]
    beta, *_ = np.linalg.lstsq(design, signal.T.astype(np.float64), rcond=None)
    predicted = (design @ beta).T
    resid_var = np.sum((signal - predicted) ** 2, axis=1) / (n - n_terms)
    contrast = predicted.var(axis=1) - (n_terms - 1) / n * resid_var
    return np.sqrt(np.clip(contrast, 0, None) / np.maximum(resid_var, 1e-12))


def compute_dwi_iqms(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray,
                     mask: np.ndarray, fa: np.ndarray, md: np.ndarray,
                     fd: np.ndarray | None, raw=None, raw_bvals=None, raw_bvecs=None,
                     raw_masks=None, wm: np.ndarray | None = None,
                     slice_axis: int = 2) -> dict:
    """Compute every diffusion IQM of one (combined) series.

    Parameters
    ----------
    data : numpy.ndarray
        Preprocessed 4D series (CNR).
    bvals, bvecs : numpy.ndarray
        Its b-values and voxel-frame b-vectors.
    mask : numpy.ndarray of bool
        Brain mask.
    fa, md : numpy.ndarray
        Tensor FA and MD maps.
    fd : numpy.ndarray or None
        Framewise displacement (mm) per volume.
    raw, raw_bvals, raw_bvecs : numpy.ndarray or list of numpy.ndarray, optional
        Series before motion correction (slices still in the acquisition grid) for the
        dropout detection, one per acquired series (their volumes concatenated in order
        make ``data``); ``data`` when not given.
    raw_masks : list of numpy.ndarray, optional
        Brain mask of each raw series in its own (uncorrected) geometry; ``mask`` when not
        given.
    wm : numpy.ndarray of bool, optional
        White-matter mask (the T1w's pure WM, probability > 0.9, in diffusion space); FA
        above :data:`WM_FA_THRESHOLD` otherwise.
    slice_axis : int
        Axis of the acquired slices.

    Returns
    -------
    dict
        IQMs, flagged ``dropout_slices`` / ``dropout_volumes`` / ``bad_volumes`` and ``notes``.
    """
    mask = np.asarray(mask, dtype=bool)
    bvals = np.asarray(bvals, dtype=float)
    notes: list[str] = []
    if wm is None or np.sum(wm & mask) < 50:
        wm = mask & (fa > WM_FA_THRESHOLD)
        notes.append(f"white matter: brain voxels with FA > {WM_FA_THRESHOLD}")
    wm = np.asarray(wm, dtype=bool) & mask
    iqms: dict = {}
    for name, values in (("fa", fa[wm]), ("md", md[wm])):
        if values.size:
            p05, p95 = np.percentile(values, [5, 95])
            iqms.update({f"summary_{name}_mean": float(values.mean()),
                         f"summary_{name}_median": float(np.median(values)),
                         f"summary_{name}_stdv": float(values.std()),
                         f"summary_{name}_p05": float(p05), f"summary_{name}_p95": float(p95)})
    brain_fa = fa[mask]
    iqms["fa_degenerate"] = float(np.mean((brain_fa <= 0) | (brain_fa >= 1)))
    for shell, members in shell_groups(bvals).items():
        if shell == 0:
            continue
        cnr = shell_cnr(data[wm][:, members], bvecs[members])
        if cnr is None:
            notes.append(f"b={shell}: {members.size} directions, too few for the CNR model")
            continue
        iqms[f"cnr_b{shell}"] = float(np.median(cnr))
    iqms.update(fd_summary(fd if fd is not None else np.array([])))
    if raw is None:
        raw, raw_bvals, raw_bvecs = [data], [bvals], [bvecs]
    elif isinstance(raw, np.ndarray):
        raw, raw_bvals, raw_bvecs = [raw], [raw_bvals], [raw_bvecs]
    raw_masks = [mask] * len(raw) if raw_masks is None else raw_masks
    found = [detect_dropouts(series, np.asarray(b, dtype=float), v, m, slice_axis)
             for series, b, v, m in zip(raw, raw_bvals, raw_bvecs, raw_masks, strict=True)]
    notes += [n for f in found for n in f["notes"]]
    n_slices = max(f["slices"].shape[1] for f in found)
    slices = np.concatenate([np.pad(f["slices"], ((0, 0), (0, n_slices - f["slices"].shape[1])))
                             for f in found])
    volumes = np.concatenate([f["volumes"] for f in found])
    found = {"slices": slices, "volumes": volumes}
    pairs = np.argwhere(found["slices"])
    bad = found["volumes"] | found["slices"].any(axis=1)
    weighted = np.concatenate([np.asarray(b, dtype=float) for b in raw_bvals]) > B0_THRESHOLD
    iqms["dropout_slices_num"] = int(len(pairs))
    iqms["dropout_volumes_num"] = int(found["volumes"].sum())
    iqms["bad_volumes_frac"] = float(bad[weighted].mean()) if weighted.any() else None
    iqms["dropout_slices"] = [[int(v), int(s)] for v, s in pairs]
    iqms["dropout_volumes"] = [int(v) for v in np.flatnonzero(found["volumes"])]
    iqms["bad_volumes"] = [int(v) for v in np.flatnonzero(bad)]
    iqms["size_t"] = int(data.shape[-1])
    iqms = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in iqms.items()}
    iqms["notes"] = notes
    return iqms
