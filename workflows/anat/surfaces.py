"""Triangle meshes of the cortical boundaries and the areas measured on them.

The white surface (GM/WM boundary) and the pial surface (GM/CSF boundary) of each
cerebral hemisphere are the 0.5 level sets of partial-volume tissue fractions rather
than of a binary mask (as CLASP's and CAT12's surfaces are; Kim et al., 2005; Dahnke et
al., 2013): the fraction of the way from the local GM to the local WM intensity for the
white surface, and from the local CSF to the local GM intensity for the pial surface
(:func:`local_tissue_fractions`). Marching cubes (Lewiner et al., 2003; scikit-image)
places the vertices at sub-voxel positions by linear interpolation; a few Taubin
lambda/mu iterations (Taubin, 1995) then remove the voxel-scale terracing without the
shrinkage of plain Laplacian smoothing, so the area of a smooth surface is kept within
about 1 % (tested on spheres).

Where the two banks of a sulcus touch with no CSF resolved between them, the pial level
set would bridge the sulcus. The sulcal midline rebuilt from the ridge of the distance
to WM (:func:`brainscale.workflows.anat.laplace_thickness.sulcal_ridge`) is lowered below the level
before the pial surface is extracted, so the pial surface enters the sulcus (as in
CAT12's projection-based thickness).

Per-region area is the area of the white-surface vertices (a third of each incident
triangle) summed by the atlas label sampled at each vertex, as FreeSurfer's
``SurfArea`` is summed on ``?h.white`` (Fischl & Dale, 2000). Vertices with no
cortical label nearby (the cut through the corpus callosum and brainstem, the surface
around the ventricles and deep nuclei) count in no region.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.spatial import cKDTree

HEMISPHERES = {"L": 1, "R": 2}
"""Values of the native hemisphere map (0: neither cerebral hemisphere)."""


def isosurface(field: np.ndarray, affine: np.ndarray,
               level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Extract the ``level`` set of a 3D field as a triangle mesh in world coordinates.

    Parameters
    ----------
    field : numpy.ndarray
        3D field (e.g. a tissue fraction); the object is where it exceeds ``level``.
    affine : numpy.ndarray
        Voxel-to-world (mm) matrix of the field.
    level : float
        Iso-value.

    Returns
    -------
    vertices : numpy.ndarray
        ``(n, 3)`` float64 world coordinates (mm).
    faces : numpy.ndarray
        ``(m, 3)`` int32 vertex indices, wound so that normals point out of the object.
        Empty arrays when the field never crosses ``level``.
    """
    from skimage.measure import marching_cubes

    if not (field.max() > level > field.min()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int32)
    # a zero border closes surfaces that touch the edge of the field
    padded = np.pad(field.astype(np.float32), 1, constant_values=min(0.0, level - 1.0))
    verts, faces, _, _ = marching_cubes(padded, level=level, allow_degenerate=False)
    verts = verts - 1.0
    world = verts @ affine[:3, :3].T + affine[:3, 3]
    faces = faces.astype(np.int32)
    if signed_volume(world, faces) < 0:
        faces = faces[:, ::-1].copy()
    return world, faces


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Return the volume enclosed by a closed mesh (positive for outward normals)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def largest_component(vertices: np.ndarray,
                      faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the connected piece of a mesh with the most faces.

    Parameters
    ----------
    vertices, faces : numpy.ndarray
        The mesh.

    Returns
    -------
    vertices, faces : numpy.ndarray
        The largest piece, re-indexed.
    """
    if len(faces) == 0:
        return vertices, faces
    n = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = sparse.csgraph.connected_components(graph, directed=False)
    face_component = component[faces[:, 0]]
    keep = face_component == np.bincount(face_component).argmax()
    return _subset(vertices, faces[keep])


def _subset(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used, inverse = np.unique(faces, return_inverse=True)
    return vertices[used], inverse.reshape(faces.shape).astype(np.int32)


def _umbrella_operator(faces: np.ndarray, n: int) -> sparse.csr_matrix:
    """Row-normalized vertex adjacency: ``(W @ x)[i]`` is the mean of i's neighbours."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adjacency = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                  shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0  # duplicate edges (shared by two faces) count once
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return sparse.diags(1.0 / np.maximum(degree, 1)) @ adjacency


def taubin_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int = 10,
                  lam: float = 0.5, mu: float = -0.53) -> np.ndarray:
    """Smooth a mesh with Taubin's lambda/mu filter (no shrinkage of smooth shapes).

    Parameters
    ----------
    vertices, faces : numpy.ndarray
        The mesh.
    iterations : int
        Number of lambda/mu pairs.
    lam, mu : float
        Positive and negative step (``mu < -lam``); the defaults pass frequencies below
        about 0.1 per edge unchanged and damp the marching-cubes terracing.

    Returns
    -------
    numpy.ndarray
        Smoothed vertex coordinates (same faces).
    """
    if len(faces) == 0:
        return vertices.copy()
    mean_of_neighbours = _umbrella_operator(faces, len(vertices))
    out = vertices.astype(np.float64).copy()
    for _ in range(iterations):
        for step in (lam, mu):
            out += step * (mean_of_neighbours @ out - out)
    return out


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Return the area (mm2) of each triangle."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Return each vertex's share of the surface (a third of its triangles' areas).

    The shares sum to the total area, as FreeSurfer's ``?h.area`` files do.
    """
    third = face_areas(vertices, faces) / 3.0
    return np.bincount(faces.ravel(), weights=np.repeat(third, 3), minlength=len(vertices))


def extract_surface(field: np.ndarray, affine: np.ndarray, level: float = 0.5,
                    smoothing_iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of the largest piece of a level set, Taubin-smoothed.

    Parameters
    ----------
    field : numpy.ndarray
        3D field (tissue fraction).
    affine : numpy.ndarray
        Voxel-to-world matrix.
    level : float
        Iso-value.
    smoothing_iterations : int
        Taubin lambda/mu pairs (0: none).

    Returns
    -------
    vertices, faces : numpy.ndarray
        World-coordinate mesh.
    """
    vertices, faces = largest_component(*isosurface(field, affine, level))
    if smoothing_iterations:
        vertices = taubin_smooth(vertices, faces, smoothing_iterations)
    return vertices, faces


def hemisphere_map(wm_fraction: np.ndarray, midline_side: np.ndarray,
                   excluded: np.ndarray, brain: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Assign every brain voxel to a cerebral hemisphere or to neither, by its nearest WM.

    White matter is split by the template's mid-sagittal plane carried into the image
    (``midline_side``) and by the template's cerebellum and brainstem (``excluded``),
    and only the largest connected piece of each hemisphere's WM is kept; every other
    voxel goes with its nearest WM voxel. The cortex of the two hemispheres,
    and the occipital cortex and the cerebellum, then part on the WM-distance ridge
    between them (the interhemispheric fissure, the tentorium) rather than on warped
    template borders, which miss them by millimetres.

    Parameters
    ----------
    wm_fraction : numpy.ndarray
        WM fraction.
    midline_side : numpy.ndarray
        Signed map, negative left of the template's mid-sagittal plane, positive right.
    excluded : numpy.ndarray
        Boolean template cerebellum and brainstem carried into the image.
    brain : numpy.ndarray
        Boolean brain mask.
    spacing : numpy.ndarray
        Voxel size (mm).

    Returns
    -------
    numpy.ndarray
        uint8 map: 1 left, 2 right (:data:`HEMISPHERES`), 0 outside the cerebrum.
    """
    side = np.where(midline_side < 0, HEMISPHERES["L"], HEMISPHERES["R"]).astype(np.uint8)
    side[excluded] = 0
    wm = (wm_fraction >= 0.5) & brain
    if not wm.any():
        return np.where(brain, side, 0).astype(np.uint8)
    # each hemisphere's white matter is one piece: the rest (cerebellar white matter the
    # warped template misses, isolated voxels) belongs to neither
    for value in HEMISPHERES.values():
        pieces, count = ndimage.label(wm & (side == value), structure=np.ones((3, 3, 3)))
        if count > 1:
            largest = np.bincount(pieces.ravel())[1:].argmax() + 1
            side[(pieces > 0) & (pieces != largest)] = 0
    nearest = ndimage.distance_transform_edt(~wm, sampling=spacing, return_distances=False,
                                             return_indices=True)
    out = side[tuple(nearest)]
    out[~brain] = 0
    return out


def local_tissue_fractions(intensity: np.ndarray, csf: np.ndarray, gm: np.ndarray,
                           wm: np.ndarray, brain: np.ndarray, spacing: np.ndarray,
                           sigma_mm: float = 8.0,
                           confident: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Tissue fractions from intensities against local CSF, GM and WM means.

    A global mixture model puts every boundary at one intensity, so a residual
    intensity non-uniformity of a few percent moves the white surface by a millimetre
    (occipital white matter is darker than frontal white matter on most scanners). As
    FreeSurfer places the white surface against locally normalized white-matter
    intensities, each tissue's mean is estimated here locally: a Gaussian-weighted
    (``sigma_mm``) average over the voxels the segmentation is confident about (for CSF,
    also a two-voxel shell outside the brain: CSF and dura, or the zero background of a
    skull-stripped image), falling back to the global mean where a tissue has no
    confident voxels nearby.

    Parameters
    ----------
    intensity : numpy.ndarray
        Bias-corrected T1w intensities.
    csf, gm, wm : numpy.ndarray
        Tissue probabilities.
    brain : numpy.ndarray
        Boolean brain mask.
    spacing : numpy.ndarray
        Voxel size (mm).
    sigma_mm : float
        Width of the neighbourhood.
    confident : float
        Probability above which a voxel counts as pure tissue.

    Returns
    -------
    white : numpy.ndarray
        float32 fraction of the way from the local GM to the local WM intensity
        (clipped to [0, 1]): its 0.5 level set is the white surface.
    tissue : numpy.ndarray
        float32 fraction of the way from the local CSF to the local GM intensity, 0
        outside the brain: its 0.5 level set is the pial surface.
    """
    sigma = sigma_mm / np.asarray(spacing, dtype=float)
    values = intensity.astype(np.float32)
    # just outside the brain lie CSF and dura, or the zeros of a skull-stripped image:
    # the dark side of the pial boundary even where no sulcal CSF is resolved
    shell = ndimage.binary_dilation(brain, iterations=2) & ~brain
    means = []
    for k, prob in enumerate((csf, gm, wm)):
        pure = (prob > confident) & brain
        if k == 0:
            pure |= shell
        if not pure.any():
            pure = (prob > 0.5) & brain
        fallback = float(values[pure].mean()) if pure.any() else float(values[brain].mean())
        weight = ndimage.gaussian_filter(pure.astype(np.float32), sigma, truncate=3.0)
        total = ndimage.gaussian_filter(np.where(pure, values, 0.0), sigma, truncate=3.0)
        floor = 1e-3
        means.append((total + floor * fallback) / (weight + floor))
    c, g, w = means
    with np.errstate(invalid="ignore", divide="ignore"):
        white = np.clip((values - g) / np.where(w - g > 1e-6, w - g, 1e-6), 0.0, 1.0)
        tissue = np.clip((values - c) / np.where(g - c > 1e-6, g - c, 1e-6), 0.0, 1.0)
    tissue[~brain] = 0.0
    white[~brain] = 0.0
    return white.astype(np.float32), tissue.astype(np.float32)


def white_matter_cut(white_fraction: np.ndarray, hemispheres: np.ndarray,
                     hemisphere: int) -> np.ndarray:
    """Flag the hemisphere's WM voxels that face WM outside it (corpus callosum, brainstem).

    The white surface is cut there, and its vertices on the cut belong to the medial
    wall, not to the cortex: FreeSurfer leaves the same cut out of its cortex label.

    Parameters
    ----------
    white_fraction : numpy.ndarray
        WM fraction.
    hemispheres : numpy.ndarray
        Map from :func:`hemisphere_map`.
    hemisphere : int
        Value of the hemisphere.

    Returns
    -------
    numpy.ndarray
        Boolean map of the cut.
    """
    wm = white_fraction >= 0.5
    own = wm & (hemispheres == hemisphere)
    other = wm & (hemispheres != hemisphere)
    return own & ndimage.binary_dilation(other)


def boundary_fields(white_fraction: np.ndarray, tissue_fraction: np.ndarray,
                    hemispheres: np.ndarray, hemisphere: int, ridge: np.ndarray,
                    ridge_value: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Return the fields whose 0.5 level sets are one hemisphere's white and pial surfaces.

    Parameters
    ----------
    white_fraction, tissue_fraction : numpy.ndarray
        Fractions whose 0.5 levels are the GM/WM and the GM/CSF boundaries (e.g. from
        :func:`local_tissue_fractions`).
    hemispheres : numpy.ndarray
        Map from :func:`hemisphere_map`.
    hemisphere : int
        Value of the hemisphere in ``hemispheres``.
    ridge : numpy.ndarray
        Boolean sulcal midline (buried sulci); capped at ``ridge_value`` in the pial
        field so the pial surface enters the sulcus, within a fifth of a voxel of the
        midline on each bank.
    ridge_value : float
        Value given to ridge voxels (below 0.5).

    Returns
    -------
    white, pial : numpy.ndarray
        float32 fields, 0 outside the hemisphere; cavities of either object (ventricles
        and deep nuclei enclosed by tissue) are filled so that no surface wraps them.
    """
    inside = hemispheres == hemisphere
    fields = []
    for fraction in (white_fraction, tissue_fraction):
        out = np.where(inside, fraction, 0.0).astype(np.float32)
        solid = out > 0.5
        out[ndimage.binary_fill_holes(solid) & ~solid] = 1.0
        fields.append(out)
    white, pial = fields
    pial[ridge & inside] = np.minimum(pial[ridge & inside], ridge_value)
    return white, pial


def sample_labels(vertices: np.ndarray, affine: np.ndarray, labels: np.ndarray,
                  max_distance: float = 3.0) -> np.ndarray:
    """Give each vertex the label of the nearest labelled voxel within ``max_distance`` mm.

    Parameters
    ----------
    vertices : numpy.ndarray
        ``(n, 3)`` world coordinates.
    affine : numpy.ndarray
        Voxel-to-world matrix of ``labels``.
    labels : numpy.ndarray
        Integer label volume (0 unlabelled), e.g. an atlas's cortical labels restricted to
        the cortex.
    max_distance : float
        Vertices farther than this from every labelled voxel get 0.

    Returns
    -------
    numpy.ndarray
        int64 label per vertex.
    """
    voxels = np.argwhere(labels > 0)
    if len(voxels) == 0 or len(vertices) == 0:
        return np.zeros(len(vertices), dtype=np.int64)
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    distance, nearest = cKDTree(world).query(vertices, distance_upper_bound=max_distance)
    found = np.isfinite(distance)
    out = np.zeros(len(vertices), dtype=np.int64)
    picked = voxels[nearest[found]]
    out[found] = labels[tuple(picked.T)]
    return out


def regional_sums(vertex_labels: np.ndarray, values: np.ndarray,
                  index: np.ndarray) -> np.ndarray:
    """Sum a per-vertex quantity (e.g. area) by label, in the order of ``index``."""
    n = int(max(vertex_labels.max(initial=0), index.max(initial=0))) + 1
    return np.bincount(vertex_labels, weights=values, minlength=n)[index]


def distance_to_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                     k: int = 1, chunk: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Return each point's distance to a triangle mesh and the nearest mesh vertex.

    The distance is the exact point-to-triangle distance, minimized over the triangles
    around the ``k`` mesh vertices nearest to the point (which hold the closest point
    on any mesh whose triangles are not much longer than the distances involved).

    Parameters
    ----------
    points : numpy.ndarray
        ``(q, 3)`` query points.
    vertices, faces : numpy.ndarray
        The mesh.
    k : int
        Nearest vertices whose triangles are searched.
    chunk : int
        Points processed at once (memory bound).

    Returns
    -------
    distance : numpy.ndarray
        ``(q,)`` distances (mm).
    nearest : numpy.ndarray
        ``(q,)`` index of the nearest mesh vertex.
    """
    k = min(k, len(vertices))
    incident = _incident_faces(faces, len(vertices))
    _, nearest = cKDTree(vertices).query(points, k=k)
    nearest = nearest.reshape(len(points), k)
    distance = np.empty(len(points))
    for start in range(0, len(points), chunk):
        block = slice(start, start + chunk)
        candidates = incident[nearest[block]].reshape(len(nearest[block]), -1)
        valid = candidates >= 0
        tri = faces[np.where(valid, candidates, 0)]
        p = np.broadcast_to(points[block][:, None, :], tri.shape).reshape(-1, 3)
        a, b, c = (vertices[tri[..., i]].reshape(-1, 3) for i in range(3))
        d = _point_triangle_distance(p, a, b, c).reshape(valid.shape)
        distance[block] = np.where(valid, d, np.inf).min(axis=1)
    return distance, nearest[:, 0]


def _incident_faces(faces: np.ndarray, n: int) -> np.ndarray:
    """Table ``(n, max_degree)`` of the faces around each vertex, padded with -1."""
    owner = faces.ravel()
    face_of = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(owner, kind="stable")
    owner, face_of = owner[order], face_of[order]
    counts = np.bincount(owner, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(owner)) - starts[owner]
    table = np.full((n, max(int(counts.max(initial=1)), 1)), -1, dtype=np.int64)
    table[owner, slot] = face_of
    return table


def _point_triangle_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray,
                             c: np.ndarray) -> np.ndarray:
    """Distance from each point to its triangle (rows of ``(n, 3)`` arrays)."""
    ab, ac, ap = b - a, c - a, p - a
    normal = np.cross(ab, ac)
    norm2 = (normal**2).sum(1)
    ok = norm2 > 1e-18
    safe = np.where(ok, norm2, 1.0)
    # barycentric coordinates of the projection of p on the triangle's plane
    v = (np.cross(ap, ac) * normal).sum(1) / safe
    w = (np.cross(ab, ap) * normal).sum(1) / safe
    inside = ok & (v >= 0) & (w >= 0) & (v + w <= 1)
    plane = np.abs((ap * normal).sum(1)) / np.sqrt(safe)
    edges = np.minimum(np.minimum(_point_segment_distance(p, a, b),
                                  _point_segment_distance(p, b, c)),
                       _point_segment_distance(p, c, a))
    return np.where(inside, plane, edges)


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab**2).sum(1), 1e-18), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)
