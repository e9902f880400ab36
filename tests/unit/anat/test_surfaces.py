"""Cortical meshes against constructed truths: sphere areas, distances, a cortex of known thickness.

The synthetic cortex has no CSF outside it: the grey matter ends at the edge of the
brain mask and of the image, as in skull-stripped releases (OpenNeuro ds002748), where
the Laplace streamlines reached their 6 mm cap on a fifth of the cortex.
"""

import nibabel as nib
import numpy as np
import pytest

from brainscale.workflows.anat import surfaces
from brainscale.workflows.anat.surface_interfaces import (
    load_shape,
    load_surface,
    save_shape,
    save_surface,
)
from brainscale.workflows.anat.surface_thickness import (
    global_surface_measures,
    reconstruct_cortex,
    regional_surface_measures,
)


def _distance_from_centre(size, voxel=1.0):
    grid = (np.indices((size,) * 3) - (size - 1) / 2) * voxel
    return np.sqrt((grid**2).sum(0)), grid


def _ball(radius, size, voxel=1.0, partial_volume=True):
    """Fraction of each voxel inside a ball (a linear ramp over one voxel), or a 0/1 mask."""
    r, _ = _distance_from_centre(size, voxel)
    if not partial_volume:
        return (r < radius).astype(np.float32)
    return np.clip((radius - r) / voxel + 0.5, 0, 1).astype(np.float32)


@pytest.mark.parametrize("partial_volume, tolerance", [(True, 0.005), (False, 0.02)])
def test_sphere_area_is_kept_by_the_smoothing(partial_volume, tolerance):
    field = _ball(30, 70, partial_volume=partial_volume)
    raw = surfaces.isosurface(field, np.eye(4))
    vertices, faces = surfaces.extract_surface(field, np.eye(4))
    truth = 4 * np.pi * 30**2
    area = surfaces.face_areas(vertices, faces).sum()
    assert area == pytest.approx(truth, rel=tolerance)
    # the terraced binary surface is ~9 % too large before smoothing; smoothing shrinks nothing
    raw_error = abs(surfaces.face_areas(*raw).sum() / truth - 1)
    assert abs(area / truth - 1) <= raw_error + 1e-3
    radius = np.linalg.norm(vertices - vertices.mean(0), axis=1)
    assert radius.mean() == pytest.approx(30.0, abs=0.05)
    assert surfaces.vertex_areas(vertices, faces).sum() == pytest.approx(area)
    assert surfaces.signed_volume(vertices, faces) == pytest.approx(4 / 3 * np.pi * 30**3,
                                                                    rel=0.01)


def test_world_coordinates_follow_the_affine():
    affine = np.diag([0.8, 0.9, 1.1, 1.0])
    affine[:3, 3] = [-10, 5, 20]
    vertices, faces = surfaces.extract_surface(_ball(12, 40), affine)
    centre = affine[:3, :3] @ np.full(3, 19.5) + affine[:3, 3]
    assert vertices.mean(0) == pytest.approx(centre, abs=0.1)
    assert surfaces.signed_volume(vertices, faces) > 0  # normals point outwards


def test_distance_to_mesh_is_the_distance_to_the_sphere():
    vertices, faces = surfaces.extract_surface(_ball(20, 50), np.eye(4))
    centre = vertices.mean(0)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    depth = rng.uniform(-5, 5, 500)
    points = centre + directions * (20 + depth)[:, None]
    distance, nearest = surfaces.distance_to_mesh(points, vertices, faces)
    assert distance == pytest.approx(np.abs(depth), abs=0.1)  # the mesh is not quite round
    assert np.all(np.linalg.norm(vertices[nearest] - points, axis=1) >= distance - 1e-9)
    # exact against brute force over every triangle
    for point, found in zip(points[:20], distance[:20], strict=True):
        p = np.broadcast_to(point, (len(faces), 3))
        brute = surfaces._point_triangle_distance(p, *(vertices[faces[:, i]] for i in range(3)))
        assert found == pytest.approx(brute.min(), abs=1e-9)


def test_largest_component_drops_islands():
    field = _ball(10, 40) + np.roll(_ball(3, 40), 15, axis=0)
    vertices, faces = surfaces.largest_component(*surfaces.isosurface(field, np.eye(4)))
    assert surfaces.face_areas(vertices, faces).sum() == pytest.approx(4 * np.pi * 100, rel=0.05)


def test_labels_are_sampled_from_the_nearest_labelled_voxel():
    labels = np.zeros((20, 20, 20), np.int64)
    labels[:10, :, 5:15] = 3
    labels[10:, :, 5:15] = 8
    points = np.array([[2.0, 10, 10], [17, 10, 10], [9.4, 3, 6], [10, 10, 19.5]])
    assert surfaces.sample_labels(points, np.eye(4), labels, 3.0).tolist() == [3, 8, 3, 0]
    areas = surfaces.regional_sums(np.array([3, 8, 3, 0]), np.array([1.0, 2, 4, 8]),
                                   np.array([8, 3, 5]))
    assert areas.tolist() == [2, 5, 0]


def test_gifti_round_trip(tmp_path):
    vertices, faces = surfaces.extract_surface(_ball(8, 24), np.eye(4))
    path = save_surface(vertices, faces, str(tmp_path / "l.surf.gii"), "L", "white")
    back_v, back_f = load_surface(path)
    assert back_v == pytest.approx(vertices, abs=1e-4) and np.array_equal(back_f, faces)
    image = nib.load(path)
    assert image.darrays[0].meta["AnatomicalStructureSecondary"] == "GrayWhite"
    values = np.linspace(0, 5, len(vertices))
    assert load_shape(save_shape(values, str(tmp_path / "l.shape.gii"), "L")) == \
        pytest.approx(values, abs=1e-5)


def _stripped_cortex(thickness, white_radius=20.0, voxel=1.0):
    """A WM ball in a GM shell of known thickness, nothing outside: no CSF, zero background.

    The grid ends one voxel beyond the GM, so the cortex touches the edge of the brain
    mask and nearly the edge of the image. Intensities: WM 1.0, GM 0.6, background 0,
    partial volume linear over a voxel; the tissue maps are the true fractions.
    """
    outer = white_radius + thickness
    size = int(np.ceil(2 * outer / voxel)) + 2
    wm = _ball(white_radius, size, voxel)
    brain = _ball(outer, size, voxel)
    gm = brain - wm
    csf = np.zeros_like(gm)
    intensity = 1.0 * wm + 0.6 * gm
    labels = np.zeros(gm.shape, np.uint8)
    labels[brain > 0.5] = 2
    labels[wm > 0.5] = 3
    labels[(brain > 0) & (labels == 0)] = 2  # the outermost partial voxels are brain
    _, grid = _distance_from_centre(size, voxel)
    affine = np.diag([voxel] * 3 + [1.0])
    affine[:3, 3] = -(size - 1) / 2 * voxel  # world origin at the centre of the ball
    return intensity, np.stack([csf, gm, wm]), labels, affine, grid[0]


@pytest.mark.parametrize("thickness", [2.0, 3.0])
def test_cortex_of_known_thickness_without_outer_csf(thickness):
    intensity, tpms, labels, affine, x = _stripped_cortex(thickness)
    result = reconstruct_cortex(intensity, tpms, labels, affine, x, np.zeros(x.shape, bool))
    assert set(result.hemispheres) == {"L", "R"}
    for name, hemi in result.hemispheres.items():
        vertex_x = hemi.white[0][:, 0]
        assert np.all(vertex_x < 0.6) if name == "L" else np.all(vertex_x > -0.6)
        far = np.abs(vertex_x) > thickness + 2  # away from the cut between the hemispheres
        assert hemi.cortex[far].mean() > 0.95
        away = hemi.cortex & far
        assert np.median(hemi.thickness[away]) == pytest.approx(thickness, abs=0.15)
        assert np.percentile(hemi.thickness[away], 95) < thickness + 0.3
        # the cut through the "corpus callosum" (the WM on the midline) is not cortex
        assert not hemi.cortex[np.abs(vertex_x) < 0.3].any()
    cortex_voxels = result.thickness_map > 0
    assert np.all(labels[cortex_voxels] == 2)
    assert np.median(result.thickness_map[cortex_voxels]) == pytest.approx(thickness, abs=0.2)
    measures = global_surface_measures({
        h: (*s.white, s.thickness, *s.pial) for h, s in result.hemispheres.items()})
    white_sphere = 4 * np.pi * 20.0**2
    assert measures["white_surface_area_mm2"] == pytest.approx(white_sphere, rel=0.08)
    assert measures["white_surface_area_mm2"] < white_sphere
    # the whole pial meshes: the sphere and the two faces of the cut between the hemispheres
    outer = 20.0 + thickness
    pial_meshes = 4 * np.pi * outer**2 + 2 * np.pi * outer**2
    assert measures["pial_surface_area_mm2"] == pytest.approx(pial_meshes, rel=0.05)


def test_regional_area_sums_the_white_vertices_of_each_label():
    intensity, tpms, labels, affine, x = _stripped_cortex(3.0)
    result = reconstruct_cortex(intensity, tpms, labels, affine, x, np.zeros(x.shape, bool))
    _, grid = _distance_from_centre(labels.shape[0])
    atlas = np.where(grid[2] > 0, 11, 12) * (labels == 2)  # upper / lower half of the cortex
    table = regional_surface_measures(
        {h: (*s.white, s.thickness) for h, s in result.hemispheres.items()}, atlas,
        result.thickness_map > 0, affine, np.array([11, 12, 13]))
    half = 2 * np.pi * 20.0**2
    assert table["surface_area_mm2"][:2] == pytest.approx([half, half], rel=0.1)
    assert table["surface_area_mm2"][2] == 0 and np.isnan(table["surface_thickness_mean_mm"][2])
    assert table["surface_thickness_mean_mm"][:2] == pytest.approx([3.0, 3.0], abs=0.2)
