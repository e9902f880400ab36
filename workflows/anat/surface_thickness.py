"""Cortical surfaces of both hemispheres and the thickness measured between them.

:func:`reconstruct_cortex` extracts each hemisphere's white and pial surfaces
(:mod:`brainscale.workflows.anat.surfaces`), samples the atlas onto the white vertices and measures
thickness as FreeSurfer defines it (Fischl & Dale, 2000): at each vertex, the mean of
the distance from the white surface to the nearest point of the pial surface and the
distance from the pial surface back to the nearest point of the white surface. The
closest-point distance never follows a path around a sulcus or through a missing
boundary, which is what inflates streamline thickness when the outer boundary is a
skull-stripping mask edge rather than CSF. Lengths above :data:`MAX_THICKNESS_MM` are
clipped, as FreeSurfer clips at 5 mm.

The voxel map gives every cortical grey-matter voxel the thickness of the nearest
labelled vertex, so volumetric and surface summaries agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from brainscale.workflows.anat import surfaces
from brainscale.workflows.anat.images import bounding_box
from brainscale.workflows.anat.laplace_thickness import GM, WM, sulcal_ridge

MAX_THICKNESS_MM = 5.0
CORTEX_DISTANCE_MM = 2.0
"""White vertices farther than this from every cortical GM voxel are off the cortex (the
surface around ventricles and nuclei); so are those within a voxel of the cut through the
corpus callosum and brainstem."""


@dataclass
class Hemisphere:
    """One hemisphere's meshes and the measures on its white vertices."""

    white: tuple[np.ndarray, np.ndarray]
    pial: tuple[np.ndarray, np.ndarray]
    cortex: np.ndarray
    """White vertices within :data:`CORTEX_DISTANCE_MM` of cerebral cortex."""
    thickness: np.ndarray
    """Thickness (mm) per white vertex, 0 off the cortex."""
    area: np.ndarray
    """Each white vertex's share of the surface (mm2)."""


@dataclass
class CorticalSurfaces:
    """Result of :func:`reconstruct_cortex`: meshes per hemisphere and a voxel map."""

    hemispheres: dict[str, Hemisphere] = field(default_factory=dict)
    thickness_map: np.ndarray | None = None


def reconstruct_cortex(intensity: np.ndarray, tpms: np.ndarray, labels: np.ndarray,
                       affine: np.ndarray, midline_side: np.ndarray,
                       excluded: np.ndarray, non_cortical: np.ndarray | None = None,
                       smoothing_iterations: int = 10) -> CorticalSurfaces:
    """Extract white and pial surfaces per hemisphere and measure thickness on them.

    Parameters
    ----------
    intensity : numpy.ndarray
        Bias-corrected T1w.
    tpms : numpy.ndarray
        ``(3, ...)`` CSF, GM and WM probabilities.
    labels : numpy.ndarray
        Segmentation: 0 background, 1 CSF, 2 GM, 3 WM.
    affine : numpy.ndarray
        Voxel-to-world matrix of all the volumes.
    midline_side : numpy.ndarray
        Template x coordinate carried into the image (negative left).
    excluded : numpy.ndarray
        Boolean template cerebellum and brainstem carried into the image.
    non_cortical : numpy.ndarray, optional
        Boolean grey matter that is not cerebral cortex (deep nuclei, hippocampus): no
        thickness there.
    smoothing_iterations : int
        Taubin iterations applied to each mesh.

    Returns
    -------
    CorticalSurfaces
        Meshes, cortex flags, thickness and area per hemisphere, and the voxel map
        (float32, mm; every cortical GM voxel gets the thickness of its nearest cortical
        white vertex).
    """
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    thickness_map = np.zeros(labels.shape, dtype=np.float32)
    result = CorticalSurfaces(thickness_map=thickness_map)
    brain_full = labels > 0
    if not (brain_full & (labels == WM) & ~excluded).any():
        return result
    crop = bounding_box(brain_full, margin=2)
    shift = np.array([s.start for s in crop], dtype=float)
    local = affine.copy()
    local[:3, 3] = affine[:3, :3] @ shift + affine[:3, 3]
    lab = labels[crop].astype(np.int16)
    brain = ndimage.binary_dilation(lab > 0)
    white_fraction, tissue_fraction = surfaces.local_tissue_fractions(
        intensity[crop], *(p[crop] for p in tpms), brain, spacing)
    hemis = surfaces.hemisphere_map(white_fraction, midline_side[crop], excluded[crop], brain,
                                    spacing)
    ridge = sulcal_ridge(lab, spacing)
    cortex = (lab == GM) & (hemis > 0)
    if non_cortical is not None:
        cortex &= ~non_cortical[crop]
    points, values = [], []
    for name, value in surfaces.HEMISPHERES.items():
        white_field, pial_field = surfaces.boundary_fields(white_fraction, tissue_fraction,
                                                           hemis, value, ridge)
        white = surfaces.extract_surface(white_field, local, 0.5, smoothing_iterations)
        pial = surfaces.extract_surface(pial_field, local, 0.5, smoothing_iterations)
        if len(white[1]) == 0 or len(pial[1]) == 0:
            continue
        on_cortex = surfaces.sample_labels(white[0], local,
                                           (cortex & (hemis == value)).astype(np.int8),
                                           CORTEX_DISTANCE_MM) > 0
        cut = surfaces.white_matter_cut(white_fraction, hemis, value)
        on_cortex &= surfaces.sample_labels(white[0], local, cut.astype(np.int8),
                                            float(spacing.max())) == 0
        thickness = np.where(on_cortex, _closest_point_thickness(white, pial), 0.0)
        result.hemispheres[name] = Hemisphere(white=white, pial=pial, cortex=on_cortex,
                                              thickness=thickness,
                                              area=surfaces.vertex_areas(*white))
        points.append(white[0][on_cortex])
        values.append(thickness[on_cortex])
    if points:
        voxels = np.argwhere(cortex)
        world = voxels @ local[:3, :3].T + local[:3, 3]
        distance, nearest = cKDTree(np.concatenate(points)).query(
            world, distance_upper_bound=MAX_THICKNESS_MM)
        found = np.isfinite(distance)
        local_map = np.zeros(lab.shape, dtype=np.float32)
        local_map[tuple(voxels[found].T)] = np.concatenate(values)[nearest[found]]
        thickness_map[crop] = local_map
    return result


def regional_surface_measures(hemispheres: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                              atlas: np.ndarray, cortex: np.ndarray, affine: np.ndarray,
                              index: np.ndarray) -> dict[str, np.ndarray]:
    """Sum white-surface area and average thickness per atlas region.

    Parameters
    ----------
    hemispheres : dict
        ``{hemi: (vertices, faces, thickness)}``: white meshes and their per-vertex
        thickness (0 off the cortex, where no region is counted).
    atlas : numpy.ndarray
        Integer atlas on the grid of ``affine``.
    cortex : numpy.ndarray
        Boolean cortical voxels (e.g. thickness map > 0): each takes the label of the
        nearest atlas voxel, and only they are sampled onto the vertices.
    affine : numpy.ndarray
        Voxel-to-world matrix.
    index : numpy.ndarray
        Atlas indices, in the order of the output rows.

    Returns
    -------
    dict
        ``surface_area_mm2`` (sum of vertex areas) and ``surface_thickness_mean_mm``
        (area-weighted mean of vertex thickness, FreeSurfer's ``ThickAvg``) per index;
        NaN thickness where a region has no vertex.
    """
    cortical_labels = _labels_on_cortex(atlas, cortex, affine)
    area = np.zeros(len(index))
    weighted = np.zeros(len(index))
    for vertices, faces, thickness in hemispheres.values():
        on_cortex = thickness > 0
        labels = np.zeros(len(vertices), dtype=np.int64)
        labels[on_cortex] = surfaces.sample_labels(vertices[on_cortex], affine,
                                                   cortical_labels, CORTEX_DISTANCE_MM)
        vertex_area = surfaces.vertex_areas(vertices, faces)
        area += surfaces.regional_sums(labels, vertex_area, index)
        weighted += surfaces.regional_sums(labels, vertex_area * thickness, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(area > 0, weighted / area, np.nan)
    return {"surface_area_mm2": area, "surface_thickness_mean_mm": mean}


def _labels_on_cortex(atlas: np.ndarray, cortex: np.ndarray, affine: np.ndarray,
                      max_distance: float = 10.0) -> np.ndarray:
    """Give each cortical voxel the label of the nearest atlas voxel (within ``max_distance``).

    A template atlas warped to the subject is a ribbon that misses parts of the subject's
    own cortex by a few millimetres; labelling the subject's cortex from it keeps those
    parts in their region instead of in none.
    """
    out = np.zeros(atlas.shape, dtype=np.int64)
    if not cortex.any() or not (atlas > 0).any():
        return out
    box = bounding_box(cortex, margin=int(np.ceil(max_distance)))
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    distance, nearest = ndimage.distance_transform_edt(atlas[box] <= 0, sampling=spacing,
                                                       return_indices=True)
    filled = atlas[box][tuple(nearest)]
    out[box] = np.where(cortex[box] & (distance <= max_distance), filled, 0)
    return out


def global_surface_measures(hemispheres: dict[str, tuple[np.ndarray, ...]]) -> dict[str, float]:
    """Total cortical white area, total pial area and mean thickness of both hemispheres.

    Parameters
    ----------
    hemispheres : dict
        ``{hemi: (white_vertices, white_faces, thickness, pial_vertices, pial_faces)}``.

    Returns
    -------
    dict
        ``white_surface_area_mm2`` (cortical vertices only, as FreeSurfer's
        ``WhiteSurfArea`` leaves out the medial wall), ``pial_surface_area_mm2`` (whole
        mesh) and ``surface_thickness_mean_mm`` (area-weighted).
    """
    white_area = pial_area = weighted = 0.0
    for wv, wf, thickness, pv, pf in hemispheres.values():
        vertex_area = surfaces.vertex_areas(wv, wf)
        white_area += float(vertex_area[thickness > 0].sum())
        weighted += float((vertex_area * thickness).sum())
        pial_area += float(surfaces.face_areas(pv, pf).sum())
    return {"white_surface_area_mm2": white_area, "pial_surface_area_mm2": pial_area,
            "surface_thickness_mean_mm": weighted / white_area if white_area else float("nan")}


def _closest_point_thickness(white: tuple[np.ndarray, np.ndarray],
                             pial: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """FreeSurfer's thickness at each white vertex from two meshes without correspondence.

    The white-to-pial distance of the vertex is averaged with the pial-to-white distance
    of the pial vertex nearest to it, and clipped to :data:`MAX_THICKNESS_MM`.
    """
    to_pial, nearest_pial = surfaces.distance_to_mesh(white[0], *pial)
    to_white, _ = surfaces.distance_to_mesh(pial[0], *white)
    return np.minimum(0.5 * (to_pial + to_white[nearest_pial]), MAX_THICKNESS_MM)


def template_cerebrum_maps(dk: nib.spatialimages.SpatialImage, dk_labels: pd.DataFrame,
                           aal: nib.spatialimages.SpatialImage, aal_labels: pd.DataFrame,
                           ) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Template-space maps that split the brain into cerebral hemispheres.

    Parameters
    ----------
    dk, aal : nibabel images
        Desikan-Killiany and AAL atlases in the template space.
    dk_labels, aal_labels : pandas.DataFrame
        Their ``index`` and ``name`` columns.

    Returns
    -------
    midline_side : nibabel.Nifti1Image
        World x coordinate (mm) on the Desikan-Killiany grid: negative left of the
        symmetric template's mid-sagittal plane.
    excluded : nibabel.Nifti1Image
        uint8 mask of the cerebellum and vermis (AAL) and the brainstem (Desikan-Killiany)
        on the same grid: what the cerebral surfaces leave out.
    """
    from nilearn.image import resample_to_img

    grid = np.indices(dk.shape[:3]).reshape(3, -1).T
    x = (grid @ dk.affine[:3, :3].T + dk.affine[:3, 3])[:, 0].reshape(dk.shape[:3])
    side = nib.Nifti1Image(x.astype(np.float32), dk.affine)
    cerebellar = aal_labels.loc[aal_labels["name"].astype(str).str.startswith(
        ("Cerebelum", "Vermis")), "index"].to_numpy()
    aal_mask = nib.Nifti1Image(np.isin(np.asarray(aal.dataobj), cerebellar).astype(np.uint8),
                               aal.affine)
    aal_mask = resample_to_img(aal_mask, dk, interpolation="nearest", force_resample=True,
                               copy_header=True)
    brainstem = dk_labels.loc[dk_labels["name"].astype(str).str.endswith("brainstem"),
                              "index"].to_numpy()
    excluded = (np.asarray(aal_mask.dataobj) > 0) | np.isin(np.asarray(dk.dataobj), brainstem)
    return side, nib.Nifti1Image(excluded.astype(np.uint8), dk.affine)
