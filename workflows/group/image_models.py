"""Deep models on brain maps: a 3D CNN (SFCN) and a 3D vision transformer, as estimators.

Both read the in-mask voxels of one map per row
(:class:`~brainscale.workflows.group.voxel_inputs.VoxelData`)
and put them back on the mask's bounding box, so that a feature table of voxels flows
through the same scikit-learn pipelines and nested, site-aware cross-validation as the
other group models (ComBat is fitted on the training rows of each fold,
:class:`~brainscale.workflows.group.classify_combat.FoldComBat`). With a memory-mapped cohort the
rows ``X`` are pointers (``voxel_row``) into ``source.values`` and mini-batches are read
from disk, so that no fold copies the images into RAM.

- :class:`SFCNClassifier` / :class:`SFCNRegressor`: the Simple Fully Convolutional
  Network of Peng et al. (2021), Medical Image Analysis 68:101871 (conv 3x3x3, batch
  norm, max pool, ReLU blocks; a 1x1x1 block; global average pooling), with fewer
  channels by default for small cohorts.
- :class:`ViTClassifier` / :class:`ViTRegressor`: a vision transformer (Dosovitskiy et
  al., 2021, ICLR) on non-overlapping 3D patches, with a class token whose attention
  rollout (Abnar & Zuidema, 2020, ACL) maps what the model attends to.

Training: AdamW on mini-batches drawn from a seeded generator, weights initialised on
the CPU from ``seed`` (CPU and CUDA start from the same network), class-weighted
cross-entropy or MSE on the standardized target, early stopping on an inner validation
split (the best epoch's weights are kept). On CUDA, mixed precision (float16 autocast
and gradient scaling) is used unless ``mixed_precision=False``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from brainscale.workflows.group.models import (
    _TorchClassifier,
    _TorchEstimator,
    _TorchRegressor,
    resolve_device,
    save_torch,
)

#: Rows whose voxels are standardized together when the training statistics are computed.
STATS_BLOCK_ROWS = 256


def use_mixed_precision(device: torch.device, setting="auto") -> bool:
    """Return whether to train with float16 autocast: on CUDA for ``"auto"``, never on CPU."""
    if setting == "auto":
        return device.type == "cuda"
    if setting and device.type != "cuda":
        raise ValueError("mixed precision is only supported on CUDA devices")
    return bool(setting)


class SFCNNetwork(nn.Module):
    """SFCN (Peng et al. 2021): conv-BN-maxpool-ReLU blocks, a 1x1x1 block, average pool."""

    def __init__(self, n_outputs: int, channels: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for size in channels[:-1]:
            layers += [nn.Conv3d(width, size, 3, padding=1), nn.BatchNorm3d(size),
                       nn.MaxPool3d(2), nn.ReLU()]
            width = size
        layers += [nn.Conv3d(width, channels[-1], 1), nn.BatchNorm3d(channels[-1]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(channels[-1], n_outputs)

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, 1, X, Y, Z)`` volumes to ``(batch, outputs)``."""
        hidden = self.features(volumes).mean(dim=(2, 3, 4))
        return self.head(self.dropout(hidden))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block that can return its attention weights."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor, keep_attention: bool = False):
        """Return the updated tokens and (with ``keep_attention``) per-head attention."""
        normed = self.norm1(tokens)
        attended, weights = self.attention(normed, normed, normed, need_weights=keep_attention,
                                           average_attn_weights=False)
        tokens = tokens + attended
        return tokens + self.mlp(self.norm2(tokens)), weights


class VisionTransformer3D(nn.Module):
    """ViT on non-overlapping ``patch``-voxel cubes with a class token and learnt positions."""

    def __init__(self, volume_shape, n_outputs: int, patch: int, dim: int, depth: int,
                 n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.token_grid = tuple(s // patch for s in volume_shape)
        self.patch_embedding = nn.Conv3d(1, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.positions = nn.Parameter(0.02 * torch.randn(1, math.prod(self.token_grid) + 1, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_outputs)
        self.attentions: list[torch.Tensor] = []

    def forward(self, volumes: torch.Tensor, keep_attention: bool = False) -> torch.Tensor:
        """Map ``(batch, 1, X, Y, Z)`` to ``(batch, outputs)``; optionally keep attentions."""
        tokens = self.patch_embedding(volumes).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + self.positions
        self.attentions = []
        for block in self.blocks:
            tokens, weights = block(tokens, keep_attention)
            if keep_attention:
                self.attentions.append(weights)
        return self.head(self.norm(tokens[:, 0]))


class _ImageEstimator(_TorchEstimator):
    """Voxel rows -> volumes, the training loop with early stopping, batched outputs."""

    def _volume_multiple(self) -> int:
        return 1

    def _grid_mask(self) -> np.ndarray:
        mask = self.mask if self.mask is not None else getattr(self.source, "mask", None)
        if mask is None:
            raise ValueError("an image model needs mask= (3D bool) or source= (VoxelData)")
        return np.asarray(mask, dtype=bool)

    def _set_grid(self, n_columns: int) -> None:
        mask = self._grid_mask()
        if int(mask.sum()) != n_columns:
            raise ValueError(f"X has {n_columns} columns but the mask has {int(mask.sum())} voxels")
        where = np.argwhere(mask)
        low, high = where.min(axis=0), where.max(axis=0) + 1
        multiple = self._volume_multiple()
        shape = tuple(int(math.ceil((h - lo) / multiple) * multiple) for lo, h in zip(low, high,
                                                                                     strict=True))
        padded = np.zeros(shape, dtype=bool)
        padded[tuple(slice(0, h - lo) for lo, h in zip(low, high, strict=True))] = \
            mask[tuple(slice(lo, h) for lo, h in zip(low, high, strict=True))]
        self.volume_shape_ = shape
        self.voxel_index_ = np.flatnonzero(padded)  # C order of padded = C order of mask
        self.n_features_in_ = n_columns

    def _reader(self, X):
        """Return ``(read(index) -> float32 rows, n_rows, n_columns)`` for any accepted ``X``."""
        if isinstance(X, pd.DataFrame) and list(X.columns) == ["voxel_row"]:
            if self.source is None:
                raise ValueError("voxel_row pointers need source= (the VoxelData they point to)")
            pointers, values = X["voxel_row"].to_numpy(), self.source.values

            def read(index):
                rows = pointers[index]
                order = np.argsort(rows, kind="stable")
                out = np.empty((len(rows), values.shape[1]), dtype=np.float32)
                out[order] = values[rows[order]]  # sorted reads of the memory map
                return out

            return read, len(pointers), values.shape[1]
        values = X.to_numpy(copy=False) if isinstance(X, pd.DataFrame) else X
        return (lambda index: np.asarray(values[index], dtype=np.float32),
                values.shape[0], values.shape[1])

    def _normalize_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.array(rows, dtype=np.float32)
        if self.intensity == "zscore":  # per-image, uses nothing but the image itself
            rows -= rows.mean(axis=1, keepdims=True)
            rows /= rows.std(axis=1, keepdims=True) + 1e-6
        elif self.intensity != "none":
            raise ValueError(f"intensity must be 'none' or 'zscore', not {self.intensity!r}")
        return rows

    def _fit_standardization(self, read, index: np.ndarray) -> None:
        total = square = 0.0
        for start in range(0, len(index), STATS_BLOCK_ROWS):
            rows = self._normalize_rows(read(index[start : start + STATS_BLOCK_ROWS]))
            total = total + rows.sum(axis=0, dtype=np.float64)
            square = square + (rows.astype(np.float64) ** 2).sum(axis=0)
        mean = total / len(index)
        scale = np.sqrt(np.maximum(square / len(index) - mean**2, 0.0))
        scale[scale < 1e-6] = 1.0
        if not self.standardize:
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        self.voxel_mean_, self.voxel_scale_ = mean.astype(np.float32), scale.astype(np.float32)

    def volumes(self, rows: np.ndarray) -> torch.Tensor:
        """Return standardized ``(batch, 1, X, Y, Z)`` volumes of voxel rows (CPU tensor)."""
        rows = (self._normalize_rows(rows) - self.voxel_mean_) / self.voxel_scale_
        volume = np.zeros((len(rows), math.prod(self.volume_shape_)), dtype=np.float32)
        volume[:, self.voxel_index_] = rows
        return torch.from_numpy(volume.reshape(len(rows), 1, *self.volume_shape_))

    def _split(self, n_rows: int, labels: np.ndarray | None):
        index = np.arange(n_rows)
        n_val = int(round(self.validation_fraction * n_rows))
        if n_val < 2 or n_rows - n_val < 2:
            return index, index[:0]
        stratify = None
        if labels is not None and np.bincount(labels).min() >= 2 and n_val >= len(set(labels)):
            stratify = labels
        return train_test_split(index, test_size=n_val, random_state=self.seed, stratify=stratify)

    def fit(self, X, y):
        """Train on voxel rows ``X`` and targets ``y``; early stopping on a validation split."""
        read, n_rows, n_columns = self._reader(X)
        targets, n_outputs = self._targets(np.asarray(y))
        self._set_grid(n_columns)
        labels = targets.numpy() if self._is_classifier else None
        train, val = self._split(n_rows, labels)
        self._fit_standardization(read, np.sort(train))
        self.device_ = resolve_device(self.device)
        amp = use_mixed_precision(self.device_, self.mixed_precision)
        torch.manual_seed(self.seed)
        network = self._build_network(self.volume_shape_, n_outputs).to(self.device_)
        weight = None
        if self._is_classifier:
            weight = torch.as_tensor(self.class_weight_, dtype=torch.float32, device=self.device_)
        loss_fn = nn.CrossEntropyLoss(weight=weight) if self._is_classifier else nn.MSELoss()
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.learning_rate,
                                      weight_decay=self.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        rng = np.random.default_rng(self.seed)
        self.loss_curve_, self.validation_curve_ = [], []
        best_loss, best_state, self.best_epoch_ = math.inf, None, 0
        for epoch in range(self.epochs):
            network.train()
            order, epoch_loss = rng.permutation(train), 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                inputs = self.volumes(read(batch)).to(self.device_, non_blocking=True)
                with torch.autocast(self.device_.type, dtype=torch.float16, enabled=amp):
                    outputs = network(inputs)
                loss = loss_fn(outputs.float(), targets[batch].to(self.device_))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                epoch_loss += float(loss.detach()) * len(batch)
            self.loss_curve_.append(epoch_loss / len(order))
            if len(val) == 0:
                continue
            network.eval()
            self.network_ = network
            val_loss = float(loss_fn(torch.as_tensor(self._outputs_rows(read, val),
                                                     dtype=torch.float32, device=self.device_),
                                     targets[val].to(self.device_)))
            self.validation_curve_.append(val_loss)
            if val_loss < best_loss - 1e-4 * abs(best_loss if math.isfinite(best_loss) else 0):
                best_loss, self.best_epoch_ = val_loss, epoch
                best_state = copy.deepcopy({k: v.detach().cpu()
                                            for k, v in network.state_dict().items()})
            elif epoch - self.best_epoch_ >= self.patience:
                break
        if best_state is not None:
            network.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.loss_curve_) - 1
        self.n_epochs_ = len(self.loss_curve_)
        network.eval()
        self.network_ = network
        return self

    def _outputs_rows(self, read, index: np.ndarray) -> np.ndarray:
        amp = use_mixed_precision(self.device_, self.mixed_precision)
        outputs = []
        with torch.no_grad():
            for start in range(0, len(index), self.batch_size):
                inputs = self.volumes(read(index[start : start + self.batch_size]))
                with torch.autocast(self.device_.type, dtype=torch.float16, enabled=amp):
                    outputs.append(self.network_(inputs.to(self.device_)).double().cpu().numpy())
        return np.concatenate(outputs)

    def _outputs(self, X) -> np.ndarray:
        read, n_rows, _ = self._reader(X)
        return self._outputs_rows(read, np.arange(n_rows))


class _TrainingParams:
    """Parameters every image model has (set by the subclasses' constructors)."""

    def _set_training(self, mask, source, dropout, learning_rate, weight_decay, epochs,
                      batch_size, validation_fraction, patience, intensity, standardize,
                      device, mixed_precision, seed):
        self.mask = mask
        self.source = source
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.intensity = intensity
        self.standardize = standardize
        self.device = device
        self.mixed_precision = mixed_precision
        self.seed = seed


class _SFCNParams(_TrainingParams):
    def __init__(self, mask=None, source=None, channels=(8, 16, 32, 32), dropout=0.0,
                 learning_rate=1e-3, weight_decay=1e-4, epochs=50, batch_size=16,
                 validation_fraction=0.2, patience=10, intensity="none", standardize=True,
                 device="auto", mixed_precision="auto", seed=0):
        self.channels = channels
        self._set_training(mask, source, dropout, learning_rate, weight_decay, epochs,
                           batch_size, validation_fraction, patience, intensity, standardize,
                           device, mixed_precision, seed)

    def _build_network(self, volume_shape, n_outputs: int) -> nn.Module:
        n_pools = len(self.channels) - 1
        if min(volume_shape) < 2**n_pools:
            raise ValueError(f"volumes {volume_shape} are too small for {n_pools} poolings; "
                             "use fewer channels= entries")
        return SFCNNetwork(n_outputs, tuple(self.channels), self.dropout)


class _ViTParams(_TrainingParams):
    def __init__(self, mask=None, source=None, patch_size=4, embed_dim=32, depth=2, n_heads=4,
                 dropout=0.0, learning_rate=1e-3, weight_decay=1e-4, epochs=50, batch_size=16,
                 validation_fraction=0.2, patience=10, intensity="none", standardize=True,
                 device="auto", mixed_precision="auto", seed=0):
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.n_heads = n_heads
        self._set_training(mask, source, dropout, learning_rate, weight_decay, epochs,
                           batch_size, validation_fraction, patience, intensity, standardize,
                           device, mixed_precision, seed)

    def _volume_multiple(self) -> int:
        return int(self.patch_size)

    def _build_network(self, volume_shape, n_outputs: int) -> nn.Module:
        return VisionTransformer3D(volume_shape, n_outputs, int(self.patch_size), self.embed_dim,
                                   self.depth, self.n_heads, self.dropout)


class SFCNClassifier(_SFCNParams, _ImageEstimator, _TorchClassifier):
    """SFCN classifier of brain maps (CUDA when available, mixed precision there).

    Parameters
    ----------
    mask : numpy.ndarray, optional
        3D bool mask whose voxels (C order) are the columns of ``X``.
    source : VoxelData, optional
        The memory-mapped cohort when ``X`` holds ``voxel_row`` pointers (its mask is
        used when ``mask`` is not given).
    channels : tuple of int
        Output channels of the blocks; all but the last halve the volume (max pool).
        Peng et al. use (32, 64, 128, 256, 256, 64) on 1 mm volumes.
    dropout : float
        Dropout before the linear head (0 keeps CPU and CUDA results equal).
    learning_rate, weight_decay : float
        AdamW's step size and decoupled weight decay.
    epochs, batch_size : int
        Maximum passes over the training rows, and rows per step.
    validation_fraction, patience : float, int
        Share of the rows held out (stratified) for early stopping, and epochs without
        improvement of the validation loss before stopping; the best epoch is kept.
    intensity : {"none", "zscore"}
        Per-image intensity normalization inside the mask (no parameter is learnt).
    standardize : bool
        Standardize every voxel with the training rows' mean and standard deviation.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``
        (:func:`~brainscale.workflows.group.models.resolve_device`).
    mixed_precision : {"auto", True, False}
        float16 autocast with gradient scaling; ``"auto"``: on CUDA only.
    seed : int
        Seed of the weights, the validation split and the mini-batch order.
    """


class SFCNRegressor(_SFCNParams, _ImageEstimator, _TorchRegressor):
    """SFCN regressor (e.g. brain age); parameters as :class:`SFCNClassifier`."""


class ViTClassifier(_ViTParams, _ImageEstimator, _TorchClassifier):
    """3D vision transformer classifier of brain maps.

    Parameters
    ----------
    patch_size : int
        Edge of the cubic patches (voxels); the mask's bounding box is zero-padded to a
        multiple of it.
    embed_dim, depth, n_heads : int
        Token width, transformer blocks and attention heads.
    mask, source, dropout, learning_rate, weight_decay, epochs, batch_size,
    validation_fraction, patience, intensity, standardize, device, mixed_precision, seed
        As in :class:`SFCNClassifier`.
    """


class ViTRegressor(_ViTParams, _ImageEstimator, _TorchRegressor):
    """3D vision transformer regressor; parameters as :class:`ViTClassifier`."""


IMAGE_MODELS = {
    "classification": {"sfcn": SFCNClassifier, "vit": ViTClassifier},
    "regression": {"sfcn": SFCNRegressor, "vit": ViTRegressor},
}
_FITTED = ("classes_", "label_encoder_", "class_weight_", "y_mean_", "y_scale_", "volume_shape_",
           "voxel_index_", "n_features_in_", "voxel_mean_", "voxel_scale_", "loss_curve_",
           "validation_curve_", "best_epoch_", "n_epochs_")


def save_image_model(estimator: _ImageEstimator, path) -> None:
    """Save a fitted image model (settings, fitted statistics, weights), atomically.

    The memory-mapped ``source`` is not saved: pass it again to :func:`load_image_model`.
    """
    params = estimator.get_params()
    params["source"] = None
    if params["mask"] is None:
        params["mask"] = estimator._grid_mask()
    save_torch({"class": type(estimator).__name__, "params": params,
                "fitted": {k: getattr(estimator, k) for k in _FITTED if hasattr(estimator, k)},
                "state_dict": {k: v.cpu() for k, v in estimator.network_.state_dict().items()}},
               path)


def load_image_model(path, *, source=None, device: str = "cpu") -> _ImageEstimator:
    """Load what :func:`save_image_model` wrote, onto ``device``."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    classes = {cls.__name__: cls for task in IMAGE_MODELS.values() for cls in task.values()}
    estimator = classes[saved["class"]](**{**saved["params"], "source": source, "device": device})
    for name, value in saved["fitted"].items():
        setattr(estimator, name, value)
    n_outputs = len(estimator.classes_) if hasattr(estimator, "classes_") else 1
    network = estimator._build_network(estimator.volume_shape_, n_outputs)
    network.load_state_dict(saved["state_dict"])
    estimator.device_ = resolve_device(device)
    estimator.network_ = network.to(estimator.device_).eval()
    return estimator


__all__ = [
    "IMAGE_MODELS",
    "SFCNClassifier",
    "SFCNNetwork",
    "SFCNRegressor",
    "TransformerBlock",
    "ViTClassifier",
    "ViTRegressor",
    "VisionTransformer3D",
    "load_image_model",
    "save_image_model",
    "use_mixed_precision",
]
