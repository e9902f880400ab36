"""First-level task GLM (nilearn ``FirstLevelModel``): one z map per condition."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.glm.first_level import FirstLevelModel

from brainscale.errors import InputDataError
from brainscale.workflows.func.motion import MOTION_COLUMNS


def read_events(events_file: str) -> pd.DataFrame:
    """Read a BIDS ``events.tsv`` and check its mandatory columns.

    Raises
    ------
    brainscale.errors.InputDataError
        When ``onset``/``duration`` are missing or no row has a ``trial_type``.
    """
    events = pd.read_csv(events_file, sep="\t", na_values=["n/a"])
    missing = {"onset", "duration"} - set(events.columns)
    if missing:
        raise InputDataError(f"{events_file}: missing column(s) {sorted(missing)}")
    if "trial_type" not in events.columns:
        events["trial_type"] = "task"
    events = events.dropna(subset=["onset", "duration", "trial_type"])
    if events.empty:
        raise InputDataError(f"{events_file}: no event with onset, duration and trial_type")
    events["trial_type"] = events["trial_type"].astype(str)
    return events[["onset", "duration", "trial_type"]]


def condition_label(name: str) -> str:
    """Turn a ``trial_type`` into a BIDS label (alphanumeric, camel-cased)."""
    parts = re.split(r"[^A-Za-z0-9]+", name)
    label = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return label or "condition"


def fit_first_level(
    bold: nib.Nifti1Image,
    mask: nib.Nifti1Image,
    events: pd.DataFrame,
    confounds: pd.DataFrame,
    tr: float,
    n_nonsteady: int = 0,
    smoothing_fwhm: float | None = 5.0,
) -> dict[str, nib.Nifti1Image]:
    """Fit a first-level GLM and return a z map per condition (condition > baseline).

    The design has the conditions convolved with the Glover HRF, cosine drifts (128 s)
    and the six motion parameters; the noise model is AR(1). Non-steady-state volumes
    are left out.

    Parameters
    ----------
    bold : nibabel.Nifti1Image
        Preprocessed 4D BOLD (template space).
    mask : nibabel.Nifti1Image
        Brain mask on the same grid.
    events : pandas.DataFrame
        ``onset``, ``duration``, ``trial_type``.
    confounds : pandas.DataFrame
        Confounds table (the motion columns are used).
    tr : float
        Repetition time (s).
    n_nonsteady : int
        Leading volumes to drop.
    smoothing_fwhm : float or None
        Spatial smoothing (mm).

    Returns
    -------
    dict
        Condition label -> z-statistic image.
    """
    n_vols = bold.shape[3]
    sample_mask = np.arange(n_nonsteady, n_vols)
    model = FirstLevelModel(
        t_r=tr,
        slice_time_ref=0.5,
        hrf_model="glover",
        drift_model="cosine",
        high_pass=1.0 / 128,
        noise_model="ar1",
        mask_img=mask,
        smoothing_fwhm=smoothing_fwhm,
        minimize_memory=True,
        standardize=False,
        signal_scaling=0,
    )
    motion = confounds[list(MOTION_COLUMNS)].fillna(0.0)
    model.fit(bold, events=events, confounds=motion, sample_masks=sample_mask)
    columns = model.design_matrices_[0].columns
    zmaps = {}
    for condition in sorted(events["trial_type"].unique()):
        if condition not in columns:
            continue
        zmaps[condition_label(condition)] = model.compute_contrast(condition, output_type="z_score")
    return zmaps
