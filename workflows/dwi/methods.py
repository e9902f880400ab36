"""Methods boilerplate of the diffusion workflow (:mod:`brainscale.bids_app.reports.methods`)."""

from __future__ import annotations

from brainscale.workflows.references import ANTS, N4

REFERENCES = {
    "veraart2016": "Veraart J et al. Denoising of diffusion MRI using random matrix theory. "
    "NeuroImage 142:394-406, 2016.",
    "dipy": "Garyfallidis E et al. Dipy, a library for the analysis of diffusion MRI data. "
    "Front Neuroinform 8:8, 2014.",
    "kellner2016": "Kellner E et al. Gibbs-ringing artifact removal based on local subvoxel-"
    "shifts. Magn Reson Med 76(5):1574-1581, 2016.",
    "ants": ANTS,
    "leemans2009": "Leemans A, Jones DK. The B-matrix must be rotated when correcting for "
    "subject motion in DTI data. Magn Reson Med 61(6):1336-1349, 2009.",
    "tustison2010": N4,
    "andersson2016": "Andersson JLR, Sotiropoulos SN. An integrated approach to correction "
    "for off-resonance effects and subject movement in diffusion MR imaging. NeuroImage "
    "125:1063-1078, 2016.",
    "power2012": "Power JD et al. Spurious but systematic correlations in functional "
    "connectivity MRI networks arise from subject motion. NeuroImage 59(3):2142-2154, 2012.",
    "tournier2007": "Tournier JD, Calamante F, Connelly A. Robust determination of the fibre "
    "orientation distribution in diffusion MRI. NeuroImage 35(4):1459-1472, 2007.",
    "girard2014": "Girard G et al. Towards quantitative connectivity analysis: reducing "
    "tractography biases. NeuroImage 98:266-278, 2014.",
    "trx": "Rheault F et al. TRX: a community-oriented tractography file format. "
    "Organization for Human Brain Mapping, 2022.",
}


def describe(**_settings) -> str:
    """Return the methods paragraph of the diffusion workflow.

    Parameters
    ----------
    **_settings
        Run settings (unused: the diffusion methods have no user options yet).

    Returns
    -------
    str
        Markdown with ``[@key]`` citations from :data:`REFERENCES`.
    """
    return (
        "*Diffusion data.* Each DWI series had its gradient table checked (counts against "
        "the image, unit b-vectors, shells), was denoised with MP-PCA [@veraart2016] in "
        "dipy [@dipy] and had Gibbs ringing removed [@kellner2016]. When a series with the "
        "reversed phase-encoding polarity was present, the susceptibility displacement "
        "along the phase-encoding axis was estimated from the two mean b=0 images by a "
        "symmetric registration restricted to that axis and every series was unwarped with "
        "Jacobian modulation; otherwise distortion correction was skipped (stated in the "
        "sidecars). The series of a session were concatenated; head motion and eddy "
        "currents were corrected by registering each volume with ANTs [@ants] (Mattes "
        "mutual information within a dilated brain mask; b=0 volumes rigidly, "
        "diffusion-weighted volumes affinely to a robust or model-predicted target), and "
        "each affine was split into the head's rigid motion and an eddy-current "
        "displacement along the phase-encoding axis (scaling, shears, and an offset linear "
        "in the diffusion gradient, separated from head translation across volumes as in "
        "FSL eddy [@andersson2016]); b-vectors were rotated by each volume's head rotation "
        "[@leemans2009] and framewise displacement [@power2012] was computed from the "
        "rigid motion alone. A "
        "brain mask was computed on the mean b=0 and the receive bias estimated with N4 "
        "[@tustison2010]. Tensors were fitted by weighted least squares (FA, MD, AD, RD, "
        "color FA); fibre orientation distributions were estimated by constrained spherical "
        "deconvolution [@tournier2007] when a shell had enough directions. With a T1w, "
        "deterministic streamlines were seeded in the white matter and probabilistic "
        "streamlines at the grey/white-matter interface (white-matter voxels adjacent to "
        "grey matter in diffusion space), and tracking stopped on the T1w tissue maps "
        "[@girard2014]; without a T1w, both were seeded and stopped on FA. Seed counts and "
        "seeding regions are recorded in the tractogram sidecars (TRX files [@trx]). "
        "Atlases reached diffusion space through the anatomical transforms (or a direct "
        "registration to the template without a T1w); connectomes hold streamline counts, "
        "counts normalized by region volume, mean streamline length and mean FA."
    )
