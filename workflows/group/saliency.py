"""What the image models look at: saliency maps and attention rollout, as MNI stat maps.

- :func:`gradient_x_input`: gradient of the decision times the (standardized) input
  (Shrikumar et al., 2017, ICML; Simonyan et al., 2014), contrasted between the
  classes (or against the target) and as a mean magnitude. On standardized inputs the
  product is each voxel's first-order contribution relative to the training mean.
- :func:`occlusion_map`: the decrease of the decision when a cube of voxels is set to
  the training mean (Zeiler & Fergus, 2014, ECCV).
- :func:`attention_rollout`: the class token's attention propagated through the
  transformer's layers, with the residual connection as ``0.5 A + 0.5 I``
  (Abnar & Zuidema, 2020, ACL), spread over each patch's voxels.

Every map is a vector with one value per in-mask voxel (the columns of ``X``), put
back on the MNI grid with :meth:`~brainscale.workflows.group.voxel_inputs.VoxelData.to_image`.
The "decision" is the logit difference (class 1 minus class 0) of a binary classifier,
the logit of the predicted class of a multi-class one, and the output of a regressor.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from brainscale.derivatives import write_json  # noqa: E402
from brainscale.writers import save_figure, save_nifti  # noqa: E402

#: Rows per backward pass of the saliency maps.
SALIENCY_BATCH = 8


def _decision(outputs: torch.Tensor) -> torch.Tensor:
    if outputs.shape[1] == 1:
        return outputs[:, 0]
    if outputs.shape[1] == 2:
        return outputs[:, 1] - outputs[:, 0]
    return outputs.gather(1, outputs.argmax(dim=1, keepdim=True))[:, 0]


def _in_mask(estimator, volumes: np.ndarray) -> np.ndarray:
    """``(batch, 1, X, Y, Z)`` model volumes -> ``(batch, n_voxels)`` in-mask values."""
    return volumes.reshape(len(volumes), -1)[:, estimator.voxel_index_]


def _target_weights(estimator, y) -> np.ndarray:
    """Row weights of the contrast map: +1/n1 and -1/n0 by class, or the z-scored target / n."""
    y = np.asarray(y)
    if getattr(estimator, "classes_", None) is not None:
        positive = y == estimator.classes_[-1]
        return np.where(positive, 1.0 / max(positive.sum(), 1), -1.0 / max((~positive).sum(), 1))
    centred = (y - y.mean()) / (y.std() or 1.0)
    return centred / len(y)


def gradient_x_input(estimator, X, y=None) -> tuple[np.ndarray | None, np.ndarray]:
    """Gradient x input of a fitted image model: its contrast over ``y`` and its magnitude.

    Parameters
    ----------
    estimator : fitted SFCN or ViT estimator
        :mod:`brainscale.workflows.group.image_models`.
    X : array, DataFrame or voxel_row pointers
        Rows the model accepts (already harmonized when a pipeline harmonizes).
    y : array-like, optional
        Targets of the rows. For a classifier the contrast is the mean gradient x input
        of the last class minus that of the others; for a regressor its covariance with
        the z-scored target. For a linear decision ``w . x`` both are ``w`` times the
        difference of the inputs' means (or their covariance with ``y``): voxels
        contribute where the model weighs a real difference.

    Returns
    -------
    contrast : numpy.ndarray or None
        ``(n_voxels,)`` contrast map (None without ``y``).
    magnitude : numpy.ndarray
        ``(n_voxels,)`` mean absolute gradient x input over the rows.
    """
    read, n_rows, n_columns = estimator._reader(X)
    weights = None if y is None else _target_weights(estimator, y)
    contrast, magnitude = np.zeros(n_columns), np.zeros(n_columns)
    network = estimator.network_
    for start in range(0, n_rows, SALIENCY_BATCH):
        index = np.arange(start, min(start + SALIENCY_BATCH, n_rows))
        inputs = estimator.volumes(read(index)).to(estimator.device_).requires_grad_(True)
        _decision(network(inputs)).sum().backward()
        product = _in_mask(estimator, (inputs.grad * inputs).detach().cpu().numpy())
        magnitude += np.abs(product).sum(axis=0)
        if weights is not None:
            contrast += weights[index] @ product
    return (None if weights is None else contrast), magnitude / n_rows


def occlusion_map(estimator, X, *, size: int = 2) -> np.ndarray:
    """Mean decrease of the decision when each ``size``-voxel cube is set to the mean.

    Returns
    -------
    numpy.ndarray
        ``(n_voxels,)``: each voxel gets the value of the cube that contains it.
    """
    read, n_rows, n_columns = estimator._reader(X)
    shape = estimator.volume_shape_
    starts = np.stack(np.meshgrid(*[np.arange(0, s, size) for s in shape], indexing="ij"),
                      axis=-1).reshape(-1, 3)
    labels = np.zeros(shape, dtype=np.int64)
    for number, (i, j, k) in enumerate(starts):
        labels[i : i + size, j : j + size, k : k + size] = number
    cube_of_voxel = labels.reshape(-1)[estimator.voxel_index_]
    drop = np.zeros(len(starts))
    with torch.no_grad():
        for start in range(0, n_rows, SALIENCY_BATCH):
            inputs = estimator.volumes(read(np.arange(start, min(start + SALIENCY_BATCH, n_rows))))
            inputs = inputs.to(estimator.device_)
            reference = _decision(estimator.network_(inputs))
            for number, (i, j, k) in enumerate(starts):
                if not np.any(cube_of_voxel == number):
                    continue
                occluded = inputs.clone()
                occluded[:, :, i : i + size, j : j + size, k : k + size] = 0.0
                change = reference - _decision(estimator.network_(occluded))
                drop[number] += float(change.sum())
    return drop[cube_of_voxel] / n_rows


def attention_rollout(estimator, X) -> np.ndarray:
    """Mean attention rollout of the class token over the patches of a fitted ViT.

    Returns
    -------
    numpy.ndarray
        ``(n_voxels,)``: each voxel gets its patch's share of the class token's
        rolled-out attention (the patch shares sum to 1 per participant).
    """
    read, n_rows, _ = estimator._reader(X)
    network = estimator.network_
    grid = network.token_grid
    total = np.zeros(int(np.prod(grid)))
    with torch.no_grad():
        for start in range(0, n_rows, SALIENCY_BATCH):
            inputs = estimator.volumes(read(np.arange(start, min(start + SALIENCY_BATCH, n_rows))))
            network(inputs.to(estimator.device_), keep_attention=True)
            rollout = None
            for weights in network.attentions:
                attention = weights.float().mean(dim=1)  # heads
                eye = torch.eye(attention.shape[-1], device=attention.device)
                attention = 0.5 * attention + 0.5 * eye
                attention = attention / attention.sum(dim=-1, keepdim=True)
                rollout = attention if rollout is None else attention @ rollout
            shares = rollout[:, 0, 1:]
            total += (shares / shares.sum(dim=1, keepdim=True)).sum(dim=0).cpu().numpy()
    patch = int(estimator.patch_size)
    volume = np.kron((total / n_rows).reshape(grid), np.ones((patch, patch, patch)))
    return volume.reshape(-1)[estimator.voxel_index_]


def write_stat_map(img: nib.Nifti1Image, path: Path, *, description: str, sources,
                   method: str) -> Path:
    """Write a stat map (float32 NIfTI) with its JSON sidecar (Sources, method, units)."""
    path = Path(path)
    save_nifti(img, path)
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")),
               {"Description": description, "Sources": list(sources), "Method": method,
                "Units": "arbitrary (model decision per voxel)",
                "SpatialReference": "MNI152NLin2009aSym"})
    return path


def plot_maps(maps: dict[str, nib.Nifti1Image], path: Path, n_slices: int = 6) -> str:
    """Draw axial slices of each map (rows) and return the figure's file name."""
    fig, axes = plt.subplots(len(maps), n_slices, figsize=(2 * n_slices, 2.2 * len(maps)),
                             squeeze=False)
    for row, (name, img) in enumerate(maps.items()):
        volume = np.asarray(img.dataobj, dtype=float)
        occupied = np.flatnonzero(np.abs(volume).sum(axis=(0, 1)) > 0)
        first, last = (occupied[0], occupied[-1]) if len(occupied) else (0, volume.shape[2] - 1)
        limit = float(np.abs(volume).max()) or 1.0
        cmap = "RdBu_r" if volume.min() < 0 else "hot"
        for col, z in enumerate(np.linspace(first, last, n_slices + 2)[1:-1].astype(int)):
            ax = axes[row, col]
            ax.imshow(np.rot90(volume[:, :, z]), cmap=cmap, vmin=-limit if cmap == "RdBu_r"
                      else 0, vmax=limit)
            z_mm = (img.affine @ [0, 0, z, 1])[2]
            ax.set_title(f"{name} z={z_mm:.0f} mm" if col == 0 else f"z={z_mm:.0f}",
                         fontsize="x-small")
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, format="svg", bbox_inches="tight")
    plt.close(fig)
    return path.name


__all__ = [
    "attention_rollout",
    "gradient_x_input",
    "occlusion_map",
    "plot_maps",
    "write_stat_map",
]
