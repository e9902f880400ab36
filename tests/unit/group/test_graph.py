"""Graph metrics: equality with bctpy on random and real-like connectomes, and invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.group import graph_measures as gm
from brainscale.workflows.group.graph import (
    graph_metrics,
    graph_metrics_table,
    prepare_connectome,
    threshold_absolute,
    threshold_proportional,
)
from brainscale.workflows.group.graph_communities import (
    louvain_communities,
    modularity,
    participation_coefficient,
)
from brainscale.workflows.group.graph_paths import shortest_path_lengths
from brainscale.workflows.group.graph_random import (
    SWAPS_PER_EDGE,
    random_networks,
    randomize_degree_preserving,
    small_worldness,
)

bct = pytest.importorskip("bct")
# bctpy's participation_coef divides 0 by 0 for isolated nodes before zeroing them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in divide")
TOLERANCE = 1e-6


# --------------------------------------------------------------------------- matrices
def random_weights(n: int, seed: int) -> np.ndarray:
    """Symmetric uniform random weights with a zero diagonal."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)), 1)
    return upper + upper.T


def functional_like(n_nodes=48, n_modules=4, n_timepoints=150, seed=0) -> np.ndarray:
    """Correlation matrix of time series with a modular structure (has negative r)."""
    rng = np.random.default_rng(seed)
    module = np.arange(n_nodes) % n_modules
    shared = rng.normal(size=(n_timepoints, n_modules))
    series = 0.8 * shared[:, module] + rng.normal(size=(n_timepoints, n_nodes))
    series[:, : n_nodes // 6] -= 0.5 * shared[:, [1]]  # some anticorrelations
    return np.corrcoef(series.T)


def structural_like(n_nodes=40, seed=0) -> np.ndarray:
    """Sparse heavy-tailed streamline counts, distance-dependent, one isolated node."""
    rng = np.random.default_rng(seed)
    position = rng.uniform(0, 100, (n_nodes, 3))
    distance = np.linalg.norm(position[:, None] - position[None], axis=-1)
    probability = np.exp(-distance / 25)
    counts = rng.poisson(200 * probability * rng.lognormal(0, 1, (n_nodes, n_nodes)))
    counts = np.triu(counts * (rng.random((n_nodes, n_nodes)) < probability), 1)
    counts = (counts + counts.T).astype(float)
    counts[7, :] = counts[:, 7] = 0.0
    return counts


def bct_reference(matrix: np.ndarray, weighted: bool, communities: np.ndarray) -> dict:
    """Every measure computed by bctpy on an already prepared matrix."""
    normalized = bct.normalize(matrix) if matrix.any() else matrix
    if weighted:
        distances = bct.distance_wei(bct.invert(normalized))[0]
        clustering = bct.clustering_coef_wu(normalized)
        local = bct.efficiency_wei(normalized, local=True)
        efficiency = bct.efficiency_wei(normalized)
    else:
        distances = bct.distance_bin(matrix)
        clustering = bct.clustering_coef_bu(matrix)
        local = bct.efficiency_bin(matrix, local=True)
        efficiency = bct.efficiency_bin(matrix)
    return {
        "degree": bct.degrees_und(matrix),
        "strength": bct.strengths_und(matrix),
        "clustering": clustering,
        "local_efficiency": local,
        "participation": bct.participation_coef(matrix, communities),
        "characteristic_path_length": bct.charpath(distances, include_infinite=False)[0],
        "global_efficiency": efficiency,
        "modularity": bct.modularity_und(matrix, 1, kci=communities)[1],
    }


def assert_equals_bct(matrix: np.ndarray, *, binary: bool, **options) -> None:
    """graph_metrics() on ``matrix`` equals bctpy on the same prepared matrix."""
    result = graph_metrics(matrix, binary=binary, n_random=0, **options)
    prepared = prepare_connectome(matrix, binary=binary, **options)
    expected = bct_reference(prepared, not binary, result.nodal_metrics["module"].to_numpy())
    for column in ("degree", "strength", "clustering", "local_efficiency", "participation"):
        np.testing.assert_allclose(
            result.nodal_metrics[column], expected[column], rtol=0, atol=TOLERANCE, err_msg=column
        )
    for key in ("characteristic_path_length", "global_efficiency", "modularity"):
        assert result.global_metrics[key] == pytest.approx(expected[key], abs=TOLERANCE), key


# ------------------------------------------------------------- equality with bctpy
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("proportion", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("binary", [False, True], ids=["weighted", "binary"])
def test_random_matrices_equal_bctpy(seed, proportion, binary):
    assert_equals_bct(random_weights(40, seed), binary=binary, threshold=proportion)


@pytest.mark.parametrize("binary", [False, True], ids=["weighted", "binary"])
@pytest.mark.parametrize("negative_weights", ["zero", "absolute"])
def test_functional_like_matrices_equal_bctpy(binary, negative_weights):
    matrix = functional_like()
    assert (matrix < 0).any()
    assert_equals_bct(matrix, binary=binary, negative_weights=negative_weights, threshold=0.15)
    assert_equals_bct(
        matrix,
        binary=binary,
        negative_weights=negative_weights,
        threshold=0.2,
        threshold_mode="absolute",
    )


@pytest.mark.parametrize("binary", [False, True], ids=["weighted", "binary"])
def test_structural_like_matrix_with_isolated_node_equals_bctpy(binary):
    matrix = structural_like()
    assert_equals_bct(matrix, binary=binary)
    nodal = graph_metrics(matrix, binary=binary, n_random=0).nodal_metrics
    assert nodal.loc[7, ["degree", "strength", "clustering", "participation"]].eq(0).all()


@pytest.mark.parametrize("proportion", [0.0, 0.1, 0.37, 1.0])
def test_proportional_threshold_equals_bctpy(proportion):
    matrix = functional_like()
    np.testing.assert_array_equal(
        threshold_proportional(matrix, proportion), bct.threshold_proportional(matrix, proportion)
    )


def test_absolute_threshold_equals_bctpy():
    matrix = functional_like()
    np.testing.assert_array_equal(
        threshold_absolute(matrix, 0.25), bct.threshold_absolute(matrix, 0.25)
    )


def test_shortest_paths_equal_bctpy_dijkstra():
    lengths = gm.connection_lengths(bct.normalize(structural_like()))
    np.testing.assert_allclose(
        gm.shortest_path_lengths(lengths), bct.distance_wei(lengths)[0], rtol=1e-12
    )


def test_binary_shortest_paths_equal_bctpy_and_single_precision_is_close():
    matrix = structural_like()
    binary = (matrix != 0).astype(float)
    np.testing.assert_array_equal(shortest_path_lengths(binary), bct.distance_bin(binary))
    lengths = gm.connection_lengths(bct.normalize(matrix))
    double, single = gm.shortest_path_lengths(lengths), shortest_path_lengths(
        lengths, single_precision=True
    )
    np.testing.assert_array_equal(np.isinf(single), np.isinf(double))
    finite = np.isfinite(double) & (double > 0)
    assert np.max(np.abs(single[finite] / double[finite] - 1)) < 1e-6


def test_modularity_and_participation_equal_bctpy_for_any_partition():
    matrix = threshold_proportional(np.abs(functional_like()), 0.3)
    partition = np.random.default_rng(5).integers(1, 6, len(matrix))
    assert modularity(matrix, partition, gamma=1.3) == pytest.approx(
        bct.modularity_und(matrix, 1.3, kci=partition)[1], abs=TOLERANCE
    )
    np.testing.assert_allclose(
        participation_coefficient(matrix, partition),
        bct.participation_coef(matrix, partition),
        atol=TOLERANCE,
    )


# ----------------------------------------------------------------- Louvain
def planted_partition(n_modules=4, size=15, p_in=0.6, p_out=0.03, seed=0):
    """Binary graph with known modules."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_modules), size)
    probability = np.where(truth[:, None] == truth[None], p_in, p_out)
    upper = np.triu(rng.random(probability.shape) < probability, 1).astype(float)
    return upper + upper.T, truth


def same_partition(labels_a, labels_b) -> bool:
    """Two label vectors describe the same partition (up to renaming)."""
    pairs = set(zip(labels_a.tolist(), labels_b.tolist(), strict=True))
    return len(pairs) == len(set(labels_a.tolist())) == len(set(labels_b.tolist()))


def test_louvain_recovers_planted_modules_and_matches_bctpy_q():
    matrix, truth = planted_partition()
    communities, q = louvain_communities(matrix, seed=11)
    assert same_partition(communities, truth)
    assert q == pytest.approx(bct.modularity_und(matrix, kci=truth + 1)[1], abs=TOLERANCE)
    assert q >= bct.community_louvain(matrix, seed=11)[1] - TOLERANCE


def test_louvain_partition_is_reproducible_with_seed():
    matrix = threshold_proportional(np.abs(functional_like(seed=3)), 0.3)
    runs = [louvain_communities(matrix, seed=7)[0] for _ in range(3)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    qs = [louvain_communities(matrix, seed=s)[1] for s in range(8)]
    bct_qs = [bct.community_louvain(matrix, seed=s)[1] for s in range(8)]
    # same optimiser: the quality reached is that of bctpy's Louvain
    assert np.mean(qs) == pytest.approx(np.mean(bct_qs), abs=0.01)


# ------------------------------------------------------- random networks, small world
def test_randomization_preserves_degrees_and_weights_and_is_seeded():
    matrix = threshold_proportional(random_weights(50, 2), 0.1)
    randomized, n_swaps = randomize_degree_preserving(matrix, swaps_per_edge=5, seed=4)
    n_edges = np.count_nonzero(np.triu(matrix))
    assert n_swaps == 5 * n_edges
    np.testing.assert_array_equal(gm.degree(randomized), gm.degree(matrix))
    np.testing.assert_array_equal(randomized, randomized.T)
    assert not np.diag(randomized).any()
    np.testing.assert_array_equal(np.sort(randomized[randomized > 0]), np.sort(matrix[matrix > 0]))
    kept = np.count_nonzero((randomized != 0) & (matrix != 0)) / np.count_nonzero(matrix)
    assert kept < 0.3  # most edges moved
    again, _ = randomize_degree_preserving(matrix, swaps_per_edge=5, seed=4)
    np.testing.assert_array_equal(again, randomized)
    other, _ = randomize_degree_preserving(matrix, swaps_per_edge=5, seed=5)
    assert not np.array_equal(other, randomized)


def test_random_networks_are_independent_degree_preserving_rewirings():
    matrix = threshold_proportional(random_weights(40, 3), 0.2)
    networks, n_swaps = random_networks(matrix, 4, swaps_per_edge=3, seed=2)
    n_edges = np.count_nonzero(np.triu(matrix))
    np.testing.assert_array_equal(n_swaps, 3 * n_edges)
    for network in networks:
        np.testing.assert_array_equal(gm.degree(network), gm.degree(matrix))
        np.testing.assert_array_equal(network, network.T)
        # no edge created twice (it would lose a weight)
        np.testing.assert_array_equal(np.sort(network[network > 0]), np.sort(matrix[matrix > 0]))
    assert len({network.tobytes() for network in networks}) == 4
    # a complete graph cannot be rewired: the rewiring stops instead of looping forever
    complete = np.ones((6, 6)) - np.eye(6)
    unchanged, none = random_networks(complete, 2, seed=0)
    np.testing.assert_array_equal(none, 0)
    np.testing.assert_array_equal(unchanged[1], complete)


def ring_lattice(n=100, k=8, rewire=0.05, seed=0):
    """Watts-Strogatz graph: ring lattice with a few rewired edges."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((n, n))
    for step in range(1, k // 2 + 1):
        for i in range(n):
            j = (i + step) % n
            if rng.random() < rewire:
                j = rng.choice([x for x in range(n) if x != i and matrix[i, x] == 0])
            matrix[i, j] = matrix[j, i] = 1.0
    return matrix


def test_small_worldness_of_watts_strogatz_and_random_graphs():
    small_world = small_worldness(ring_lattice(), weighted=False, n_random=5, seed=1)
    assert small_world["small_world_sigma"] > 3
    rng = np.random.default_rng(0)
    upper = np.triu(rng.random((100, 100)) < 0.08, 1).astype(float)
    random_graph = small_worldness(upper + upper.T, weighted=False, n_random=5, seed=1)
    assert random_graph["small_world_sigma"] == pytest.approx(1.0, abs=0.15)
    again = small_worldness(ring_lattice(), weighted=False, n_random=5, seed=1)
    assert again == small_world


def test_default_rewiring_reaches_the_random_networks_of_longer_rewiring():
    """The documented choice of SWAPS_PER_EDGE: C and L of the random networks equal
    those of 4x longer rewiring, within the Monte Carlo error of 24 networks."""
    lattice = ring_lattice(n=120, k=10, rewire=0.0)

    def reference(swaps):
        networks, _ = random_networks(lattice, 24, swaps_per_edge=swaps, seed=int(swaps))
        c = [gm.clustering_coefficient(r, weighted=False).mean() for r in networks]
        lengths = [
            gm.path_length_and_efficiency(shortest_path_lengths(gm.connection_lengths(r)))[0]
            for r in networks
        ]
        return np.array(c), np.array(lengths)

    for short, long in zip(reference(SWAPS_PER_EDGE), reference(4 * SWAPS_PER_EDGE), strict=True):
        standard_error = np.hypot(short.std(ddof=1), long.std(ddof=1)) / np.sqrt(len(short))
        assert abs(short.mean() - long.mean()) < 4 * standard_error
    # and far from the lattice they started from
    assert reference(SWAPS_PER_EDGE)[0].mean() < 0.3 * gm.clustering_coefficient(
        lattice, weighted=False
    ).mean()


# ---------------------------------------------------------------------- API
def test_graph_metrics_reads_a_relmat_table_and_reports_per_node():
    names = [f"ctx-lh-region{i}" for i in range(48)]
    relmat = pd.DataFrame(functional_like(), index=pd.Index(names, name="node"), columns=names)
    result = graph_metrics(relmat, threshold=0.2, n_random=2)
    global_metrics, nodal = result
    assert list(nodal.index) == names
    assert nodal.index.name == "node"
    assert global_metrics["n_edges"] == round(48 * 47 / 2 * 0.2)
    assert global_metrics["density"] == pytest.approx(0.2, abs=0.01)
    assert global_metrics["n_modules"] == nodal["module"].nunique()
    assert global_metrics["small_world_sigma"] > 0


def test_graph_metrics_table_stacks_connectomes():
    connectomes = {"sub-01": functional_like(seed=1), "sub-02": functional_like(seed=2)}
    global_table, nodal_table = graph_metrics_table(connectomes, threshold=0.2, n_random=0)
    assert list(global_table.index) == ["sub-01", "sub-02"]
    assert nodal_table.shape[0] == 2 * 48
    parallel = graph_metrics_table(connectomes, threshold=0.2, n_random=0, n_jobs=2)
    pd.testing.assert_frame_equal(parallel[0], global_table)
    pd.testing.assert_frame_equal(parallel[1], nodal_table)
    single = graph_metrics(connectomes["sub-02"], threshold=0.2, n_random=0)
    assert (
        global_table.loc["sub-02", "global_efficiency"]
        == single.global_metrics["global_efficiency"]
    )


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones((3, 4)), "square"),
        (np.array([[0, 1.0], [0.5, 0]]), "symmetric"),
        (np.array([[0, np.nan], [np.nan, 0]]), "NaN"),
    ],
)
def test_bad_matrices_raise_input_data_error(matrix, message):
    with pytest.raises(InputDataError, match=message):
        graph_metrics(matrix)
