"""Structural connectomes from streamlines and a label image in diffusion space."""

from __future__ import annotations

import numpy as np
import pandas as pd
from dipy.tracking.streamline import Streamlines, values_from_volume
from dipy.tracking.utils import connectivity_matrix
from scipy import ndimage

CONNECTOME_MEASURES = {
    "count": "number of streamlines whose two end points lie in the two regions",
    "countnorm": "streamline count divided by the mean volume of the two regions (1/mm^3)",
    "meanlength": "mean length of the connecting streamlines (mm)",
    "meanfa": "mean over connecting streamlines of the mean FA sampled along each",
}
"""``meas-`` labels written as ``relmat.tsv`` and their meaning (for the sidecars)."""


def streamline_lengths(streamlines: Streamlines) -> np.ndarray:
    """Arc length of each streamline in mm.

    Parameters
    ----------
    streamlines : Streamlines
        Streamlines in world mm.

    Returns
    -------
    ndarray, shape (n,)
        Lengths.
    """
    return np.array(
        [float(np.sum(np.linalg.norm(np.diff(s, axis=0), axis=1))) for s in streamlines]
    )


def build_connectome(
    streamlines: Streamlines,
    labels: np.ndarray,
    affine: np.ndarray,
    regions: pd.DataFrame,
    fa: np.ndarray,
    voxel_volume_mm3: float,
    *,
    endpoint_search_mm: float = 2.0,
) -> dict[str, pd.DataFrame]:
    """Build the count, normalized count, mean length and mean FA matrices.

    Parameters
    ----------
    streamlines : Streamlines
        Streamlines in world (RAS mm) coordinates.
    labels : ndarray of int, shape (x, y, z)
        Atlas labels in diffusion space (0 = background).
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of ``labels`` and ``fa``.
    regions : pandas.DataFrame
        Columns ``index`` (label value) and ``name``; sets the node order.
    fa : ndarray, shape (x, y, z)
        Fractional anisotropy sampled along streamlines.
    voxel_volume_mm3 : float
        Volume of one voxel of ``labels``.
    endpoint_search_mm : float
        End points in unlabelled voxels take the nearest label within this distance
        (a radial search: tracking stops just outside the region it reached).

    Returns
    -------
    dict of pandas.DataFrame
        One square frame per measure of :data:`CONNECTOME_MEASURES`, first column ``node``
        (region names), symmetric, zero diagonal (self-connections are not counted).
    """
    labels = np.asarray(labels).astype(np.int64)
    indices = regions["index"].to_numpy(dtype=np.int64)
    names = regions["name"].astype(str).tolist()
    n_nodes = len(indices)
    lookup = np.zeros(max(int(labels.max()), int(indices.max())) + 1, dtype=np.int64)
    lookup[indices] = np.arange(1, n_nodes + 1)
    nodes = lookup[np.clip(labels, 0, None)]
    volumes = np.bincount(nodes.ravel(), minlength=n_nodes + 1)[1:] * voxel_volume_mm3

    search_nodes = grow_labels(nodes, affine, endpoint_search_mm)

    count = np.zeros((n_nodes, n_nodes))
    length = np.zeros((n_nodes, n_nodes))
    mean_fa = np.zeros((n_nodes, n_nodes))
    if len(streamlines):
        _, grouping = connectivity_matrix(
            streamlines,
            affine,
            search_nodes,
            symmetric=True,
            return_mapping=True,
            mapping_as_streamlines=True,
        )
        for (a, b), group in grouping.items():
            if a == 0 or b == 0 or a == b:
                continue
            i, j = a - 1, b - 1
            group = Streamlines(group)
            fa_along = values_from_volume(np.asarray(fa, dtype=float), group, affine)
            count[i, j] = count[j, i] = len(group)
            length[i, j] = length[j, i] = streamline_lengths(group).mean()
            mean_fa[i, j] = mean_fa[j, i] = np.mean([np.mean(v) for v in fa_along])
    pair_volume = (volumes[:, None] + volumes[None, :]) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = np.where(pair_volume > 0, count / pair_volume, 0.0)
    np.fill_diagonal(normalized, 0.0)
    matrices = {"count": count, "countnorm": normalized, "meanlength": length, "meanfa": mean_fa}
    return {meas: relmat_frame(mat, names) for meas, mat in matrices.items()}


def grow_labels(labels: np.ndarray, affine: np.ndarray, distance_mm: float) -> np.ndarray:
    """Extend labels into unlabelled voxels within a distance (nearest label wins).

    Parameters
    ----------
    labels : ndarray of int, shape (x, y, z)
        Label image, 0 = unlabelled.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine (for the voxel size).
    distance_mm : float
        Largest distance a label grows.

    Returns
    -------
    ndarray of int
        Grown labels; labelled voxels are unchanged.
    """
    if distance_mm <= 0 or not np.any(labels):
        return labels
    zooms = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    dist, nearest = ndimage.distance_transform_edt(labels == 0, sampling=zooms, return_indices=True)
    grown = labels[tuple(nearest)]
    return np.where((labels == 0) & (dist > distance_mm), 0, grown)


def relmat_frame(matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Wrap a square matrix as a ``relmat.tsv`` table (first column ``node``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Connectivity values.
    names : list of str
        Region names, in the matrix order.

    Returns
    -------
    pandas.DataFrame
        Frame with column ``node`` then one column per region.
    """
    frame = pd.DataFrame(np.asarray(matrix), columns=names)
    frame.insert(0, "node", names)
    return frame
