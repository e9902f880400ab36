"""Image quality metrics (IQMs) of a BOLD run, with MRIQC's names and definitions.

Temporal metrics are computed on the head-motion-corrected series (non-steady-state
volumes dropped), spatial ones on the temporal mean of the raw run in its own voxel grid
(where the phase-encoding axis is a voxel axis). Names follow MRIQC (Esteban et al. 2017):

- ``tsnr``: median over the brain of mean / standard deviation over time (Krueger &
  Glover 2001).
- ``dvars_nstd``, ``dvars_std``, ``dvars_vstd``: mean over time of DVARS (RMS of the
  backward differences over the brain), of DVARS standardized by its expectation under
  stationarity, and of voxel-wise standardized DVARS (Power et al. 2012; Nichols 2013).
- ``fd_mean``, ``fd_num``, ``fd_perc``: mean framewise displacement (mm; Power et al.
  2012), number and percentage of volumes above :data:`FD_THRESHOLD_MM`.
- ``gcor``: global correlation, the mean correlation of all pairs of brain voxels,
  ``||mean of unit-norm time series||^2`` (Saad et al. 2013).
- ``aor``: mean fraction of outlier voxels per volume (AFNI 3dToutcount; Cox 1996).
- ``aqi``: mean quality index ``1 - Spearman rho`` of each volume with the median
  volume (AFNI 3dTqual).
- ``gsr_x``, ``gsr_y``: ghost-to-signal ratio along x and y, ``(mean(ghost) -
  mean(background)) / median(brain)`` with the ghost the brain shifted by half the field of
  view (Giannelli et al. 2010).
- ``fwhm_{x,y,z,avg}`` (mm), ``efc``, ``fber``, ``snr``: as for the T1w
  (:mod:`brainscale.workflows.anat.iqms`), on the temporal mean.
- ``dummy_trs``: leading non-steady-state volumes detected.

Artifact detection: ``outlier_volumes`` lists the volumes whose outlier fraction exceeds
:data:`OUTLIER_VOLUME_FRACTION` (AFNI's censoring convention, afni_proc.py
``-regress_censor_outliers 0.1``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, stats

from brainscale.workflows.anat.iqms import efc, fber, fwhm, snr

FD_THRESHOLD_MM = 0.2
"""MRIQC's default FD threshold for ``fd_num`` / ``fd_perc`` (mm)."""
OUTLIER_VOLUME_FRACTION = 0.1
"""A volume with more than this fraction of outlier voxels is flagged."""
OUTLIER_QTHR = 0.001
"""3dToutcount's ``-qthr``: tail probability, Bonferroni-corrected over the time points."""


def _masked(series: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return ``(n_voxels, n_volumes)`` float64 brain time series."""
    return np.asarray(series[np.asarray(mask, dtype=bool)], dtype=np.float64)


def detrend(ts: np.ndarray, order: int = 2) -> np.ndarray:
    """Remove a polynomial trend (Legendre, ``order``) from each row of ``ts``."""
    n = ts.shape[1]
    x = np.linspace(-1, 1, n)
    design = np.polynomial.legendre.legvander(x, min(order, max(n - 2, 0)))
    beta, *_ = np.linalg.lstsq(design, ts.T, rcond=None)
    return ts - (design @ beta).T


def tsnr(series: np.ndarray, mask: np.ndarray) -> float:
    """Median temporal SNR (mean over standard deviation across time) inside ``mask``."""
    ts = _masked(series, mask)
    sd = ts.std(axis=1)
    valid = sd > 0
    return float(np.median(ts[valid].mean(axis=1) / sd[valid]))


def dvars(series: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """DVARS per volume transition, raw and standardized (Nichols 2013).

    The expected difference of a stationary voxel is ``sqrt(2 (1 - AR1)) sd`` (robust sd
    from the interquartile range, AR(1) coefficient of the detrended series).

    Returns
    -------
    dict
        ``nstd``, ``std`` and ``vstd`` arrays of length ``n_volumes - 1``.
    """
    ts = _masked(series, mask)
    keep = ts.std(axis=1) > 0
    ts = ts[keep]
    sd = np.subtract(*np.percentile(ts, [75, 25], axis=1)) / 1.349
    resid = detrend(ts, 2)
    ar1 = np.sum(resid[:, 1:] * resid[:, :-1], axis=1) / np.maximum(np.sum(resid**2, axis=1),
                                                                     1e-12)
    expected = np.sqrt(np.clip(2 * (1 - ar1), 1e-6, None)) * sd
    diffs = np.diff(ts, axis=1)
    nstd = np.sqrt(np.mean(diffs**2, axis=0))
    valid = expected > 0
    std = nstd / float(np.mean(expected[valid]))
    vstd = np.sqrt(np.mean((diffs[valid] / expected[valid, None]) ** 2, axis=0))
    return {"nstd": nstd, "std": std, "vstd": vstd}


def fd_summary(fd: np.ndarray, threshold: float = FD_THRESHOLD_MM) -> dict[str, float]:
    """``fd_mean`` (mm), ``fd_num`` and ``fd_perc`` (volumes with FD above ``threshold``)."""
    fd = np.asarray(fd, dtype=float)
    fd = fd[np.isfinite(fd)]
    if not fd.size:
        return {"fd_mean": None, "fd_num": None, "fd_perc": None}
    num = int((fd > threshold).sum())
    return {"fd_mean": float(fd.mean()), "fd_num": num, "fd_perc": 100.0 * num / fd.size}


def gcor(series: np.ndarray, mask: np.ndarray) -> float:
    """Global correlation (Saad et al. 2013): the mean of all voxel-pair correlations."""
    ts = _masked(series, mask)
    ts = ts - ts.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(ts, axis=1)
    unit = ts[norm > 0] / norm[norm > 0, None]
    return float(np.sum(unit.mean(axis=0) ** 2))


def outlier_fraction(series: np.ndarray, mask: np.ndarray, qthr: float = OUTLIER_QTHR,
                     order: int = 2) -> np.ndarray:
    """Fraction of outlier brain voxels in each volume (AFNI 3dToutcount).

    Each detrended voxel series is an outlier at time ``t`` when it deviates from its
    median by more than ``alpha * MAD`` with ``alpha = Phi^-1(1 - qthr / n) sqrt(pi / 2)``.
    """
    ts = _masked(series, mask)
    ts = ts[ts.std(axis=1) > 0]
    resid = detrend(ts, order)
    n = resid.shape[1]
    dev = np.abs(resid - np.median(resid, axis=1, keepdims=True))
    mad = np.median(dev, axis=1, keepdims=True)
    alpha = stats.norm.isf(qthr / n) * math.sqrt(math.pi / 2)
    return ((dev > alpha * mad) & (mad > 0)).mean(axis=0)


def quality_index(series: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-volume ``1 - Spearman rho`` with the median volume (AFNI 3dTqual)."""
    ts = _masked(series, mask)
    median_rank = stats.rankdata(np.median(ts, axis=1))
    ranks = stats.rankdata(ts, axis=0)
    a = median_rank - median_rank.mean()
    b = ranks - ranks.mean(axis=0)
    rho = (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b, axis=0))
    return 1.0 - rho


def ghost_to_signal(mean_epi: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Ghost-to-signal ratio along ``axis`` (Giannelli et al. 2010), N/2 ghost."""
    brain = ndimage.binary_dilation(np.asarray(mask, dtype=bool), iterations=1)
    ghost = np.roll(brain, mean_epi.shape[axis] // 2, axis=axis) & ~brain
    background = ~(brain | ghost) & (mean_epi != 0)
    if ghost.sum() < 10 or background.sum() < 10:
        return math.nan
    signal = float(np.median(mean_epi[np.asarray(mask, dtype=bool)]))
    return float((mean_epi[ghost].mean() - mean_epi[background].mean()) / signal)


def compute_bold_iqms(series: np.ndarray, mask: np.ndarray, raw_mean: np.ndarray,
                      raw_mask: np.ndarray, voxel_size, fd: np.ndarray | None,
                      dummy_trs: int) -> dict:
    """Compute every BOLD IQM of one run.

    Parameters
    ----------
    series : numpy.ndarray
        Head-motion-corrected 4D series (any grid), non-steady-state volumes included.
    mask : numpy.ndarray of bool
        Brain mask on the grid of ``series``.
    raw_mean, raw_mask : numpy.ndarray
        Temporal mean of the raw run and its brain mask, in the raw voxel grid.
    voxel_size : sequence of float
        Voxel size (mm) of the raw grid.
    fd : numpy.ndarray or None
        Framewise displacement (mm) per volume.
    dummy_trs : int
        Leading non-steady-state volumes (dropped from the temporal metrics).

    Returns
    -------
    dict
        MRIQC-named IQMs, ``outlier_volumes`` (indices in the full run) and ``notes``.
    """
    notes: list[str] = []
    steady = np.asarray(series[..., dummy_trs:], dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    raw_mask = np.asarray(raw_mask, dtype=bool)
    iqms: dict = {"dummy_trs": int(dummy_trs), "tsnr": tsnr(steady, mask)}
    d = dvars(steady, mask)
    iqms.update(dvars_nstd=float(d["nstd"].mean()), dvars_std=float(d["std"].mean()),
                dvars_vstd=float(d["vstd"].mean()))
    iqms.update(fd_summary(fd if fd is not None else np.array([])))
    if fd is None:
        notes.append("no framewise displacement: fd_* not defined")
    iqms["gcor"] = gcor(steady, mask)
    fraction = outlier_fraction(steady, mask)
    iqms["aor"] = float(fraction.mean())
    iqms["aqi"] = float(quality_index(steady, mask).mean())
    iqms["gsr_x"] = ghost_to_signal(raw_mean, raw_mask, 0)
    iqms["gsr_y"] = ghost_to_signal(raw_mean, raw_mask, 1)
    fx, fy, fz = fwhm(raw_mean, raw_mask, voxel_size)
    iqms.update(fwhm_x=fx, fwhm_y=fy, fwhm_z=fz, fwhm_avg=float(np.nanmean([fx, fy, fz])))
    frame = raw_mean != 0
    iqms["efc"] = efc(raw_mean, frame)
    air = ~ndimage.binary_dilation(raw_mask, iterations=2) & frame
    iqms["fber"] = fber(raw_mean, raw_mask, air) if air.sum() >= 10 else None
    brain_values = raw_mean[raw_mask]
    iqms["snr"] = snr(float(np.median(brain_values)), float(brain_values.std()),
                      int(brain_values.size))
    flagged = np.flatnonzero(fraction > OUTLIER_VOLUME_FRACTION) + int(dummy_trs)
    iqms["outlier_volumes"] = [int(v) for v in flagged]
    iqms["outlier_volumes_perc"] = 100.0 * len(flagged) / max(steady.shape[-1], 1)
    iqms["size_t"] = int(series.shape[-1])
    if steady.shape[-1] < 50:
        notes.append(f"{steady.shape[-1]} steady-state volumes: temporal IQMs are imprecise")
    iqms = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in iqms.items()}
    iqms["notes"] = notes
    return iqms
