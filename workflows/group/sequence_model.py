"""A small temporal convolutional network over parcel time-series windows (torch).

A brain-state classifier that sees the time course of every parcel in a window after a
trial or block onset, where the linear baselines see one pattern per sample. It follows
scikit-learn's conventions (fit/predict on flat rows), so it runs in the same
cross-validation folds as the linear models; rows are windows flattened time-major,
``(n_samples, n_timepoints * n_parcels)``. Training is the seeded Adam loop of
:mod:`brainscale.workflows.group.models` (CUDA when present; CPU and CUDA agree to floating-point
tolerance because there is no dropout and the mini-batch order is seeded).

The architecture is a temporal convolutional network (Bai, Kolter & Koltun 2018, without
causal padding): two 1-D convolutions across time over the parcels as channels, ReLU,
global average pooling over time, and a linear read-out.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from brainscale.workflows.group.models import _TorchClassifier


class TemporalConvNetwork(nn.Module):
    """Conv1d(parcels -> channels, k) -> ReLU -> Conv1d(k, dilation 2) -> ReLU -> pool -> Linear."""

    def __init__(self, n_parcels: int, n_timepoints: int, n_outputs: int, channels: int,
                 kernel_size: int):
        super().__init__()
        self.n_parcels, self.n_timepoints = n_parcels, n_timepoints
        pad = kernel_size // 2
        self.layers = nn.Sequential(
            nn.Conv1d(n_parcels, channels, kernel_size, padding=pad), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=2 * pad, dilation=2), nn.ReLU(),
        )
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map flat windows ``(batch, T * parcels)`` to class scores ``(batch, outputs)``."""
        windows = x.view(-1, self.n_timepoints, self.n_parcels).transpose(1, 2)
        return self.head(self.layers(windows).mean(dim=2))


class TemporalConvClassifier(_TorchClassifier):
    """Temporal convolutional classifier of parcel time-series windows.

    Parameters
    ----------
    n_timepoints : int
        Volumes per window; rows of ``X`` hold ``n_timepoints * n_parcels`` values,
        time-major (:func:`flatten_windows`).
    channels : int
        Convolution channels.
    kernel_size : int
        Temporal kernel (volumes).
    learning_rate, weight_decay : float
        Adam's step size and L2 penalty.
    epochs, batch_size : int
        Passes over the training rows and rows per step.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    seed : int
        Seed of the initialisation and of the mini-batch order.
    """

    def __init__(self, n_timepoints=8, channels=16, kernel_size=3, learning_rate=3e-3,
                 weight_decay=1e-3, epochs=80, batch_size=32, device="auto", seed=0):
        self.n_timepoints = n_timepoints
        self.channels = channels
        self.kernel_size = kernel_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.seed = seed

    def _build_network(self, n_features: int, n_outputs: int) -> nn.Module:
        if n_features % self.n_timepoints:
            raise ValueError(f"{n_features} features are not {self.n_timepoints} timepoints x "
                             "parcels")
        return TemporalConvNetwork(n_features // self.n_timepoints, self.n_timepoints,
                                   n_outputs, self.channels, self.kernel_size)

    def fit(self, X, y):
        """Standardise every feature on the training rows, then train; returns ``self``."""
        X = np.asarray(X, dtype=np.float64)
        self.mean_, scale = X.mean(axis=0), X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return super().fit((X - self.mean_) / self.scale_, y)

    def _outputs(self, X) -> np.ndarray:
        return super()._outputs((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_)


def flatten_windows(windows: np.ndarray) -> np.ndarray:
    """``(n_samples, n_timepoints, n_parcels) -> (n_samples, n_timepoints * n_parcels)``."""
    return windows.reshape(len(windows), -1)
