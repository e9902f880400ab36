"""Vectorized network measures of undirected connectomes, equal to the Brain Connectivity Toolbox's.

Every function takes a symmetric ``(n, n)`` NumPy array with a zero diagonal, where
0 means "no edge", and returns the same values as the bctpy function named in its
docstring (Rubinov & Sporns 2010), computed with matrix products and the batched
shortest-path routines of :mod:`brainscale.workflows.group.graph_paths` instead of per-node
Python loops. Weighted measures
expect weights in ``[0, 1]`` (see :func:`normalize_weights`), as the BCT does.

References
----------
Rubinov M, Sporns O (2010). Complex network measures of brain connectivity: uses
and interpretations. NeuroImage 52:1059-1069.
Onnela J-P et al. (2005). Intensity and coherence of motifs in weighted complex
networks. Phys Rev E 71:065103.
Wang Y, Ghumare E, Vandenberghe R, Dupont P (2017). Comparison of different
generalizations of clustering coefficient and local efficiency for weighted
undirected graphs. Neural Comput 29:313-331.
"""

from __future__ import annotations

import numpy as np

from brainscale.workflows.group.graph_paths import neighbourhood_efficiency, shortest_path_lengths


def normalize_weights(matrix: np.ndarray) -> np.ndarray:
    """Scale weights by the largest absolute weight (bct ``weight_conversion(W, 'normalize')``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Weighted connectivity matrix.

    Returns
    -------
    ndarray, shape (n, n)
        The matrix divided by ``max(|matrix|)`` (unchanged when it is all zeros).
    """
    largest = np.abs(matrix).max() if matrix.size else 0.0
    return matrix / largest if largest > 0 else matrix.copy()


def degree(matrix: np.ndarray) -> np.ndarray:
    """Count the edges of every node (bct ``degrees_und``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix.

    Returns
    -------
    ndarray of int, shape (n,)
        Node degrees.
    """
    return np.count_nonzero(matrix, axis=1)


def strength(matrix: np.ndarray) -> np.ndarray:
    """Sum of the edge weights of every node (bct ``strengths_und``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected weighted connectivity matrix.

    Returns
    -------
    ndarray, shape (n,)
        Node strengths.
    """
    return matrix.sum(axis=1)


def clustering_coefficient(matrix: np.ndarray, *, weighted: bool = True) -> np.ndarray:
    """Clustering coefficient of every node (bct ``clustering_coef_wu`` / ``clustering_coef_bu``).

    The weighted version is Onnela's: the geometric mean intensity of the triangles
    around a node, ``diag(W^(1/3) ** 3) / (k (k - 1))``.

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix, weights in ``[0, 1]``.
    weighted : bool
        Use the weights; ``False`` uses the binary adjacency.

    Returns
    -------
    ndarray, shape (n,)
        Clustering coefficients (0 for nodes in no triangle).
    """
    links = np.cbrt(matrix) if weighted else (matrix != 0).astype(float)
    triangles = np.einsum("ij,ji->i", links @ links, links)  # diag(links^3)
    k = degree(matrix).astype(float)
    pairs = k * (k - 1)
    out = np.zeros(len(matrix))
    has = (triangles != 0) & (pairs > 0)
    out[has] = triangles[has] / pairs[has]
    return out


def connection_lengths(matrix: np.ndarray, *, weighted: bool = True) -> np.ndarray:
    """Edge lengths used by path measures: ``1 / w`` (bct ``invert``), or 1 when binary.

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix.
    weighted : bool
        Invert the weights; ``False`` gives every edge length 1.

    Returns
    -------
    ndarray, shape (n, n)
        Length matrix, 0 where there is no edge.
    """
    edges = matrix != 0
    lengths = np.zeros(matrix.shape)
    lengths[edges] = 1.0 / matrix[edges] if weighted else 1.0
    return lengths


def path_length_and_efficiency(distances: np.ndarray) -> tuple[float, float]:
    """Characteristic path length and global efficiency of a distance matrix.

    The characteristic path length is the mean of the finite off-diagonal distances
    (bct ``charpath(D, include_infinite=False)[0]``); the global efficiency is the mean
    inverse distance over all ordered node pairs, disconnected pairs counting 0
    (bct ``efficiency_wei`` / ``efficiency_bin``).

    Parameters
    ----------
    distances : ndarray, shape (n, n)
        Output of :func:`~brainscale.workflows.group.graph_paths.shortest_path_lengths`.

    Returns
    -------
    path_length, efficiency : float
        ``nan`` path length when no pair of nodes is connected.
    """
    n = len(distances)
    off_diagonal = ~np.eye(n, dtype=bool)
    finite = distances[off_diagonal & np.isfinite(distances)]
    path_length = float(finite.mean()) if finite.size else float("nan")
    efficiency = float(np.sum(1.0 / finite) / (n * n - n)) if n > 1 else 0.0
    return path_length, efficiency


def local_efficiency(matrix: np.ndarray, *, weighted: bool = True) -> np.ndarray:
    """Local efficiency of every node (bct ``efficiency_wei(W, local=True)`` / ``efficiency_bin``).

    The efficiency of the subgraph of a node's neighbours, without the node. The
    weighted version is Wang et al.'s (2017) generalization that bctpy uses: path
    lengths in the neighbourhood are ``(1/w)^(1/3)`` and each pair of neighbours
    ``j, k`` is weighted by ``(w_uj w_uk)^(1/3)``.

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix, weights in ``[0, 1]``.
    weighted : bool
        Use the weights; ``False`` uses the binary adjacency.

    Returns
    -------
    ndarray, shape (n,)
        Local efficiencies (0 for nodes with fewer than two neighbours).
    """
    lengths = connection_lengths(matrix, weighted=weighted)
    if weighted:
        return neighbourhood_efficiency(np.cbrt(lengths), np.cbrt(matrix))
    return neighbourhood_efficiency(lengths, (matrix != 0).astype(float))


__all__ = [
    "clustering_coefficient",
    "connection_lengths",
    "degree",
    "local_efficiency",
    "normalize_weights",
    "path_length_and_efficiency",
    "shortest_path_lengths",
    "strength",
]
