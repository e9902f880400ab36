"""Methods boilerplate of the functional workflow (:mod:`brainscale.bids_app.reports.methods`)."""

from __future__ import annotations

from brainscale.workflows.references import ANTS

REFERENCES = {
    "ants": ANTS,
    "power2012": "Power JD et al. Spurious but systematic correlations in functional "
    "connectivity MRI networks arise from subject motion. NeuroImage 59(3):2142-2154, 2012.",
    "nichols2017": "Nichols TE. Notes on creating a standardized version of DVARS. "
    "arXiv:1704.01469, 2017.",
    "behzadi2007": "Behzadi Y et al. A component based noise correction method (CompCor) for "
    "BOLD and perfusion based fMRI. NeuroImage 37(1):90-101, 2007.",
    "satterthwaite2013": "Satterthwaite TD et al. An improved framework for confound "
    "regression and filtering for control of motion artifact in the preprocessing of "
    "resting-state functional connectivity data. NeuroImage 64:240-256, 2013.",
    "nilearn": "Abraham A et al. Machine learning for neuroimaging with scikit-learn. "
    "Front Neuroinform 8:14, 2014.",
    "ledoit2004": "Ledoit O, Wolf M. A well-conditioned estimator for large-dimensional "
    "covariance matrices. J Multivar Anal 88(2):365-411, 2004.",
}


FIT = (
    "*Functional data.* For each BOLD run, non-steady-state volumes were detected as "
    "leading outliers of the global signal and a reference volume was computed as the "
    "median of the first steady-state volumes and skull-stripped. Head motion was "
    "estimated by rigid registration of every volume to the reference (six parameters). "
    "When `SliceTiming` was available, slice-timing correction shifted each slice to "
    "the middle of the acquisition window (slices acquired together, as in multiband, "
    "share one shift)."
)
"""Reference, head motion and slice timing (:func:`~.fit_wf.init_bold_fit_wf`)."""
SDC = (
    "A phase-difference field map intended for the run gave a voxel-shift map along the "
    "phase-encoding axis for susceptibility distortion correction, applied in the one-shot "
    "resampling."
)
"""Susceptibility distortion correction (:func:`~.sdc_wf.init_bold_sdc_wf`)."""
NO_SDC = "No susceptibility distortion correction was applied (no usable field map)."
CONFOUNDS = (
    "Confounds follow fMRIPrep's names: framewise displacement [@power2012], DVARS "
    "[@nichols2017], global, CSF and white-matter signals, aCompCor and tCompCor "
    "[@behzadi2007], cosine drift terms and outlier flags."
)
"""The confounds table (:func:`~.confounds_wf.init_bold_confounds_wf`)."""
GLM = (
    "The run's `events.tsv` was modelled with nilearn's first-level GLM [@nilearn] (Glover "
    "HRF, AR(1) noise, cosine drift terms up to 128 s, six motion regressors, 5 mm FWHM "
    "smoothing), giving one z map per condition against baseline."
)
"""The first-level GLM of a task run (:func:`~.glm_wf.init_bold_glm_wf`)."""


def registration_text(*, has_anat: bool, sdc: bool) -> str:
    """Describe the coregistration and the one-shot resampling of a BOLD run.

    Parameters
    ----------
    has_anat : bool
        Whether the reference was registered to the T1w (else to the template).
    sdc : bool
        Whether distortion correction was applied (otherwise the text says so).

    Returns
    -------
    str
        Markdown with ``[@key]`` citations from :data:`REFERENCES`.
    """
    target = ("The reference was registered to the T1w with a rigid mutual-information "
              "registration in ANTs [@ants]. Head motion, coregistration and the "
              "T1w-to-template deformation" if has_anat else
              "With no T1w, the reference was registered to the template directly with an "
              "affine mutual-information registration in ANTs [@ants]. Head motion and "
              "this registration")
    text = f"{target} were composed so that every volume was resampled once."
    return text if sdc else f"{NO_SDC} {text}"


def connectivity_text(denoise_strategy: str) -> str:
    """Describe the denoising and connectivity of a run (:mod:`.connectivity_wf`).

    Parameters
    ----------
    denoise_strategy : str
        The denoising strategy of the run.

    Returns
    -------
    str
        Markdown with ``[@key]`` citations from :data:`REFERENCES`.
    """
    return (
        "Parcel time series were denoised with nilearn [@nilearn] using "
        f"the `{denoise_strategy}` strategy [@satterthwaite2013], and Pearson and Ledoit-Wolf "
        "[@ledoit2004] partial correlation matrices were computed (Fisher z versions under "
        "`desc-fisherz`)."
    )


def describe(*, denoise_strategy: str, **_settings) -> str:
    """Return the methods paragraph of the functional workflow, every optional stage included.

    This is the dataset-level text (``logs/CITATION.md``), written before any graph is
    built; a participant's report collects the paragraphs of the stages that were built
    instead (the ``__desc__`` of each sub-workflow, :mod:`brainscale.workflows.methods`).

    Parameters
    ----------
    denoise_strategy : str
        The denoising strategy of the run.
    **_settings
        Other run settings (unused here).

    Returns
    -------
    str
        Markdown with ``[@key]`` citations from :data:`REFERENCES`.
    """
    return " ".join([
        FIT, f"{SDC[:-1]} (runs with a usable field map; otherwise none was applied).",
        registration_text(has_anat=True, sdc=True),
        "(Without a T1w, the reference was registered to the template directly, with an "
        "affine.)", CONFOUNDS, connectivity_text(denoise_strategy),
        f"{GLM[:-1]} (task runs with an `events.tsv`).",
    ])
