"""Confound regression strategies users know from fMRIPrep and XCP-D, applied with nilearn.

=================  =================================================================
strategy           regressors (all strategies also include the ``cosine_XX`` drift terms)
=================  =================================================================
``6P``             6 motion parameters
``9P``             6P + global signal, CSF and white matter
``24P``            6P + derivatives + squares of both (Friston 24)
``36P``            24P + global/CSF/WM signals with derivatives and squares (default)
``acompcor``       6P + derivatives + retained aCompCor components
``acompcor_gsr``   ``acompcor`` + global signal
``none``           no regressor at all (not even the drift terms); z-scoring only
=================  =================================================================

Appending ``_scrub`` (e.g. ``36P_scrub``) also censors the volumes flagged in the
``motion_outlier_XX`` columns (FD > 0.5 mm or standardized DVARS > 1.5). Non-steady-state
volumes are always censored. Missing first-row values of derivatives are set to 0,
as nilearn's ``load_confounds`` does.

A run too short for the requested strategy is not a failure: :func:`fit_strategy`
falls back along :data:`FALLBACKS` to the largest strategy whose regressors leave at
least :data:`MIN_DEGREES_OF_FREEDOM` degrees of freedom, and says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from nilearn import signal

from brainscale.errors import InputDataError
from brainscale.workflows.func.motion import MOTION_COLUMNS

DEFAULT_DENOISE_STRATEGY = "36P"
MIN_DEGREES_OF_FREEDOM = 10
"""Volumes left after censoring minus regressors must be at least this."""

_TISSUE = ("global_signal", "csf", "white_matter")


def _with_terms(names, derivatives: bool, squares: bool) -> list[str]:
    columns = list(names)
    if derivatives:
        columns += [f"{n}_derivative1" for n in names]
    if squares:
        columns += [f"{c}_power2" for c in columns]
    return columns


def _strategy_columns(base: str, confounds: pd.DataFrame) -> list[str]:
    acompcor = [c for c in confounds.columns if c.startswith("a_comp_cor_")]
    table = {
        "6P": list(MOTION_COLUMNS),
        "9P": list(MOTION_COLUMNS) + list(_TISSUE),
        "24P": _with_terms(MOTION_COLUMNS, True, True),
        "36P": _with_terms(MOTION_COLUMNS + _TISSUE, True, True),
        "acompcor": _with_terms(MOTION_COLUMNS, True, False) + acompcor,
        "acompcor_gsr": _with_terms(MOTION_COLUMNS, True, False) + acompcor + ["global_signal"],
        "none": [],
    }
    return table[base]


STRATEGIES = ("6P", "9P", "24P", "36P", "acompcor", "acompcor_gsr", "none")
"""Base strategy names; each also exists with a ``_scrub`` suffix."""

FALLBACKS = {
    "36P": ("24P", "9P", "6P", "none"),
    "24P": ("6P", "none"),
    "9P": ("6P", "none"),
    "acompcor_gsr": ("acompcor", "6P", "none"),
    "acompcor": ("6P", "none"),
    "6P": ("none",),
    "none": (),
}
"""Smaller strategies tried, in order, when a run cannot support the requested one."""


def parse_strategy(strategy: str) -> tuple[str, bool]:
    """Split a strategy name into its base name and whether it scrubs.

    Raises
    ------
    ValueError
        For an unknown strategy name.
    """
    scrub = strategy.endswith("_scrub")
    base = strategy[: -len("_scrub")] if scrub else strategy
    if base not in STRATEGIES:
        known = ", ".join(STRATEGIES)
        raise ValueError(f"unknown denoising strategy {strategy!r}; known: {known} (+ _scrub)")
    return base, scrub


def select_confounds(
    confounds: pd.DataFrame, strategy: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pick the regressors and the kept volumes of a denoising strategy.

    Parameters
    ----------
    confounds : pandas.DataFrame
        The confounds table (fMRIPrep column names).
    strategy : str
        One of :data:`STRATEGIES`, optionally with ``_scrub``.

    Returns
    -------
    regressors : numpy.ndarray of shape (T, R)
    sample_mask : numpy.ndarray of int
        Indices of the volumes kept.
    columns : list of str
        Names of the regressors.
    """
    base, scrub = parse_strategy(strategy)
    columns = _strategy_columns(base, confounds)
    if base != "none":
        columns += [c for c in confounds.columns if c.startswith("cosine_")]
    missing = [c for c in columns if c not in confounds.columns]
    if missing:
        raise InputDataError(f"confounds table lacks columns {missing} for strategy {strategy}")
    regressors = confounds[columns].fillna(0.0).to_numpy(dtype=float).reshape(len(confounds), -1)
    censor_prefixes = ("non_steady_state_outlier",) + (("motion_outlier",) if scrub else ())
    spikes = confounds[[c for c in confounds.columns if c.startswith(censor_prefixes)]]
    censored = spikes.to_numpy().sum(axis=1) > 0 if spikes.shape[1] else np.zeros(len(confounds),
                                                                                  bool)
    return regressors, np.flatnonzero(~censored), columns


def denoise_timeseries(
    timeseries: np.ndarray,
    confounds: pd.DataFrame,
    strategy: str,
    tr: float,
    source: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Regress a strategy's confounds out of time series (``nilearn.signal.clean``).

    Parameters
    ----------
    timeseries : numpy.ndarray of shape (T, N)
        Region or voxel time series.
    confounds : pandas.DataFrame
        Confounds table with T rows.
    strategy : str
        Denoising strategy name.
    tr : float
        Repetition time (s).
    source : str
        File name for error messages.

    Returns
    -------
    cleaned : numpy.ndarray of shape (T_kept, N)
        Cleaned, z-scored series of the kept volumes.
    sample_mask : numpy.ndarray of int
        Indices of the kept volumes.

    Raises
    ------
    brainscale.errors.InputDataError
        When too few volumes remain for the number of regressors.
    """
    regressors, sample_mask, columns = select_confounds(confounds, strategy)
    dof = len(sample_mask) - len(columns) - 1
    if dof < MIN_DEGREES_OF_FREEDOM:
        raise InputDataError(
            f"{source or 'BOLD run'}: {len(sample_mask)} usable volumes for {len(columns)} "
            f"regressors of strategy {strategy!r} leave {dof} degrees of freedom "
            f"(< {MIN_DEGREES_OF_FREEDOM}); choose a smaller strategy such as 6P"
        )
    cleaned = signal.clean(
        np.asarray(timeseries, dtype=float),
        confounds=regressors if regressors.shape[1] else None,
        sample_mask=sample_mask,
        detrend=False,
        standardize="zscore_sample",
        standardize_confounds=True,
        t_r=tr,
    )
    return cleaned, sample_mask


def degrees_of_freedom(confounds: pd.DataFrame, strategy: str) -> int:
    """Return the residual degrees of freedom a strategy leaves (kept volumes - regressors - 1).

    Parameters
    ----------
    confounds : pandas.DataFrame
        The confounds table.
    strategy : str
        Denoising strategy name.

    Returns
    -------
    int
    """
    _, sample_mask, columns = select_confounds(confounds, strategy)
    return len(sample_mask) - len(columns) - 1


def fit_strategy(confounds: pd.DataFrame, strategy: str) -> tuple[str, str | None]:
    """Choose the largest strategy, from ``strategy`` down its :data:`FALLBACKS`, that fits.

    Parameters
    ----------
    confounds : pandas.DataFrame
        The run's confounds table.
    strategy : str
        The requested strategy (``_scrub`` is kept along the fallbacks).

    Returns
    -------
    used : str
        The strategy to apply (``strategy`` itself when the run supports it).
    note : str or None
        Why another strategy was used, for the sidecar, the report and the log.

    Raises
    ------
    brainscale.errors.InputDataError
        When not even ``none`` leaves :data:`MIN_DEGREES_OF_FREEDOM` (too few volumes).
    """
    base, scrub = parse_strategy(strategy)
    suffix = "_scrub" if scrub else ""
    requested_dof = None
    for candidate in (base, *FALLBACKS[base]):
        name = candidate + suffix
        try:
            dof = degrees_of_freedom(confounds, name)
        except InputDataError:  # e.g. no tissue signal columns in a BOLD-only table
            continue
        if requested_dof is None and candidate == base:
            requested_dof = dof
        if dof >= MIN_DEGREES_OF_FREEDOM:
            if name == strategy:
                return name, None
            return name, (
                f"denoising strategy {strategy!r} needs more volumes than this run has "
                f"({requested_dof if requested_dof is not None else 'unavailable'} degrees of "
                f"freedom left, < {MIN_DEGREES_OF_FREEDOM}); used {name!r}, the largest that "
                f"leaves at least {MIN_DEGREES_OF_FREEDOM} ({dof})"
            )
    kept = len(select_confounds(confounds, "none" + suffix)[1])
    raise InputDataError(
        f"{len(confounds)} volumes ({kept} after censoring) are too few for any denoising "
        f"strategy (at least {MIN_DEGREES_OF_FREEDOM + 1} needed)"
    )
