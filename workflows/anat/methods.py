"""Methods boilerplate of the anatomical workflow (see :mod:`bids_app.reports.methods`)."""

from __future__ import annotations

from workflows.references import ANTS, N4

REFERENCES = {
    "tustison2010": N4,
    "ants": ANTS,
    "ashburner2005": "Ashburner J, Friston KJ. Unified segmentation. NeuroImage 26(3):839-851, "
    "2005.",
    "das2009": "Das SR, Avants BB, Grossman M, Gee JC. Registration based cortical thickness "
    "measurement. NeuroImage 45(3):867-879, 2009.",
}


def describe(**_settings) -> str:
    """Return the methods paragraph of the anatomical workflow.

    Parameters
    ----------
    **_settings
        Run settings (unused: atlases are described by the caller).

    Returns
    -------
    str
        Markdown with ``[@key]`` citations from :data:`REFERENCES`.
    """
    return (
        "*Anatomical data.* The T1w image with the highest resolution was conformed to RAS+ "
        "orientation and corrected for intensity non-uniformity with N4 [@tustison2010] "
        "(ANTsPy). It was aligned rigidly to the template surrounded by synthetic skull and "
        "scalp shells, a first brain mask was obtained by prior-weighted tissue "
        "classification, and the skull-stripped image was normalized to the template with "
        "affine and symmetric diffeomorphic (SyN) registration [@ants] at 2 mm. CSF, GM and "
        "WM were classified with a Gaussian mixture weighted by the template tissue priors "
        "warped to native space [@ashburner2005], which also refined the brain mask. "
        "Cortical thickness was computed with DiReCT [@das2009] at the native voxel size "
        "(at least 1 mm); atlases were warped to native space (nearest neighbour) and "
        "regional GM volume, mean thickness and surface area (GM volume / mean thickness) "
        "were tabulated."
    )
