"""Confound time series with fMRIPrep's column names.

Motion parameters with derivatives and squares, framewise displacement (Power et al.
2012), DVARS and standardized DVARS (Nichols 2017, as Nipype's ``ComputeDVARS``), global,
CSF and white-matter signals, aCompCor/tCompCor (Behzadi et al. 2007), discrete-cosine
drift terms and one-hot outlier columns.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from brainscale.workflows.func.motion import MOTION_COLUMNS
from brainscale.workflows.func.resample import resample_to_grid
from brainscale.workflows.rigid_motion import framewise_displacement

HIGH_PASS_PERIOD_S = 128.0
"""Longest period kept by the cosine drift basis (SPM and fMRIPrep default)."""
FD_THRESHOLD_MM = 0.5
STD_DVARS_THRESHOLD = 1.5
COMPCOR_VARIANCE = 0.5
"""CompCor components are retained until they explain this fraction of variance."""
COMPCOR_MIN_COMPONENTS = 5


def compute_dvars(data: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute DVARS and standardized DVARS within a mask; the first values are NaN.

    The series is scaled so that the median in-mask mean intensity is 1000 (Nipype's
    ``ComputeDVARS`` convention); the standardized DVARS divides by the DVARS expected
    from each voxel's robust standard deviation and lag-1 autocorrelation.

    Parameters
    ----------
    data : numpy.ndarray of shape (X, Y, Z, T)
        BOLD series.
    mask : numpy.ndarray of shape (X, Y, Z), bool
        Brain mask.

    Returns
    -------
    dvars, std_dvars : numpy.ndarray of shape (T,)
    """
    series = np.asarray(data[mask], dtype=np.float64)
    series = series[series.std(axis=1) > 0]
    series *= 1000.0 / np.median(series.mean(axis=1))
    diff = np.diff(series, axis=1)
    dvars = np.sqrt(np.mean(diff**2, axis=0))
    quartiles = np.percentile(series, [25, 75], axis=1)
    robust_sd = (quartiles[1] - quartiles[0]) / 1.349
    centered = series - series.mean(axis=1, keepdims=True)
    denom = np.sum(centered**2, axis=1)
    ar1 = np.sum(centered[:, 1:] * centered[:, :-1], axis=1) / np.where(denom > 0, denom, 1)
    expected = np.sqrt(np.clip(2.0 * (1.0 - ar1), 0, None)) * robust_sd
    std_dvars = dvars / np.mean(expected)
    return np.concatenate([[np.nan], dvars]), np.concatenate([[np.nan], std_dvars])


def cosine_basis(n_vols: int, tr: float, period: float = HIGH_PASS_PERIOD_S) -> np.ndarray:
    """Return the discrete-cosine drift regressors of a high-pass filter (no constant).

    Parameters
    ----------
    n_vols : int
        Number of volumes.
    tr : float
        Repetition time (s).
    period : float
        Cut-off period (s); ``floor(2 * n_vols * tr / period)`` terms are returned.

    Returns
    -------
    numpy.ndarray of shape (T, K)
        Orthonormal columns.
    """
    order = int(np.floor(2.0 * n_vols * tr / period))
    time = np.arange(n_vols)
    basis = [
        np.sqrt(2.0 / n_vols) * np.cos(np.pi * k * (2 * time + 1) / (2.0 * n_vols))
        for k in range(1, order + 1)
    ]
    return np.array(basis).T.reshape(n_vols, order)


def compcor(
    data: np.ndarray, mask: np.ndarray, drift: np.ndarray, n_skip: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """Compute CompCor components: principal components of the masked voxel time series.

    Each voxel's series is cleaned of the drift basis and a constant, and variance
    normalized, before the singular value decomposition.

    Parameters
    ----------
    data : numpy.ndarray of shape (X, Y, Z, T)
        BOLD series.
    mask : numpy.ndarray of shape (X, Y, Z), bool
        Voxels whose series are decomposed.
    drift : numpy.ndarray of shape (T, K)
        Regressors removed first (cosine basis).
    n_skip : int
        Leading non-steady-state volumes left out (their component values are 0).

    Returns
    -------
    components : numpy.ndarray of shape (T, C)
        Retained components (enough to explain :data:`COMPCOR_VARIANCE` of the variance,
        at least :data:`COMPCOR_MIN_COMPONENTS` when available).
    metadata : pandas.DataFrame
        One row per computed component: ``VarianceExplained``,
        ``CumulativeVarianceExplained``, ``SingularValue``, ``Retained``.
    """
    n_vols = data.shape[-1]
    series = np.asarray(data[mask], dtype=np.float64).T[n_skip:]
    design = np.column_stack([np.ones(n_vols - n_skip), drift[n_skip:]])
    beta, *_ = np.linalg.lstsq(design, series, rcond=None)
    resid = series - design @ beta
    sd = resid.std(axis=0)
    resid = resid[:, sd > 0] / sd[sd > 0]
    if resid.shape[1] == 0:
        return np.zeros((n_vols, 0)), pd.DataFrame(
            columns=["VarianceExplained", "CumulativeVarianceExplained", "SingularValue",
                     "Retained"]
        )
    u, s, _ = np.linalg.svd(resid, full_matrices=False)
    explained = s**2 / np.sum(s**2)
    cumulative = np.cumsum(explained)
    n_keep = int(np.searchsorted(cumulative, COMPCOR_VARIANCE) + 1)
    n_keep = min(max(n_keep, COMPCOR_MIN_COMPONENTS), len(s))
    components = np.zeros((n_vols, n_keep))
    components[n_skip:] = u[:, :n_keep]
    meta = pd.DataFrame(
        {
            "VarianceExplained": explained,
            "CumulativeVarianceExplained": cumulative,
            "SingularValue": s,
            "Retained": np.arange(len(s)) < n_keep,
        }
    )
    return components, meta


def expand_terms(frame: pd.DataFrame) -> pd.DataFrame:
    """Add fMRIPrep's ``_derivative1``, ``_power2`` and ``_derivative1_power2`` columns.

    Parameters
    ----------
    frame : pandas.DataFrame
        Base regressors.

    Returns
    -------
    pandas.DataFrame
        For each column ``c``: ``c``, ``c_derivative1`` (backward difference, NaN first),
        ``c_power2`` and ``c_derivative1_power2``.
    """
    out = {}
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=float)
        deriv = np.concatenate([[np.nan], np.diff(values)])
        out[column] = values
        out[f"{column}_derivative1"] = deriv
        out[f"{column}_power2"] = values**2
        out[f"{column}_derivative1_power2"] = deriv**2
    return pd.DataFrame(out, index=frame.index)


def tissues_on_bold_grid(
    shape: tuple[int, int, int],
    affine: np.ndarray,
    mask_img: nib.spatialimages.SpatialImage,
    wm_img: nib.spatialimages.SpatialImage,
    csf_img: nib.spatialimages.SpatialImage,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bring the brain mask and the WM and CSF probabilities onto the BOLD grid.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the BOLD series.
    affine : numpy.ndarray of shape (4, 4)
        Its voxel-to-world matrix.
    mask_img : nibabel image
        Brain mask (any grid); resampled by nearest neighbour, non-zero is brain.
    wm_img, csf_img : nibabel image
        White-matter and CSF probabilities (any grid); resampled continuously, so a
        coarser BOLD voxel receives a smooth partial-volume value.

    Returns
    -------
    mask : numpy.ndarray of bool, shape ``shape``
    wm_prob, csf_prob : numpy.ndarray, shape ``shape``
    """
    grid = nib.Nifti1Image(np.zeros(shape, np.uint8), affine)
    mask = np.asarray(resample_to_grid(mask_img, grid, "nearest").dataobj) > 0
    wm = np.asarray(resample_to_grid(wm_img, grid, "continuous").dataobj)
    csf = np.asarray(resample_to_grid(csf_img, grid, "continuous").dataobj)
    return mask, wm, csf


def erode_tissue(probability: np.ndarray, threshold: float = 0.9, iterations: int = 1):
    """Return a conservative tissue mask: probability above ``threshold``, eroded.

    Falls back to the un-eroded mask when erosion would leave fewer than 10 voxels.
    """
    mask = probability > threshold
    eroded = ndimage.binary_erosion(mask, iterations=iterations)
    return eroded if eroded.sum() >= 10 else mask


def one_hot_outliers(flags: np.ndarray, prefix: str) -> pd.DataFrame:
    """Return one spike regressor per flagged volume, named ``<prefix>_XX``."""
    idx = np.flatnonzero(flags)
    columns = {f"{prefix}_{k:02d}": (np.arange(len(flags)) == i).astype(float)
               for k, i in enumerate(idx)}
    return pd.DataFrame(columns, index=np.arange(len(flags)))


def compute_confounds(
    data: np.ndarray,
    brain_mask: np.ndarray,
    csf_prob: np.ndarray,
    wm_prob: np.ndarray,
    motion_params: np.ndarray,
    tr: float,
    n_nonsteady: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Assemble the confounds table of one BOLD run.

    Parameters
    ----------
    data : numpy.ndarray of shape (X, Y, Z, T)
        Motion-corrected BOLD on the grid of the masks.
    brain_mask : numpy.ndarray of shape (X, Y, Z), bool
        Brain mask on the BOLD grid; voxels with a constant signal (outside the BOLD
        field of view) are left out.
    csf_prob, wm_prob : numpy.ndarray of shape (X, Y, Z)
        CSF and white-matter probabilities on the same grid.
    motion_params : numpy.ndarray of shape (T, 6)
        Head-motion parameters (mm, radians).
    tr : float
        Repetition time (s).
    n_nonsteady : int
        Leading non-steady-state volumes.

    Returns
    -------
    confounds : pandas.DataFrame
        One row per volume, fMRIPrep's column names; NaN where undefined (first row of
        derivatives, FD and DVARS).
    metadata : dict
        CompCor component descriptions for the JSON sidecar.
    """
    n_vols = data.shape[-1]
    # voxels outside the BOLD field of view are constant (zero) on the target grid
    brain_mask = np.asarray(brain_mask, bool) & (data.std(axis=-1) > 0)
    csf_mask = erode_tissue(csf_prob) & brain_mask
    wm_mask = erode_tissue(wm_prob, iterations=2) & brain_mask
    signals = pd.DataFrame(
        {
            "global_signal": data[brain_mask].mean(axis=0),
            "csf": data[csf_mask].mean(axis=0) if csf_mask.any() else np.zeros(n_vols),
            "white_matter": data[wm_mask].mean(axis=0) if wm_mask.any() else np.zeros(n_vols),
        }
    )
    motion = pd.DataFrame(motion_params, columns=list(MOTION_COLUMNS))
    dvars, std_dvars = compute_dvars(data, brain_mask)
    fd = framewise_displacement(motion_params)
    drift = cosine_basis(n_vols, tr)
    a_comp, a_meta = compcor(data, csf_mask | wm_mask, drift, n_nonsteady)
    variance = np.asarray(data[brain_mask], dtype=np.float64)[:, n_nonsteady:].var(axis=1)
    t_mask = np.zeros_like(brain_mask)
    top = variance >= np.percentile(variance, 98)
    t_mask[tuple(idx[top] for idx in np.nonzero(brain_mask))] = True
    t_comp, t_meta = compcor(data, t_mask, drift, n_nonsteady)
    nonsteady = np.arange(n_vols) < n_nonsteady
    motion_flags = (np.nan_to_num(fd) > FD_THRESHOLD_MM) | (
        np.nan_to_num(std_dvars) > STD_DVARS_THRESHOLD
    )
    parts = [
        expand_terms(signals),
        pd.DataFrame({"dvars": dvars, "std_dvars": std_dvars, "framewise_displacement": fd}),
        pd.DataFrame(t_comp, columns=[f"t_comp_cor_{k:02d}" for k in range(t_comp.shape[1])]),
        pd.DataFrame(a_comp, columns=[f"a_comp_cor_{k:02d}" for k in range(a_comp.shape[1])]),
        pd.DataFrame(drift, columns=[f"cosine_{k:02d}" for k in range(drift.shape[1])]),
        one_hot_outliers(nonsteady, "non_steady_state_outlier"),
        expand_terms(motion),
        one_hot_outliers(motion_flags & ~nonsteady, "motion_outlier"),
    ]
    confounds = pd.concat(parts, axis=1)
    metadata = compcor_metadata(a_meta, t_meta)
    metadata["framewise_displacement"] = {"Units": "mm", "Method": "Power et al. 2012, r=50mm"}
    for column in MOTION_COLUMNS:
        metadata[column] = {"Units": "mm" if column.startswith("trans") else "rad"}
    metadata["motion_outlier"] = {
        "Description": f"FD > {FD_THRESHOLD_MM} mm or std_dvars > {STD_DVARS_THRESHOLD}"
    }
    return confounds, metadata


def compcor_metadata(a_meta: pd.DataFrame, t_meta: pd.DataFrame) -> dict[str, dict]:
    """Describe CompCor components in the sidecar with fMRIPrep's convention.

    Retained components are keyed by their column name (``a_comp_cor_XX``,
    ``t_comp_cor_XX``), exactly the columns of the TSV; components computed but not
    retained are keyed ``dropped_N`` (one counter over both methods) with
    ``"Retained": false``. nilearn's ``load_confounds`` counts the ``*_comp_cor_*`` keys
    to pick columns, so listing a dropped component under a column name breaks it.

    Parameters
    ----------
    a_meta, t_meta : pandas.DataFrame
        The component tables of :func:`compcor` for aCompCor (combined WM+CSF mask) and
        tCompCor (top 2 % variance voxels).

    Returns
    -------
    dict
        Sidecar entries.
    """
    metadata: dict[str, dict] = {}
    dropped = 0
    for prefix, meta, method, mask in (("a_comp_cor", a_meta, "aCompCor", "combined"),
                                       ("t_comp_cor", t_meta, "tCompCor", "top 2% variance")):
        for k, row in meta.iterrows():
            retained = bool(row["Retained"])
            key = f"{prefix}_{k:02d}" if retained else f"dropped_{dropped}"
            dropped += not retained
            metadata[key] = {
                "Method": method,
                "Mask": mask,
                "SingularValue": float(row["SingularValue"]),
                "VarianceExplained": float(row["VarianceExplained"]),
                "CumulativeVarianceExplained": float(row["CumulativeVarianceExplained"]),
                "Retained": retained,
            }
    return metadata
