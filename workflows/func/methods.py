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


def describe(*, denoise_strategy: str, **_settings) -> str:
    """Return the methods paragraph of the functional workflow.

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
    return (
        "*Functional data.* For each BOLD run, non-steady-state volumes were detected as "
        "leading outliers of the global signal and a reference volume was computed as the "
        "median of the first steady-state volumes and skull-stripped. Head motion was "
        "estimated by rigid registration of every volume to the reference (six parameters). "
        "When `SliceTiming` was available, slice-timing correction shifted each slice to "
        "the middle of the acquisition window (slices acquired together, as in multiband, "
        "share one shift). A phase-difference field map, when one was intended for the "
        "run, gave a voxel-shift map along the phase-encoding axis for susceptibility "
        "distortion correction; otherwise none was applied (stated in the report). The "
        "reference was registered to the T1w with a rigid mutual-information registration "
        "in ANTs [@ants] (to the template directly, with an affine, when there was no "
        "T1w). Head motion, coregistration and the T1w-to-template deformation were "
        "composed so that every volume was resampled once. Confounds follow fMRIPrep's "
        "names: framewise displacement [@power2012], DVARS [@nichols2017], global, CSF and "
        "white-matter signals, aCompCor and tCompCor [@behzadi2007], cosine drift terms "
        "and outlier flags. Parcel time series were denoised with nilearn [@nilearn] using "
        f"the `{denoise_strategy}` strategy [@satterthwaite2013], and Pearson and Ledoit-Wolf "
        "[@ledoit2004] partial correlation matrices were computed (Fisher z versions under "
        "`desc-fisherz`). Task runs with an `events.tsv` were modelled with nilearn's "
        "first-level GLM."
    )
