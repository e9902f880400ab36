"""Degree-preserving random networks and small-worldness (pure NumPy).

:func:`randomize_degree_preserving` is Maslov & Sneppen's edge swap (bctpy's
``randmio_und``: edge ``a-b`` and ``c-d`` become ``a-d`` and ``c-b``, weights moving
with their edges), vectorized: each round draws a random pairing of all edges,
evaluates every candidate swap at once and applies the non-conflicting valid ones.

References
----------
Maslov S, Sneppen K (2002). Specificity and stability in topology of protein
networks. Science 296:910-913.
Humphries MD, Gurney K (2008). Network 'small-world-ness': a quantitative method
for determining canonical network equivalence. PLoS ONE 3:e0002051.
"""

from __future__ import annotations

import numpy as np

from workflows.group.graph_measures import (
    clustering_coefficient,
    connection_lengths,
    path_length_and_efficiency,
    shortest_path_lengths,
)

#: Rounds without progress after which rewiring stops (e.g. complete graphs).
MAX_IDLE_ROUNDS = 20


def randomize_degree_preserving(
    matrix: np.ndarray,
    *,
    swaps_per_edge: float = 10.0,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, int]:
    """Random undirected network with exactly the same degree sequence.

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Symmetric connectivity matrix with a zero diagonal.
    swaps_per_edge : float
        Successful swaps to perform, per edge (bctpy's ``itr``).
    seed : int or numpy.random.Generator
        Random seed; the same seed gives the same network.

    Returns
    -------
    randomized : ndarray, shape (n, n)
        The rewired matrix (weights travel with their edges).
    n_swaps : int
        Number of swaps performed (lower than requested for near-complete graphs).
    """
    rng = np.random.default_rng(seed)
    n = len(matrix)
    upper_i, upper_j = np.nonzero(np.triu(matrix, 1))
    weights = matrix[upper_i, upper_j]
    n_edges = upper_i.size
    adjacency = matrix != 0
    target = int(round(swaps_per_edge * n_edges))
    done = idle = 0
    half = n_edges // 2
    while done < target and half > 0 and idle < MAX_IDLE_ROUNDS:
        order = rng.permutation(n_edges)
        first, second = order[:half], order[half : 2 * half]
        a, b = upper_i[first], upper_j[first]
        c, d = upper_i[second], upper_j[second]
        flip = rng.random(half) < 0.5
        c, d = np.where(flip, d, c), np.where(flip, c, d)
        valid = (a != c) & (a != d) & (b != c) & (b != d)
        valid &= ~adjacency[a, d] & ~adjacency[c, b]
        # two swaps of this round must not create the same edge
        new_keys = np.concatenate(
            [np.minimum(a, d) * n + np.maximum(a, d), np.minimum(c, b) * n + np.maximum(c, b)]
        )
        candidate = np.concatenate([valid, valid])
        counts = np.bincount(new_keys[candidate], minlength=n * n)
        duplicated = (counts[new_keys] > 1) & candidate
        valid &= ~(duplicated[:half] | duplicated[half:])
        valid_positions = np.flatnonzero(valid)
        remaining = target - done
        valid_positions = valid_positions[:remaining]
        if valid_positions.size == 0:
            idle += 1
            continue
        idle = 0
        a, b, c, d = a[valid_positions], b[valid_positions], c[valid_positions], d[valid_positions]
        adjacency[a, b] = adjacency[b, a] = adjacency[c, d] = adjacency[d, c] = False
        adjacency[a, d] = adjacency[d, a] = adjacency[c, b] = adjacency[b, c] = True
        upper_i[first[valid_positions]], upper_j[first[valid_positions]] = a, d
        upper_i[second[valid_positions]], upper_j[second[valid_positions]] = c, b
        done += valid_positions.size
    randomized = np.zeros_like(matrix)
    randomized[upper_i, upper_j] = weights
    randomized[upper_j, upper_i] = weights
    return randomized, done


def small_worldness(
    matrix: np.ndarray,
    *,
    weighted: bool = True,
    n_random: int = 10,
    swaps_per_edge: float = 10.0,
    seed: int = 0,
) -> dict[str, float]:
    """Small-world index sigma against degree-preserving random networks.

    ``sigma = (C / C_rand) / (L / L_rand)`` with C the mean clustering coefficient and L
    the characteristic path length, averaged over ``n_random`` randomizations.

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Symmetric connectivity matrix with a zero diagonal, weights in ``[0, 1]``.
    weighted : bool
        Weighted (``True``) or binary clustering and path length.
    n_random : int
        Number of random networks.
    swaps_per_edge : float
        Rewiring per edge of each random network.
    seed : int
        Seed of the random networks (network *r* uses ``seed`` and *r*).

    Returns
    -------
    dict
        ``clustering``, ``path_length``, ``clustering_random``, ``path_length_random``,
        ``small_world_gamma`` (C/C_rand), ``small_world_lambda`` (L/L_rand) and
        ``small_world_sigma``.
    """
    clustering = float(clustering_coefficient(matrix, weighted=weighted).mean())
    path_length, _ = path_length_and_efficiency(
        shortest_path_lengths(connection_lengths(matrix, weighted=weighted))
    )
    random_clustering, random_path_length = [], []
    for generator in np.random.default_rng(seed).spawn(n_random):
        randomized, _ = randomize_degree_preserving(
            matrix, swaps_per_edge=swaps_per_edge, seed=generator
        )
        random_clustering.append(clustering_coefficient(randomized, weighted=weighted).mean())
        random_path_length.append(
            path_length_and_efficiency(
                shortest_path_lengths(connection_lengths(randomized, weighted=weighted))
            )[0]
        )
    c_rand = float(np.mean(random_clustering)) if n_random else float("nan")
    l_rand = float(np.mean(random_path_length)) if n_random else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = clustering / c_rand if c_rand else float("nan")
        lam = path_length / l_rand if l_rand else float("nan")
        sigma = gamma / lam if lam else float("nan")
    return {
        "clustering": clustering,
        "path_length": path_length,
        "clustering_random": c_rand,
        "path_length_random": l_rand,
        "small_world_gamma": gamma,
        "small_world_lambda": lam,
        "small_world_sigma": sigma,
    }
