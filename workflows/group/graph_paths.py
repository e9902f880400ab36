"""All-pairs shortest path lengths of undirected connectomes, batched with PyTorch.

The Floyd-Warshall recursion ``D = min(D, D[:, p] + D[p, :])`` is run one pivot at a
time over a whole matrix (or a stack of matrices), so that each step is one vectorized
(SIMD) tensor operation instead of a scalar loop. Since
the graphs are undirected, ``D`` stays symmetric and the pivot column is read as the
(contiguous) pivot row. This halves the time of SciPy's compiled Floyd-Warshall in
double precision on one core; the neighbourhood graphs of the local efficiency are
stacked by size and solved together, which removes a Python loop over nodes.

Precision: hop counts (binary graphs) are small integers, exact in single precision;
weighted lengths use double precision unless the caller asks for single precision
(relative error below ``hops * 6e-8``), which :mod:`brainscale.workflows.group.graph_random` does
for random reference networks, whose Monte Carlo error is far larger.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

#: Largest number of matrix entries (stack size x n x n) solved together: the stack
#: then fits a core's L2 cache in double precision.
STACK_ENTRIES = 1 << 16


def _floyd_warshall_(distances: torch.Tensor) -> torch.Tensor:
    """Run Floyd-Warshall in place on a stack ``(B, n, n)`` of symmetric length matrices.

    ``inf`` marks a missing edge. Returns ``distances``.
    """
    buffer = torch.empty_like(distances)
    for pivot in range(distances.shape[-1]):
        row = distances[:, pivot, :]  # == the pivot column: the matrices are symmetric
        torch.add(row[:, :, None], row[:, None, :], out=buffer)
        torch.minimum(distances, buffer, out=distances)
    return distances


def _torch_dtype(lengths: np.ndarray, single_precision: bool) -> torch.dtype:
    """float32 when asked, or when every path length is an integer below 2**24 (exact)."""
    edges = lengths[lengths != 0]
    exact = edges.size == 0 or (
        edges.max() * len(lengths) < 1 << 24 and np.all(edges == np.round(edges))
    )
    return torch.float32 if single_precision or exact else torch.float64


def shortest_path_lengths(lengths: np.ndarray, *, single_precision: bool = False) -> np.ndarray:
    """All-pairs shortest path lengths (bct ``distance_wei`` / ``distance_bin``).

    Parameters
    ----------
    lengths : ndarray, shape (n, n)
        Symmetric edge lengths, 0 where there is no edge (see
        :func:`brainscale.workflows.group.graph_measures.connection_lengths`).
    single_precision : bool
        Compute in float32 (about twice as fast; relative error below
        ``hops * 6e-8``). Integer lengths (binary graphs) always use float32,
        which is exact for them.

    Returns
    -------
    ndarray, shape (n, n)
        Distances (float64); ``inf`` between disconnected nodes, 0 on the diagonal.
    """
    dtype = _torch_dtype(lengths, single_precision)
    distances = torch.from_numpy(np.where(lengths != 0, lengths, np.inf)).to(dtype)
    distances.fill_diagonal_(0.0)
    _floyd_warshall_(distances[None])
    return distances.numpy().astype(np.float64, copy=False)


def neighbour_table(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of every node as a padded table.

    Parameters
    ----------
    adjacency : ndarray of bool, shape (n, n)
        Symmetric adjacency.

    Returns
    -------
    table : ndarray of int, shape (n, max_degree)
        ``table[u, :degree[u]]`` are the neighbours of ``u`` in increasing order; the
        rest is ``n`` (an index past the last node, for padding).
    degree : ndarray of int, shape (n,)
        Number of neighbours.
    """
    n = len(adjacency)
    degree = adjacency.sum(axis=1)
    table = np.full((n, int(degree.max()) if n else 0), n)
    rows, cols = np.nonzero(adjacency)
    table[rows, np.arange(rows.size) - np.repeat(np.cumsum(degree) - degree, degree)] = cols
    return table, degree


def size_batches(sizes: np.ndarray, max_entries: int = STACK_ENTRIES) -> Iterator[np.ndarray]:
    """Group items by size so that each group's ``count * largest_size**2`` stays small.

    Parameters
    ----------
    sizes : ndarray of int
        Size of every item (e.g. the number of neighbours of every node).
    max_entries : int
        Target bound of ``count * largest_size**2`` (a group holds at least one item).

    Yields
    ------
    ndarray of int
        Item indices of one group, in increasing size.
    """
    order = np.argsort(sizes, kind="stable")
    start = 0
    while start < order.size:
        stop = start + 1
        while stop < order.size and (stop + 1 - start) * sizes[order[stop]] ** 2 <= max_entries:
            stop += 1
        yield order[start:stop]
        start = stop


def neighbourhood_efficiency(
    lengths: np.ndarray, pair_weights: np.ndarray, *, single_precision: bool = False
) -> np.ndarray:
    """Weighted mean inverse distance between the neighbours of every node, without it.

    For node ``u`` with neighbours ``N(u)`` (``k`` of them), returns
    ``sum_{j != h in N(u)} pair_weights[u, j] pair_weights[u, h] / d_u(j, h) / (k (k - 1))``,
    where ``d_u`` is the shortest path length in the graph of ``N(u)`` alone. This is the
    local efficiency (bct ``efficiency_bin(A, local=True)`` with unit lengths and weights;
    ``efficiency_wei(W, local=True)`` with the lengths and weights of Wang et al. 2017).
    Neighbourhoods of similar size are solved together (:func:`size_batches`).

    Parameters
    ----------
    lengths : ndarray, shape (n, n)
        Symmetric edge lengths, 0 where there is no edge.
    pair_weights : ndarray, shape (n, n)
        Weight of each neighbour ``j`` of each node ``u``.
    single_precision : bool
        See :func:`shortest_path_lengths`.

    Returns
    -------
    ndarray, shape (n,)
        0 for nodes with fewer than two neighbours.
    """
    n = len(lengths)
    out = np.zeros(n)
    table, degree = neighbour_table(lengths != 0)
    dtype = _torch_dtype(lengths, single_precision)
    padded = np.full((n + 1, n + 1), np.inf)
    padded[:n, :n] = np.where(lengths != 0, lengths, np.inf)
    weights = np.zeros((n, n + 1))
    weights[:, :n] = pair_weights
    candidates = np.flatnonzero(degree >= 2)
    for batch in size_batches(degree[candidates]):
        nodes = candidates[batch]
        k = int(degree[nodes].max())
        index = table[nodes, :k]
        distances = torch.from_numpy(padded[index[:, :, None], index[:, None, :]]).to(dtype)
        inverse = _floyd_warshall_(distances).reciprocal_().to(torch.float64)
        inverse.diagonal(dim1=1, dim2=2).zero_()
        w = torch.from_numpy(weights[nodes[:, None], index])
        total = torch.einsum("bj,bjh,bh->b", w, inverse, w).numpy()
        out[nodes] = total / (degree[nodes] * (degree[nodes] - 1.0))
    return out
