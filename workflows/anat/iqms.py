"""Image quality metrics (IQMs) of a T1w image, with MRIQC's names and definitions.

Every function takes arrays (image, masks, tissue probabilities) and returns numbers; the
names of :func:`compute_t1w_iqms`'s keys are those of MRIQC (Esteban et al. 2017, PLoS ONE
12:e0184661), so the values can be set beside MRIQC's published distributions (Esteban et
al. 2019, Sci Data 6:30). Definitions and references:

- ``cjv``: coefficient of joint variation of GM and WM, ``(sigma_WM + sigma_GM) /
  |mu_WM - mu_GM|`` (Ganzetti et al. 2016); robust moments (median, normalized MAD).
- ``cnr``: contrast-to-noise ratio ``|mu_GM - mu_WM| / sqrt(sigma_air^2 + sigma_GM^2 +
  sigma_WM^2)`` (Magnotta & Friedman 2006).
- ``snr_{csf,gm,wm,total}``: ``mu_T / (sigma_T sqrt(n/(n-1)))`` inside each tissue.
- ``snrd_{csf,gm,wm,total}``: Dietrich et al. 2007 SNR, ``mu_T / sigma_noise`` with the
  noise sigma estimated from the air (Rayleigh) standard deviation:
  ``sigma = std_air * sqrt(2 / (4 - pi))``.
- ``efc``: entropy focus criterion (Atkinson et al. 1997), normalized by its maximum.
- ``fber``: foreground-to-background energy ratio, ``median(|head|^2) / median(|air|^2)``.
- ``wm2max``: median intensity of the N4-corrected image in MRIQC's WM mask (WM fraction
  above 0.85, eroded once with the 18-connected element) over the 99.95th percentile of
  the whole N4-corrected image, background included (MRIQC's ``wm2max`` on ``in_noinu``).
- ``inu_med``, ``inu_range``: median and 5-95 % range of the N4 bias field in the brain
  (Tustison et al. 2010).
- ``fwhm_{x,y,z,avg}``: smoothness (mm) from the lag-1 autocorrelation along each axis
  (Forman et al. 1995; AFNI 3dFWHMx's classic estimator), inside the head.
- ``qi_1``: fraction of air voxels that are artifactual (Mortamet et al. 2009): robust
  z-score above :data:`QI1_ZSCORE` after a morphological opening.
- ``icvs_{csf,gm,wm}``: tissue volume fractions of the intracranial volume.
- ``summary_{bg,csf,gm,wm}_{mean,median,stdv,p05,p95,n}``: intensity summaries.

Intensities are those of the N4-corrected image for tissue statistics (as MRIQC) and of
the conformed, uncorrected image for the background metrics. A background that is all
zeros (a skull-stripped or masked input) has no noise to measure: the background metrics
are then ``None`` and :func:`compute_t1w_iqms` says why in ``notes``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DIETRICH_FACTOR = math.sqrt((4.0 - math.pi) / 2.0)
"""``1 / sqrt(2 / (4 - pi))``: Rayleigh standard deviation over the Gaussian sigma."""
QI1_ZSCORE = 10.0
"""Robust z-score above which an air voxel is an artifact (Mortamet et al. 2009; MRIQC)."""
PURE_TISSUE = 0.9
"""Tissue probability above which a voxel counts as pure tissue for the statistics."""
MRIQC_WM_PROBABILITY = 0.85
"""WM fraction above which MRIQC's ``summary_stats`` counts a voxel (then eroded), WM2MAX."""
TISSUES = ("csf", "gm", "wm")
MIN_AIR_VOXELS = 100
MAX_ZERO_AIR = 0.5
"""Above this fraction of exact zeros outside the head there is no air noise to measure."""


def robust_sigma(values: np.ndarray) -> float:
    """Return the normalized median absolute deviation (1.4826 MAD, a sigma for Gaussians)."""
    values = np.asarray(values, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def summary_stats(values: np.ndarray) -> dict[str, float]:
    """Return MRIQC's intensity summary of a set of voxels (mean, median, stdv, p05, p95, n)."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return {"mean": math.nan, "median": math.nan, "stdv": math.nan, "mad": math.nan,
                "p05": math.nan, "p95": math.nan, "n": 0}
    p05, p95 = np.percentile(values, [5, 95])
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "stdv": float(values.std()), "mad": robust_sigma(values), "p05": float(p05),
            "p95": float(p95), "n": int(values.size)}


def cjv(mu_wm: float, mu_gm: float, sigma_wm: float, sigma_gm: float) -> float:
    """Coefficient of joint variation of WM and GM (Ganzetti et al. 2016); lower is better."""
    return float((sigma_wm + sigma_gm) / abs(mu_wm - mu_gm))


def cnr(mu_wm: float, mu_gm: float, sigma_air: float, sigma_wm: float, sigma_gm: float) -> float:
    """Contrast-to-noise ratio of GM and WM (Magnotta & Friedman 2006); higher is better."""
    return float(abs(mu_wm - mu_gm) / math.sqrt(sigma_air**2 + sigma_gm**2 + sigma_wm**2))


def snr(mu_fg: float, sigma_fg: float, n: int) -> float:
    """Tissue signal-to-noise ratio ``mu / (sigma sqrt(n / (n - 1)))``."""
    return float(mu_fg / (sigma_fg * math.sqrt(n / (n - 1))))


def snr_dietrich(mu_fg: float, sigma_air: float) -> float:
    """SNR with the noise from the air's Rayleigh standard deviation (Dietrich et al. 2007)."""
    return float(DIETRICH_FACTOR * mu_fg / sigma_air)


def efc(image: np.ndarray, frame: np.ndarray | None = None) -> float:
    """Entropy focus criterion (Atkinson et al. 1997), 0 (all energy in one voxel) to 1.

    Parameters
    ----------
    image : numpy.ndarray
        The image (non-negative).
    frame : numpy.ndarray of bool, optional
        Voxels to use (e.g. without the zero padding of a reoriented image).
    """
    values = np.abs(np.asarray(image if frame is None else image[frame], dtype=np.float32))
    n_vox = values.size
    values = values[values > 0]  # zeros add nothing to the entropy (they count in n_vox)
    b_max = math.sqrt(float(np.sum(values.astype(np.float64) ** 2)))
    if n_vox < 2 or b_max == 0:
        return math.nan
    ratio = values / np.float32(b_max)
    entropy = -float(np.sum(ratio * np.log(ratio), dtype=np.float64))
    entropy_max = math.sqrt(n_vox) * math.log(math.sqrt(n_vox))
    return entropy / entropy_max


def fber(image: np.ndarray, head: np.ndarray, air: np.ndarray) -> float:
    """Foreground-to-background energy ratio ``median(|head|^2) / median(|air|^2)``."""
    background = float(np.median(np.abs(image[air]) ** 2))
    if background <= 0:
        return math.nan
    return float(np.median(np.abs(image[head]) ** 2)) / background


def mriqc_wm_mask(wm_probability: np.ndarray, brain: np.ndarray | None = None) -> np.ndarray:
    """MRIQC's white-matter mask for WM2MAX: probability above 0.85, eroded once.

    MRIQC's ``summary_stats`` keeps the voxels whose WM partial-volume fraction exceeds
    :data:`MRIQC_WM_PROBABILITY` and erodes them with the 18-connected structuring element
    (``generate_binary_structure(3, 2)``), which drops the partial-volumed WM border.

    Parameters
    ----------
    wm_probability : numpy.ndarray
        WM probability (partial-volume fraction) map.
    brain : numpy.ndarray of bool, optional
        Brain mask the WM is restricted to before the erosion.

    Returns
    -------
    numpy.ndarray of bool
        The WM voxels whose median is WM2MAX's numerator.
    """
    wm = np.asarray(wm_probability) > MRIQC_WM_PROBABILITY
    if brain is not None:
        wm &= np.asarray(brain, dtype=bool)
    return ndimage.binary_erosion(wm, structure=ndimage.generate_binary_structure(3, 2))


def wm2max(image: np.ndarray, wm: np.ndarray) -> float:
    """WM2MAX as MRIQC computes it: WM median over the image's 99.95th percentile.

    Parameters
    ----------
    image : numpy.ndarray
        The INU-corrected (N4) image, whole field of view; NaN and negative values are set
        to 0 first, as MRIQC does with its ``in_noinu`` input.
    wm : numpy.ndarray of bool
        White-matter voxels (:func:`mriqc_wm_mask`).

    Returns
    -------
    float
        ``median(image[wm]) / P99.95(image)``, the percentile taken over every voxel of
        the image (background included), NaN for an empty mask or an all-zero image.
    """
    image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, None)
    top = float(np.percentile(image, 99.95))
    if not np.any(wm) or top <= 0:
        return math.nan
    return float(np.median(image[wm]) / top)


def fwhm(image: np.ndarray, mask: np.ndarray, voxel_size) -> tuple[float, float, float]:
    """Smoothness (mm) along each axis from the lag-1 autocorrelation inside ``mask``.

    For a Gaussian-smoothed white-noise field the lag-1 correlation along an axis is
    ``rho = exp(-1 / (4 s^2))`` (``s``: kernel sigma in voxels), hence
    ``FWHM = sqrt(-2 ln 2 / ln rho)`` voxels (Forman et al. 1995; AFNI 3dFWHMx).

    Returns
    -------
    tuple of float
        FWHM along x, y and z in mm (NaN where an axis has no correlation to measure).
    """
    data = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    values = data[mask]
    centred = np.where(mask, data - np.float32(values.mean()), np.float32(0))
    variance = float(np.mean(centred[mask].astype(np.float64) ** 2))
    out = []
    for axis, size in enumerate(voxel_size[:3]):
        a = np.moveaxis(centred, axis, 0)
        m = np.moveaxis(mask, axis, 0)
        both = m[1:] & m[:-1]
        n_pairs = int(both.sum())
        if n_pairs < 10 or variance == 0:
            out.append(math.nan)
            continue
        diff = np.where(both, a[1:] - a[:-1], np.float32(0))
        diff_var = float(np.sum(diff.astype(np.float64) ** 2) / n_pairs)
        rho = 1.0 - diff_var / (2.0 * variance)
        out.append(float(size) * math.sqrt(-2.0 * math.log(2.0) / math.log(rho))
                   if 0.0 < rho < 1.0 else math.nan)
    return tuple(out)


def head_mask(image: np.ndarray, step: int = 1) -> np.ndarray:
    """Return the head (everything that is not air) of an image with an air background.

    A threshold halfway (in log intensity) between the air and bright tissue, and at
    least 5 % of the bright tissue, then closing, hole filling (dark skull) and the
    largest component. ``step > 1`` computes the mask on every ``step``-th voxel and
    repeats it back (sub-millimetre images: the head outline needs no finer grid).
    """
    full_shape = image.shape
    data = np.asarray(image[::step, ::step, ::step], dtype=np.float32)
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(full_shape, bool)
    low, high = np.percentile(positive, [10, 99])
    threshold = float(np.exp((np.log(max(low, 1e-6)) + np.log(max(high, 1e-6))) / 2.0))
    threshold = max(threshold, 0.05 * high)  # faint ghosts in the air stay air
    head = data > threshold
    head = ndimage.binary_closing(head, iterations=2)
    labels, n = ndimage.label(head)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        head = labels == int(np.argmax(sizes))
    for axis in range(3):  # fill holes slice by slice too (open nasal cavities)
        head = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(head, axis, 0)],
                        axis=axis)
    head = ndimage.binary_fill_holes(head)
    if step > 1:
        for axis in range(3):
            head = np.repeat(head, step, axis=axis)
        head = head[: full_shape[0], : full_shape[1], : full_shape[2]]
    return head


def artifact_fraction(image: np.ndarray, air: np.ndarray, zscore: float = QI1_ZSCORE) -> float:
    """``qi_1``: fraction of air voxels with artifactual intensity (Mortamet et al. 2009).

    Air voxels whose robust z-score (median, normalized MAD of the air) exceeds ``zscore``,
    after a morphological opening that removes isolated noise voxels, over all air voxels.
    """
    values = image[air]
    sigma = robust_sigma(values)
    if values.size < MIN_AIR_VOXELS or sigma == 0:
        return math.nan
    candidates = np.zeros(image.shape, bool)
    candidates[air] = (values - np.median(values)) / sigma > zscore
    structure = ndimage.generate_binary_structure(3, 2)
    artifacts = ndimage.binary_opening(candidates, structure)
    return float(artifacts.sum() / air.sum())


def inu_summary(bias: np.ndarray) -> tuple[float, float]:
    """Median and 5-95 % range of the multiplicative bias field's values in the brain."""
    p05, p95 = np.percentile(bias, [5, 95])
    return float(np.median(bias)), float(p95 - p05)


def compute_t1w_iqms(raw: np.ndarray, corrected: np.ndarray, brain: np.ndarray,
                     tpms: dict[str, np.ndarray], voxel_size) -> dict:
    """Compute every T1w IQM of one image.

    Parameters
    ----------
    raw : numpy.ndarray
        Conformed T1w before bias correction (head and air background).
    corrected : numpy.ndarray
        The same image after N4 (tissue statistics).
    brain : numpy.ndarray of bool
        Brain mask.
    tpms : dict
        ``{"csf", "gm", "wm"}`` tissue probability maps on the same grid.
    voxel_size : sequence of float
        Voxel size (mm).

    Returns
    -------
    dict
        MRIQC-named IQMs (floats or ``None``) and ``notes`` (list of str).
    """
    raw = np.asarray(raw, dtype=np.float32)
    corrected = np.asarray(corrected, dtype=np.float32)
    brain = np.asarray(brain, dtype=bool)
    notes: list[str] = []
    step = max(1, int(round(1.0 / max(min(voxel_size[:3]), 1e-3))))  # about 1 mm
    head = head_mask(raw, step) | brain
    outside = ~ndimage.binary_dilation(head, iterations=2)
    air = outside & (raw != 0)  # exact zeros: defacing, masking or vendor background removal
    zeroed = float(np.mean(raw[outside] == 0)) if outside.any() else 1.0
    has_air = (zeroed <= MAX_ZERO_AIR and air.sum() >= MIN_AIR_VOXELS
               and float(raw[air].std()) > 0)
    if not has_air:
        notes.append(f"background {100 * zeroed:.0f} % exact zeros (skull-stripped, masked or "
                     "vendor-suppressed background): air-based IQMs (cnr, snrd_*, fber, qi_1) "
                     "are not defined")
    pure = {t: (tpms[t] > PURE_TISSUE) & brain for t in TISSUES}
    stats = {t: summary_stats(corrected[pure[t]]) for t in TISSUES}
    stats["bg"] = summary_stats(raw[air])
    iqms: dict = {}
    wm, gm = stats["wm"], stats["gm"]
    iqms["cjv"] = cjv(wm["median"], gm["median"], wm["mad"], gm["mad"])
    iqms["cnr"] = (cnr(wm["median"], gm["median"], stats["bg"]["stdv"], wm["stdv"], gm["stdv"])
                   if has_air else None)
    for t in TISSUES:
        iqms[f"snr_{t}"] = snr(stats[t]["median"], stats[t]["stdv"], stats[t]["n"])
        iqms[f"snrd_{t}"] = snr_dietrich(stats[t]["median"], stats["bg"]["stdv"]) \
            if has_air else None
    iqms["snr_total"] = float(np.mean([iqms[f"snr_{t}"] for t in TISSUES]))
    iqms["snrd_total"] = (float(np.mean([iqms[f"snrd_{t}"] for t in TISSUES]))
                          if has_air else None)
    iqms["efc"] = efc(raw)  # over the whole field of view, as MRIQC
    iqms["fber"] = fber(raw, head, air) if has_air else None
    iqms["wm2max"] = wm2max(corrected, mriqc_wm_mask(tpms["wm"], brain))
    valid = brain & (corrected > 0) & (raw > 0)  # the N4 field, raw / corrected
    iqms["inu_med"], iqms["inu_range"] = inu_summary(raw[valid] / corrected[valid])
    fx, fy, fz = fwhm(corrected, head, voxel_size)
    iqms.update(fwhm_x=fx, fwhm_y=fy, fwhm_z=fz, fwhm_avg=float(np.nanmean([fx, fy, fz])))
    iqms["qi_1"] = artifact_fraction(raw, air) if has_air else None
    volumes = {t: float(np.clip(tpms[t], 0, 1)[brain].sum()) for t in TISSUES}
    total = sum(volumes.values())
    for t in TISSUES:
        iqms[f"icvs_{t}"] = volumes[t] / total if total else None
    for label, s in stats.items():
        for key in ("mean", "median", "stdv", "p05", "p95", "n"):
            iqms[f"summary_{label}_{key}"] = s[key]
    iqms = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in iqms.items()}
    iqms["notes"] = notes
    return iqms
