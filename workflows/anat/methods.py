"""Methods boilerplate of the anatomical workflow (:mod:`brainscale.bids_app.reports.methods`)."""

from __future__ import annotations

from brainscale.workflows.references import ANTS, N4

REFERENCES = {
    "tustison2010": N4,
    "ants": ANTS,
    "ashburner2005": "Ashburner J, Friston KJ. Unified segmentation. NeuroImage 26(3):839-851, "
    "2005.",
    "das2009": "Das SR, Avants BB, Grossman M, Gee JC. Registration based cortical thickness "
    "measurement. NeuroImage 45(3):867-879, 2009.",
    "shattuck2001": "Shattuck DW, Sandor-Leahy SR, Schaper KA, Rottenberg DA, Leahy RM. "
    "Magnetic resonance image tissue classification using a partial volume model. "
    "NeuroImage 13(5):856-876, 2001.",
    "jones2000": "Jones SE, Buchbinder BR, Aharon I. Three-dimensional mapping of cortical "
    "thickness using Laplace's equation. Human Brain Mapping 11(1):12-32, 2000.",
    "yezzi2003": "Yezzi AJ, Prince JL. An Eulerian PDE approach for computing tissue "
    "thickness. IEEE Transactions on Medical Imaging 22(10):1332-1339, 2003.",
    "acosta2009": "Acosta O, Bourgeat P, Zuluaga MA, et al. Automated voxel-based 3D cortical "
    "thickness measurement in a combined Lagrangian-Eulerian PDE approach using partial "
    "volume maps. Medical Image Analysis 13(5):730-743, 2009.",
    "avants2008": "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image "
    "registration with cross-correlation: evaluating automated labeling of elderly and "
    "neurodegenerative brain. Medical Image Analysis 12(1):26-41, 2008.",
    "buckner2004": "Buckner RL, Head D, Parker J, Fotenos AF, Marcus D, Morris JC, Snyder AZ. "
    "A unified approach for morphometric and functional data analysis in young, old, and "
    "demented adults using automated atlas-based head size normalization: reliability and "
    "validation against manual measurement of total intracranial volume. NeuroImage "
    "23(2):724-738, 2004.",
    "dahnke2013": "Dahnke R, Yotter RA, Gaser C. Cortical thickness and central surface "
    "estimation. NeuroImage 65:336-348, 2013.",
    "fischl2000": "Fischl B, Dale AM. Measuring the thickness of the human cerebral cortex "
    "from magnetic resonance images. PNAS 97(20):11050-11055, 2000.",
    "lewiner2003": "Lewiner T, Lopes H, Vieira AW, Tavares G. Efficient implementation of "
    "marching cubes' cases with topological guarantees. Journal of Graphics Tools "
    "8(2):1-15, 2003.",
    "taubin1995": "Taubin G. A signal processing approach to fair surface design. "
    "Proceedings of SIGGRAPH 1995:351-358.",
}


def describe(thickness_method: str = "surface", **_settings) -> str:
    """Return the methods paragraph of the anatomical workflow.

    Parameters
    ----------
    thickness_method : {"surface", "laplace", "direct"}
        Cortical thickness method.
    **_settings
        Other run settings (unused: atlases are described by the caller).

    Returns
    -------
    str
        Markdown with ``[@key]`` citations from :data:`REFERENCES`.
    """
    return (
        "*Anatomical data.* The T1w image with the highest resolution was conformed to RAS+ "
        "orientation and corrected for intensity non-uniformity with N4 [@tustison2010] "
        "(ANTsPy; B-spline knots 200 mm apart at the first of four fitting levels, "
        "estimated at 2 mm). A full-head image was aligned rigidly to the template surrounded by "
        "synthetic skull and scalp shells, then affinely to the skull-stripped template "
        "at 2 mm with mutual information evaluated inside the template brain mask only "
        "(the best of three starting sizes), and a first brain mask was obtained by "
        "prior-weighted tissue classification; an image that was already skull-stripped "
        "(a `SkullStripped` sidecar field, or a constant background around a region no "
        "larger than a brain) was not stripped again: its non-zero region served as the "
        "brain and it was started from the translation matching its centroid to the "
        "template's and registered to the template affinely at 2 mm. The brain was then "
        "registered with symmetric diffeomorphic (SyN) registration [@avants2008; @ants] "
        "whose finest level ran at 1 mm; every registration used a fixed random seed, so that the "
        "same input gives the same output. The total intracranial volume was estimated "
        "from the determinant of the affine transform times the template's intracranial "
        "volume [@buckner2004]. CSF, GM and "
        "WM were classified with a Gaussian mixture weighted by the template tissue priors "
        "warped to native space [@ashburner2005], with mixed CSF/GM and GM/WM classes that "
        "turn the tissue probabilities into partial-volume fractions [@shattuck2001]; the "
        "classification also refined the brain mask. " + _THICKNESS[thickness_method] +
        " Grey matter of the cerebellum, brainstem, basal ganglia, thalami, hippocampi and "
        "amygdalae (AAL and Desikan-Killiany subcortical regions warped from the template) "
        "was excluded from thickness. White (GM/WM) and pial surfaces of each cerebral "
        "hemisphere were extracted as the 0.5 level sets of tissue fractions against local "
        "mean tissue intensities by marching cubes [@lewiner2003] and smoothed with "
        "Taubin's non-shrinking filter [@taubin1995]. Atlases were "
        "warped to native space (nearest neighbour) and regional GM volume, mean thickness "
        "and white-surface area (atlas labels sampled onto the mesh vertices) were "
        "tabulated."
    )


_THICKNESS = {
    "surface": (
        "Cortical thickness was measured as FreeSurfer defines it [@fischl2000]: at each "
        "white-surface vertex, the mean of the distances from the white surface to the "
        "nearest point of the pial surface and back; buried sulci were rebuilt as the "
        "ridge of the distance to WM [@dahnke2013] before the pial surface was extracted."
    ),
    "laplace": (
        "Cortical thickness was measured along the streamlines of a Laplace field between "
        "the GM/WM and pial boundaries [@jones2000], with path lengths from Eulerian PDEs "
        "[@yezzi2003] that integrate the GM fraction of each voxel [@acosta2009]; buried "
        "sulci were rebuilt as the ridge of the distance to WM [@dahnke2013]."
    ),
    "direct": (
        "Cortical thickness was computed with DiReCT [@das2009] at the native voxel size "
        "(at least 1 mm)."
    ),
}
