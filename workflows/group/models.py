"""Torch models as scikit-learn estimators: an MLP and BrainNetCNN.

Both models take the same tidy feature rows as the scikit-learn baselines (one row
per participant). BrainNetCNN (Kawahara et al., 2017, NeuroImage 146:1038-1049)
reads its rows as the upper triangle of a connectome (``i < j`` in row-major
order, the layout of :func:`brainscale.workflows.group.collect.upper_triangle`) and rebuilds
the symmetric matrix inside the network, so that ComBat and scaling can run on
edges before it inside a :class:`sklearn.pipeline.Pipeline`.

Reproducibility: weights are initialised on the CPU from a seeded generator and
moved to the device afterwards, and mini-batches are drawn from a seeded NumPy
generator, so training on CUDA and on the CPU gives the same model within
floating-point tolerance. Dropout is off by default because its random masks are
drawn from device-specific streams. Classifiers weight the cross-entropy by inverse
class frequency (scikit-learn's ``class_weight="balanced"``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from brainscale.derivatives import atomic_write


def resolve_device(device: str = "auto") -> torch.device:
    """Return the torch device to train on.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    torch.device
        The device; asking for CUDA on a machine without it raises ``ValueError``.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def n_nodes_from_edges(n_edges: int) -> int:
    """Return the node count ``n`` with ``n * (n - 1) / 2 == n_edges``.

    Raises
    ------
    ValueError
        When ``n_edges`` is not a triangular number.
    """
    n_nodes = int(round((1 + math.sqrt(1 + 8 * n_edges)) / 2))
    if n_nodes * (n_nodes - 1) // 2 != n_edges:
        raise ValueError(f"{n_edges} features are not the upper triangle of a square connectome")
    return n_nodes


class MLPNetwork(nn.Module):
    """A fully connected network: Linear -> ReLU (-> Dropout) blocks, then a linear head."""

    def __init__(self, n_features: int, n_outputs: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map feature rows ``(batch, features)`` to outputs ``(batch, outputs)``."""
        return self.layers(x)


class EdgeToEdge(nn.Module):
    """BrainNetCNN's cross-shaped filter: each edge sees its row and its column."""

    def __init__(self, in_channels: int, out_channels: int, n_nodes: int):
        super().__init__()
        self.row = nn.Conv2d(in_channels, out_channels, kernel_size=(1, n_nodes))
        self.col = nn.Conv2d(in_channels, out_channels, kernel_size=(n_nodes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, C, N, N)`` to ``(batch, C_out, N, N)``."""
        return self.row(x) + self.col(x)


class BrainNetCNNNetwork(nn.Module):
    """BrainNetCNN: edge-to-edge, edge-to-node and node-to-graph layers, then a linear head."""

    def __init__(
        self, n_nodes: int, n_outputs: int, channels: tuple[int, int, int], dropout: float
    ):
        super().__init__()
        e2e, e2n, n2g = channels
        rows, cols = np.triu_indices(n_nodes, k=1)
        self.register_buffer("rows", torch.as_tensor(rows, dtype=torch.long))
        self.register_buffer("cols", torch.as_tensor(cols, dtype=torch.long))
        self.n_nodes = n_nodes
        self.e2e = EdgeToEdge(1, e2e, n_nodes)
        self.e2n = nn.Conv2d(e2e, e2n, kernel_size=(1, n_nodes))
        self.n2g = nn.Conv2d(e2n, n2g, kernel_size=(n_nodes, 1))
        self.activation = nn.LeakyReLU(0.33)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(n2g, n_outputs)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        """Map upper-triangle rows ``(batch, N(N-1)/2)`` to outputs ``(batch, outputs)``."""
        matrix = edges.new_zeros((edges.shape[0], self.n_nodes, self.n_nodes))
        matrix[:, self.rows, self.cols] = edges
        matrix[:, self.cols, self.rows] = edges
        hidden = self.activation(self.e2e(matrix.unsqueeze(1)))
        hidden = self.activation(self.e2n(hidden))
        hidden = self.dropout(self.activation(self.n2g(hidden)))
        return self.head(hidden.flatten(1))


class _TorchEstimator(BaseEstimator):
    """Training loop shared by the torch estimators (Adam, mini-batches, seeded)."""

    _is_classifier = True

    def _build_network(self, n_features: int, n_outputs: int) -> nn.Module:
        raise NotImplementedError

    def _targets(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        if self._is_classifier:
            self.label_encoder_ = LabelEncoder().fit(y)
            self.classes_ = self.label_encoder_.classes_
            if len(self.classes_) < 2:
                raise ValueError("classification needs at least two classes in y, got 1 class")
            encoded = self.label_encoder_.transform(y)
            counts = np.bincount(encoded, minlength=len(self.classes_))
            self.class_weight_ = len(encoded) / (len(counts) * np.maximum(counts, 1))
            return torch.as_tensor(encoded, dtype=torch.long), len(self.classes_)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std() or 1.0)
        scaled = (y - self.y_mean_) / self.y_scale_
        return torch.as_tensor(scaled, dtype=torch.float32).unsqueeze(1), 1

    def fit(self, X, y):
        """Train the network on feature rows ``X`` and targets ``y``; returns ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=not self._is_classifier)
        if self._is_classifier:
            check_classification_targets(y)
        features = torch.as_tensor(X)
        targets, n_outputs = self._targets(np.asarray(y))
        self.n_features_in_ = features.shape[1]
        torch.manual_seed(self.seed)
        network = self._build_network(features.shape[1], n_outputs)
        self.device_ = resolve_device(self.device)
        network = network.to(self.device_)
        features, targets = features.to(self.device_), targets.to(self.device_)
        loss_fn = (
            nn.CrossEntropyLoss(
                weight=torch.as_tensor(self.class_weight_, dtype=torch.float32, device=self.device_)
            )
            if self._is_classifier
            else nn.MSELoss()
        )
        optimizer = torch.optim.Adam(
            network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        rng = np.random.default_rng(self.seed)
        n_samples = features.shape[0]
        batch = min(self.batch_size, n_samples)
        self.loss_curve_ = []
        network.train()
        for _ in range(self.epochs):
            order = torch.as_tensor(rng.permutation(n_samples), device=self.device_)
            epoch_loss = 0.0
            for start in range(0, n_samples, batch):
                index = order[start : start + batch]
                optimizer.zero_grad()
                loss = loss_fn(network(features[index]), targets[index])
                loss.backward()
                optimizer.step()
                epoch_loss += float(loss.detach()) * len(index)
            self.loss_curve_.append(epoch_loss / n_samples)
        network.eval()
        self.network_ = network
        self.feature_importances_ = self._saliency(features)
        return self

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "network_")
        features = torch.as_tensor(validate_data(self, X, reset=False, dtype=np.float32))
        outputs = []
        with torch.no_grad():
            for start in range(0, len(features), self.batch_size):
                batch = features[start : start + self.batch_size].to(self.device_)
                outputs.append(self.network_(batch).double().cpu().numpy())
        return np.concatenate(outputs)

    def _saliency(self, features: torch.Tensor) -> np.ndarray:
        """Mean absolute input gradient of the decision output (a feature importance)."""
        total = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
        for start in range(0, len(features), self.batch_size):
            inputs = features[start : start + self.batch_size].clone().requires_grad_(True)
            outputs = self.network_(inputs)
            decision = outputs[:, 1] - outputs[:, 0] if outputs.shape[1] == 2 else outputs.sum(1)
            decision.sum().backward()
            total += inputs.grad.abs().sum(0).double()
        return (total / len(features)).cpu().numpy()


class _TorchClassifier(ClassifierMixin, _TorchEstimator):
    """Prediction methods of the torch classifiers."""

    def predict_proba(self, X) -> np.ndarray:
        """Return class probabilities ``(n_samples, n_classes)`` in ``classes_`` order."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        return odds / odds.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Return the most probable class of each row."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


class _TorchRegressor(RegressorMixin, _TorchEstimator):
    """Prediction method of the torch regressors."""

    _is_classifier = False

    def predict(self, X) -> np.ndarray:
        """Return the predicted target of each row, in the units of ``y``."""
        return self._outputs(X)[:, 0] * self.y_scale_ + self.y_mean_


class _MLPParams:
    """Constructor shared by the MLP classifier and regressor."""

    def __init__(
        self,
        hidden=(64,),
        dropout=0.0,
        learning_rate=1e-3,
        weight_decay=1e-3,
        epochs=100,
        batch_size=64,
        device="auto",
        seed=0,
    ):
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.seed = seed

    def _build_network(self, n_features: int, n_outputs: int) -> nn.Module:
        return MLPNetwork(n_features, n_outputs, tuple(self.hidden), self.dropout)


class _BrainNetCNNParams:
    """Constructor shared by the BrainNetCNN classifier and regressor."""

    def __init__(
        self,
        channels=(8, 16, 32),
        dropout=0.0,
        learning_rate=1e-3,
        weight_decay=1e-3,
        epochs=100,
        batch_size=64,
        device="auto",
        seed=0,
    ):
        self.channels = channels
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.seed = seed

    def _build_network(self, n_features: int, n_outputs: int) -> nn.Module:
        n_nodes = n_nodes_from_edges(n_features)
        return BrainNetCNNNetwork(n_nodes, n_outputs, tuple(self.channels), self.dropout)


class TorchMLPClassifier(_MLPParams, _TorchClassifier):
    """A multilayer perceptron classifier trained with torch (CUDA when available).

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers.
    dropout : float
        Dropout probability after each hidden layer (0 keeps CPU/CUDA results equal).
    learning_rate, weight_decay : float
        Adam's step size and L2 penalty.
    epochs, batch_size : int
        Passes over the training rows and rows per step.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`resolve_device`).
    seed : int
        Seed of the weight initialisation and of the mini-batch order.
    """


class TorchMLPRegressor(_MLPParams, _TorchRegressor):
    """An MLP regressor trained with torch; parameters as :class:`TorchMLPClassifier`."""


class BrainNetCNNClassifier(_BrainNetCNNParams, _TorchClassifier):
    """BrainNetCNN classifier on connectome edges (upper triangle rows).

    Parameters
    ----------
    channels : tuple of int
        Output channels of the edge-to-edge, edge-to-node and node-to-graph layers.
    dropout, learning_rate, weight_decay, epochs, batch_size, device, seed
        As in :class:`TorchMLPClassifier`.
    """


class BrainNetCNNRegressor(_BrainNetCNNParams, _TorchRegressor):
    """BrainNetCNN regressor on connectome edges; parameters as :class:`BrainNetCNNClassifier`."""


def save_torch(payload: dict, path) -> Path:
    """Write ``payload`` with ``torch.save``, atomically.

    Through a file object, so the archive's internal folder is ``archive/`` whatever the
    file is called (``torch.save`` to a name would take the temporary name).

    Parameters
    ----------
    payload : dict
        What to save (tensors on the CPU, settings, fitted attributes).
    path : path-like
        Destination; parent folders are created.

    Returns
    -------
    pathlib.Path
        The destination.
    """
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def save_torch_model(estimator: _TorchEstimator, path) -> None:
    """Save a fitted torch estimator's network weights and settings (:func:`save_torch`)."""
    save_torch(
        {
            "class": type(estimator).__name__,
            "params": estimator.get_params(),
            "n_features_in": estimator.n_features_in_,
            "state_dict": {k: v.cpu() for k, v in estimator.network_.state_dict().items()},
        },
        path,
    )
