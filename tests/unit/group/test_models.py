"""Torch estimators: they learn constructed rules, are seeded, and save/reload exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, r2_score

from brainscale.workflows.group.models import (
    BrainNetCNNClassifier,
    BrainNetCNNNetwork,
    TorchMLPClassifier,
    TorchMLPRegressor,
    n_nodes_from_edges,
    resolve_device,
    save_torch,
    save_torch_model,
)


def _xor(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = np.where(X[:, 0] * X[:, 1] > 0, "a", "b")
    return X, y


def test_resolve_device_picks_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


def test_edge_count_must_be_triangular():
    assert n_nodes_from_edges(15) == 6
    assert n_nodes_from_edges(79800) == 400
    with pytest.raises(ValueError, match="upper triangle"):
        n_nodes_from_edges(14)


def test_mlp_learns_a_nonlinear_rule_a_linear_model_cannot():
    X, y = _xor(600, 0)
    X_test, y_test = _xor(400, 1)
    mlp = TorchMLPClassifier(hidden=(32,), epochs=150, learning_rate=1e-2, device="cpu", seed=0)
    mlp.fit(X, y)
    linear = LogisticRegression().fit(X, y)
    assert balanced_accuracy_score(y_test, mlp.predict(X_test)) > 0.9
    assert balanced_accuracy_score(y_test, linear.predict(X_test)) < 0.65
    proba = mlp.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert list(mlp.classes_) == ["a", "b"]
    # the two informative inputs carry the largest saliency
    assert set(np.argsort(mlp.feature_importances_)[-2:]) == {0, 1}


def test_mlp_regressor_recovers_a_smooth_function_in_target_units():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(800, 3))
    y = 40 + 10 * np.sin(X[:, 0]) + 5 * X[:, 1] ** 2
    model = TorchMLPRegressor(hidden=(64, 64), epochs=200, learning_rate=3e-3, device="cpu").fit(
        X[:600], y[:600]
    )
    assert r2_score(y[600:], model.predict(X[600:])) > 0.9


def test_training_is_seeded():
    X, y = _xor(200, 0)
    base = TorchMLPClassifier(epochs=20, device="cpu", seed=3)
    first = clone(base).fit(X, y).predict_proba(X)
    second = clone(base).fit(X, y).predict_proba(X)
    other = clone(base).set_params(seed=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def _connectomes(n: int, n_nodes: int, seed: int):
    """Class 1 has a stronger hub at node 0; everything else is noise."""
    rng = np.random.default_rng(seed)
    matrices = rng.normal(0, 1, (n, n_nodes, n_nodes))
    matrices = (matrices + matrices.transpose(0, 2, 1)) / 2
    y = rng.integers(0, 2, n)
    matrices[y == 1, 0, :] += 0.8
    matrices[y == 1, :, 0] += 0.8
    rows, cols = np.triu_indices(n_nodes, 1)
    return matrices[:, rows, cols], y


def test_brainnetcnn_finds_a_hub_difference():
    X, y = _connectomes(400, 10, 0)
    X_test, y_test = _connectomes(300, 10, 1)
    model = BrainNetCNNClassifier(epochs=60, learning_rate=3e-3, device="cpu", seed=0).fit(X, y)
    assert balanced_accuracy_score(y_test, model.predict(X_test)) > 0.9


def test_brainnetcnn_rebuilds_a_symmetric_matrix_from_edges():
    network = BrainNetCNNNetwork(5, 2, (2, 2, 2), 0.0)
    edges = torch.arange(1, 11, dtype=torch.float32)[None]
    captured = {}
    network.e2e.register_forward_pre_hook(lambda _m, args: captured.update(x=args[0]))
    network(edges)
    matrix = captured["x"][0, 0]
    assert torch.equal(matrix, matrix.T)
    assert torch.equal(torch.diagonal(matrix), torch.zeros(5))
    assert matrix[0, 1] == 1 and matrix[0, 4] == 4 and matrix[3, 4] == 10


def test_saved_weights_reproduce_predictions(tmp_path):
    X, y = _xor(200, 0)
    model = TorchMLPClassifier(epochs=10, device="cpu").fit(X, y)
    save_torch_model(model, tmp_path / "mlp.pt")
    saved = torch.load(tmp_path / "mlp.pt")
    assert saved["class"] == "TorchMLPClassifier" and saved["n_features_in"] == 6
    twin = clone(model).set_params(epochs=0).fit(X, y)
    twin.network_.load_state_dict(saved["state_dict"])
    np.testing.assert_allclose(twin.predict_proba(X), model.predict_proba(X), rtol=1e-6)


class _Unpicklable:
    def __reduce__(self):
        raise KeyboardInterrupt  # a kill while torch.save is writing


def test_save_torch_killed_midway_keeps_the_previous_model(tmp_path):
    path = tmp_path / "models" / "mlp.pt"
    save_torch({"weights": torch.arange(4.0)}, path)
    with pytest.raises(KeyboardInterrupt):
        save_torch({"weights": torch.zeros(10_000), "broken": _Unpicklable()}, path)
    assert torch.equal(torch.load(path)["weights"], torch.arange(4.0))
    assert [p.name for p in path.parent.iterdir()] == ["mlp.pt"]


def test_save_torch_bytes_do_not_depend_on_the_file_name(tmp_path):
    payload = {"class": "X", "state_dict": {"w": torch.arange(6.0).reshape(2, 3)}}
    first = save_torch(payload, tmp_path / "a.pt")
    second = save_torch(payload, tmp_path / "other" / "b.pt")
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_cpu_train_the_same_model():
    X, y = _xor(300, 0)
    on_cpu = TorchMLPClassifier(epochs=30, device="cpu", seed=1).fit(X, y)
    on_gpu = TorchMLPClassifier(epochs=30, device="cuda", seed=1).fit(X, y)
    np.testing.assert_allclose(on_gpu.predict_proba(X), on_cpu.predict_proba(X), atol=1e-3)
