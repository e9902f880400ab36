"""Modules of undirected connectomes: Louvain partition, modularity, participation.

Pure NumPy; values equal the Brain Connectivity Toolbox's (bctpy ``modularity_und``
with a given partition, ``participation_coef``). The Louvain optimisation follows
bctpy's ``community_louvain`` (Blondel et al. 2008; modularity-matrix formulation),
with the node order drawn from a seeded generator, so a partition is reproducible.

References
----------
Blondel VD, Guillaume J-L, Lambiotte R, Lefebvre E (2008). Fast unfolding of
communities in large networks. J Stat Mech P10008.
Newman MEJ (2006). Modularity and community structure in networks. PNAS 103:8577.
Guimera R, Amaral LAN (2005). Functional cartography of complex metabolic networks.
Nature 433:895-900.
"""

from __future__ import annotations

import numpy as np

#: Smallest modularity gain that moves a node (bctpy's tolerance).
MOVE_TOLERANCE = 1e-10


def _membership(communities: np.ndarray) -> np.ndarray:
    """One-hot ``(n, n_modules)`` membership matrix of a label vector."""
    _, labels = np.unique(np.asarray(communities), return_inverse=True)
    onehot = np.zeros((labels.size, labels.max() + 1 if labels.size else 0))
    onehot[np.arange(labels.size), labels] = 1.0
    return onehot


def modularity(matrix: np.ndarray, communities: np.ndarray, *, gamma: float = 1.0) -> float:
    """Newman's modularity Q of a partition (bct ``modularity_und(W, gamma, kci)[1]``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix (non-negative weights).
    communities : array-like, shape (n,)
        Module label of every node.
    gamma : float
        Resolution parameter.

    Returns
    -------
    float
        ``sum_ij (W_ij - gamma k_i k_j / 2m) delta(c_i, c_j) / 2m``.
    """
    total = matrix.sum()
    if total == 0:
        return 0.0
    membership = _membership(communities)
    within = np.sum(membership * (matrix @ membership))
    module_strength = matrix.sum(axis=0) @ membership
    return float((within - gamma * np.sum(module_strength**2) / total) / total)


def participation_coefficient(matrix: np.ndarray, communities: np.ndarray) -> np.ndarray:
    """Participation coefficient of every node (bct ``participation_coef``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix.
    communities : array-like, shape (n,)
        Module label of every node.

    Returns
    -------
    ndarray, shape (n,)
        ``1 - sum_m (k_im / k_i)^2``; 0 for nodes without edges.
    """
    node_strength = matrix.sum(axis=1)
    per_module = matrix @ _membership(communities)
    out = np.zeros(len(matrix))
    has = node_strength != 0
    out[has] = 1.0 - np.sum(per_module[has] ** 2, axis=1) / node_strength[has] ** 2
    return out


def louvain_communities(
    matrix: np.ndarray, *, gamma: float = 1.0, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, float]:
    """Modules maximizing modularity with the Louvain method, reproducible with ``seed``.

    Each level moves nodes, in a random order, to the neighbouring module with the
    largest modularity gain until no move improves Q, then merges modules into nodes
    and repeats until nothing changes (bctpy ``community_louvain`` algorithm).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Undirected connectivity matrix (non-negative weights).
    gamma : float
        Resolution parameter.
    seed : int or numpy.random.Generator
        Seed of the node visiting order.

    Returns
    -------
    communities : ndarray of int, shape (n,)
        Module labels, numbered 1.. in order of first appearance.
    q : float
        Modularity of the partition.
    """
    rng = np.random.default_rng(seed)
    n = len(matrix)
    total = matrix.sum()
    if n == 0 or total == 0:
        return np.arange(1, n + 1), 0.0
    node_strength = matrix.sum(axis=0)
    level_matrix = (matrix - gamma * np.outer(node_strength, node_strength) / total) / total
    level_matrix = (level_matrix + level_matrix.T) / 2
    labels = np.arange(n)  # module of every original node
    while True:
        level_labels = _move_nodes(level_matrix, rng)
        n_level = level_labels.max() + 1
        if n_level == len(level_matrix):
            break
        labels = level_labels[labels]
        membership = np.zeros((len(level_matrix), n_level))
        membership[np.arange(len(level_matrix)), level_labels] = 1.0
        level_matrix = membership.T @ level_matrix @ membership
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    _, inverse = np.unique(labels, return_inverse=True)
    communities = order[inverse] + 1
    return communities, modularity(matrix, communities, gamma=gamma)


def _move_nodes(level_matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Local moving phase on a modularity matrix; returns labels renumbered 0..m-1."""
    n = len(level_matrix)
    labels = np.arange(n)
    # gain[u, c]: sum of the modularity matrix between node u and module c
    gain = level_matrix.copy()
    diagonal = np.diag(level_matrix).copy()
    moved = True
    while moved:
        moved = False
        for u in rng.permutation(n):
            current = labels[u]
            delta = gain[u] - gain[u, current] + diagonal[u]
            delta[current] = 0.0
            best = int(np.argmax(delta))
            if delta[best] > MOVE_TOLERANCE:
                moved = True
                gain[:, best] += level_matrix[:, u]
                gain[:, current] -= level_matrix[:, u]
                labels[u] = best
    _, renumbered = np.unique(labels, return_inverse=True)
    return renumbered
