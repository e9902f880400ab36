r"""Graph metrics of functional and structural connectomes.

:func:`graph_metrics` prepares one connectivity matrix (negative weights, diagonal,
threshold, weighted or binary) and returns its global metrics (a mapping) and nodal
metrics (a DataFrame, one row per node). The measures are those of the Brain
Connectivity Toolbox (bctpy), vectorized (see :mod:`brainscale.workflows.group.graph_measures`,
:mod:`brainscale.workflows.group.graph_paths`, :mod:`brainscale.workflows.group.graph_communities`,
:mod:`brainscale.workflows.group.graph_random`).

Cost on one core, 400 regions at 15 % density: about 75 ms per connectome without
small-worldness (local efficiency, then the all-pairs shortest paths, dominate),
about 290x less than bctpy, so 10,000 connectomes take about 12 CPU-minutes
(:func:`graph_metrics_table` spreads them over ``n_jobs`` processes). Small-worldness
adds about 26 ms per random network and connectome: 10 random networks (``n_random``)
multiply the cost by 4.5 (``benchmarks/bench_group_harmonize_graph.py``).

Examples
--------
>>> relmat = pd.read_csv("sub-01_atlas-X_meas-PearsonCorrelation_relmat.tsv",
...                      sep="\\t", index_col="node")          # doctest: +SKIP
>>> global_metrics, nodal = graph_metrics(relmat, threshold=0.15)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from brainscale.errors import InputDataError
from brainscale.workflows.group.graph_communities import (
    louvain_communities,
    participation_coefficient,
)
from brainscale.workflows.group.graph_measures import (
    clustering_coefficient,
    connection_lengths,
    degree,
    local_efficiency,
    normalize_weights,
    path_length_and_efficiency,
    shortest_path_lengths,
    strength,
)
from brainscale.workflows.group.graph_random import small_worldness

ThresholdMode = Literal["proportional", "absolute"]
NegativeWeights = Literal["zero", "absolute"]


class GraphMetrics(NamedTuple):
    """Global metrics (a mapping) and nodal metrics (a DataFrame indexed by node)."""

    global_metrics: dict[str, float]
    nodal_metrics: pd.DataFrame


def threshold_proportional(matrix: np.ndarray, proportion: float) -> np.ndarray:
    """Keep the strongest ``proportion`` of all possible edges (bct ``threshold_proportional``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Symmetric connectivity matrix.
    proportion : float
        Fraction in ``[0, 1]`` of the ``n (n - 1) / 2`` node pairs to keep, counted
        over all pairs, whether or not they already have an edge.

    Returns
    -------
    ndarray, shape (n, n)
        Symmetric matrix with the diagonal and the other edges set to 0 (ties broken
        by position).
    """
    if not 0 <= proportion <= 1:
        raise ValueError(f"proportional threshold must be in [0, 1], got {proportion}")
    n = len(matrix)
    rows, cols = np.triu_indices(n, 1)
    values = matrix[rows, cols]
    present = np.flatnonzero(values)
    n_keep = int(np.floor(n * (n - 1) / 2 * proportion + 0.5))  # bct's round half up
    if n_keep >= present.size:
        keep = present
    elif n_keep == 0:
        keep = present[:0]
    else:
        # the n_keep largest values, ties at the cut broken by position: a partition
        # (linear time) instead of a full sort
        candidates = values[present]
        cut = np.partition(candidates, candidates.size - n_keep)[candidates.size - n_keep]
        above = candidates > cut
        tied = np.flatnonzero(candidates == cut)[: n_keep - np.count_nonzero(above)]
        above[tied] = True
        keep = present[above]
    out = np.zeros_like(matrix)
    out[rows[keep], cols[keep]] = values[keep]
    return out + out.T


def threshold_absolute(matrix: np.ndarray, threshold: float) -> np.ndarray:
    """Set weights below ``threshold`` and the diagonal to 0 (bct ``threshold_absolute``).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Connectivity matrix.
    threshold : float
        Smallest weight kept.

    Returns
    -------
    ndarray, shape (n, n)
        Thresholded copy.
    """
    out = np.where(matrix < threshold, 0.0, matrix).astype(float)
    np.fill_diagonal(out, 0.0)
    return out


def prepare_connectome(
    matrix: np.ndarray,
    *,
    threshold: float | None = None,
    threshold_mode: ThresholdMode = "proportional",
    binary: bool = False,
    negative_weights: NegativeWeights = "zero",
) -> np.ndarray:
    """Validate a connectome and apply the weight policy, threshold and binarization.

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Symmetric connectivity matrix (finite values).
    threshold : float or None
        Proportion of edges kept (``threshold_mode="proportional"``) or smallest
        weight kept (``"absolute"``); ``None`` keeps every edge.
    threshold_mode : {"proportional", "absolute"}
        How ``threshold`` is read.
    binary : bool
        Replace the remaining weights by 1.
    negative_weights : {"zero", "absolute"}
        Drop negative weights (anticorrelations), or use their magnitude.

    Returns
    -------
    ndarray, shape (n, n)
        Non-negative symmetric matrix with a zero diagonal.
    """
    matrix = np.array(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputDataError(f"connectivity matrix must be square, got shape {matrix.shape}")
    # Self-connections carry no graph information (Fisher z matrices store n/a there).
    np.fill_diagonal(matrix, 0.0)
    if not np.isfinite(matrix).all():
        raise InputDataError("connectivity matrix has missing (NaN) or infinite values")
    if not np.allclose(matrix, matrix.T, rtol=1e-6, atol=1e-9):
        raise InputDataError("connectivity matrix is not symmetric")
    matrix = (matrix + matrix.T) / 2
    if negative_weights == "zero":
        matrix[matrix < 0] = 0.0
    elif negative_weights == "absolute":
        matrix = np.abs(matrix)
    else:
        raise ValueError(f"negative_weights must be 'zero' or 'absolute', not {negative_weights!r}")
    if threshold is not None:
        if threshold_mode == "proportional":
            matrix = threshold_proportional(matrix, threshold)
        elif threshold_mode == "absolute":
            matrix = threshold_absolute(matrix, threshold)
        else:
            raise ValueError(
                f"threshold_mode must be 'proportional' or 'absolute', not {threshold_mode!r}"
            )
    if binary:
        matrix = (matrix != 0).astype(float)
    return matrix


def graph_metrics(
    matrix: np.ndarray | pd.DataFrame,
    *,
    node_names: Sequence[str] | None = None,
    threshold: float | None = None,
    threshold_mode: ThresholdMode = "proportional",
    binary: bool = False,
    negative_weights: NegativeWeights = "zero",
    gamma: float = 1.0,
    n_random: int = 10,
    seed: int = 0,
    with_local_efficiency: bool = True,
) -> GraphMetrics:
    """Global and nodal graph metrics of one connectome.

    Weighted metrics use weights normalized to ``[0, 1]`` by the largest weight
    (as the BCT requires); strength uses the original weights. Path lengths use
    ``1 / w`` (weighted) or 1 (binary).

    Parameters
    ----------
    matrix : ndarray or DataFrame, shape (n, n)
        Symmetric connectivity matrix; a DataFrame (e.g. a ``_relmat.tsv`` read with
        ``index_col="node"``) gives the node names.
    node_names : sequence of str, optional
        Node names (default: the DataFrame's columns or ``0..n-1``).
    threshold, threshold_mode, binary, negative_weights
        See :func:`prepare_connectome`.
    gamma : float
        Modularity resolution.
    n_random : int
        Degree-preserving random networks for small-worldness (0 to skip); each one
        costs about a third of the other metrics together.
    seed : int
        Seed of the Louvain node order and of the random networks.
    with_local_efficiency : bool
        Compute the local efficiency (the costliest measure).

    Returns
    -------
    GraphMetrics
        ``global_metrics``: n_nodes, n_edges, density, mean_degree, mean_strength,
        clustering, characteristic_path_length, global_efficiency, local_efficiency,
        modularity, n_modules and the small-world values of
        :func:`~brainscale.workflows.group.graph_random.small_worldness`;
        ``nodal_metrics``: degree, strength, clustering, local_efficiency, module and
        participation per node.

    Examples
    --------
    A complete graph has density, clustering and global efficiency 1:

    >>> complete = np.ones((4, 4)) - np.eye(4)
    >>> metrics = graph_metrics(complete, n_random=0).global_metrics
    >>> metrics["density"], metrics["clustering"], metrics["global_efficiency"]
    (1.0, 1.0, 1.0)
    """
    if isinstance(matrix, pd.DataFrame):
        node_names = list(matrix.columns) if node_names is None else node_names
        matrix = matrix.to_numpy(dtype=float)
    prepared = prepare_connectome(
        matrix,
        threshold=threshold,
        threshold_mode=threshold_mode,
        binary=binary,
        negative_weights=negative_weights,
    )
    n = len(prepared)
    node_names = list(range(n)) if node_names is None else list(node_names)
    if len(node_names) != n:
        raise InputDataError(f"{len(node_names)} node names for a {n}-node connectome")
    weighted = not binary
    normalized = normalize_weights(prepared)
    clustering = clustering_coefficient(normalized, weighted=weighted)
    path_length, efficiency = path_length_and_efficiency(
        shortest_path_lengths(connection_lengths(normalized, weighted=weighted))
    )
    local = (
        local_efficiency(normalized, weighted=weighted)
        if with_local_efficiency
        else np.full(n, np.nan)
    )
    modules, q = louvain_communities(prepared, gamma=gamma, seed=seed)
    node_degree = degree(prepared)
    n_edges = int(np.count_nonzero(np.triu(prepared, 1)))
    global_metrics = {
        "n_nodes": n,
        "n_edges": n_edges,
        "density": 2 * n_edges / (n * (n - 1)) if n > 1 else 0.0,
        "mean_degree": float(node_degree.mean()),
        "mean_strength": float(strength(prepared).mean()),
        "clustering": float(clustering.mean()),
        "characteristic_path_length": path_length,
        "global_efficiency": efficiency,
        "local_efficiency": float(local.mean()),
        "modularity": q,
        "n_modules": int(modules.max()) if n else 0,
    }
    if n_random > 0:
        small_world = small_worldness(
            normalized,
            weighted=weighted,
            n_random=n_random,
            seed=seed,
            clustering=global_metrics["clustering"],
            path_length=path_length,
        )
        for key in ("clustering_random", "path_length_random"):
            global_metrics[key] = small_world[key]
        for key in ("small_world_gamma", "small_world_lambda", "small_world_sigma"):
            global_metrics[key] = small_world[key]
    nodal = pd.DataFrame(
        {
            "degree": node_degree,
            "strength": strength(prepared),
            "clustering": clustering,
            "local_efficiency": local,
            "module": modules,
            "participation": participation_coefficient(prepared, modules),
        },
        index=pd.Index(node_names, name="node"),
    )
    return GraphMetrics(global_metrics, nodal)


def graph_metrics_table(
    connectomes: Mapping[str, np.ndarray | pd.DataFrame], *, n_jobs: int = 1, **options
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Graph metrics of many connectomes, as two tidy tables.

    Parameters
    ----------
    connectomes : mapping of str to matrix
        Connectome of each participant (or participant and session) label.
    n_jobs : int
        Worker processes (joblib; ``-1``: one per CPU). The tables do not depend on it.
    **options
        Keyword arguments of :func:`graph_metrics` (the same for every connectome).

    Returns
    -------
    global_table : DataFrame
        One row per connectome (index: the labels), one column per global metric.
    nodal_table : DataFrame
        One row per connectome and node (MultiIndex ``label``, ``node``).

    Examples
    --------
    >>> complete = np.ones((4, 4)) - np.eye(4)
    >>> global_table, nodal = graph_metrics_table(
    ...     {"sub-01": complete, "sub-02": complete}, n_random=0, threshold=None)
    >>> global_table["density"].tolist(), nodal.shape[0]
    ([1.0, 1.0], 8)
    """
    labels = list(connectomes)
    if n_jobs == 1:
        results = [graph_metrics(connectomes[label], **options) for label in labels]
    else:
        results = Parallel(n_jobs=n_jobs)(
            delayed(graph_metrics)(connectomes[label], **options) for label in labels
        )
    global_table = pd.DataFrame.from_records(
        [result.global_metrics for result in results], index=pd.Index(labels, name="label")
    )
    nodal_table = (
        pd.concat(
            {label: result.nodal_metrics for label, result in zip(labels, results, strict=True)},
            names=["label"],
        )
        if results
        else pd.DataFrame()
    )
    return global_table, nodal_table
