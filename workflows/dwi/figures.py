"""Report figures of the diffusion workflow (matplotlib, PNG/SVG)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from brainscale.writers import save_figure  # noqa: E402


def _slices(volume: np.ndarray) -> list[np.ndarray]:
    """Central axial, coronal and sagittal slices, oriented for display."""
    x, y, z = (s // 2 for s in volume.shape[:3])
    return [np.rot90(volume[:, :, z]), np.rot90(volume[:, y, :]), np.rot90(volume[x, :, :])]


def plot_fa_with_mask(fa: np.ndarray, mask: np.ndarray, out_file: str) -> str:
    """FA in three orthogonal slices with the brain-mask outline.

    Parameters
    ----------
    fa : ndarray, shape (x, y, z)
        Fractional anisotropy.
    mask : ndarray of bool
        Brain mask.
    out_file : str
        Output image (``.png`` or ``.svg``).

    Returns
    -------
    str
        ``out_file``.
    """
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, img, msk in zip(axes, _slices(fa), _slices(mask.astype(float)), strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.contour(msk, levels=[0.5], colors="tab:red", linewidths=0.8)
        ax.axis("off")
    fig.suptitle("FA with the diffusion brain mask (red)")
    save_figure(fig, out_file, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out_file


def plot_color_fa(colorfa: np.ndarray, out_file: str) -> str:
    """Direction-encoded color FA (red: left-right, green: antero-posterior, blue: axial).

    Parameters
    ----------
    colorfa : ndarray, shape (x, y, z, 3)
        RGB in [0, 1].
    out_file : str
        Output image.

    Returns
    -------
    str
        ``out_file``.
    """
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    x, y, z = (s // 2 for s in colorfa.shape[:3])
    views = [colorfa[:, :, z], colorfa[:, y, :], colorfa[x, :, :]]
    for ax, img in zip(axes, views, strict=True):
        ax.imshow(np.clip(np.rot90(img), 0, 1))
        ax.axis("off")
    fig.suptitle("Color FA (voxel axes: red i, green j, blue k)")
    save_figure(fig, out_file, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out_file


def plot_streamlines(
    streamlines, out_file: str, *, max_streamlines: int = 2000, seed: int = 0
) -> str:
    """Glass-brain projections of a random subsample of streamlines.

    Parameters
    ----------
    streamlines : sequence of ndarray
        Streamlines in world mm.
    out_file : str
        Output image.
    max_streamlines : int
        Subsample size.
    seed : int
        Subsampling seed.

    Returns
    -------
    str
        ``out_file``.
    """
    rng = np.random.default_rng(seed)
    n_total = len(streamlines)
    chosen = (
        rng.choice(n_total, size=min(max_streamlines, n_total), replace=False) if n_total else []
    )
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    planes = [(0, 1, "axial (x, y)"), (0, 2, "coronal (x, z)"), (1, 2, "sagittal (y, z)")]
    for ax, (i, j, title) in zip(axes, planes, strict=True):
        for idx in chosen:
            line = streamlines[int(idx)]
            direction = np.abs(line[-1] - line[0])
            color = direction / max(np.linalg.norm(direction), 1e-6)
            ax.plot(line[:, i], line[:, j], color=color, linewidth=0.3, alpha=0.5)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{len(chosen)} of {n_total} streamlines (color: end-to-end direction)")
    save_figure(fig, out_file, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out_file


def plot_motion(motion: pd.DataFrame, out_file: str) -> str:
    """Per-volume translations, rotations and framewise displacement.

    Parameters
    ----------
    motion : pandas.DataFrame
        Output of :func:`brainscale.workflows.dwi.motion.motion_parameters`.
    out_file : str
        Output image.

    Returns
    -------
    str
        ``out_file``.
    """
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    for col in ("trans_x", "trans_y", "trans_z"):
        axes[0].plot(motion[col].to_numpy(), label=col)
    for col in ("rot_x", "rot_y", "rot_z"):
        axes[1].plot(np.degrees(motion[col].to_numpy()), label=col)
    axes[2].plot(motion["framewise_displacement"].to_numpy(), color="k")
    axes[0].set_ylabel("mm")
    axes[1].set_ylabel("degrees")
    axes[2].set_ylabel("FD (mm)")
    axes[2].set_xlabel("volume")
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].legend(fontsize=7, ncol=3)
    fig.suptitle("DWI head motion and eddy-current correction")
    save_figure(fig, out_file, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out_file


def plot_connectome(matrix: pd.DataFrame, out_file: str, *, title: str) -> str:
    """Heatmap of a connectivity matrix (log scale for counts).

    Parameters
    ----------
    matrix : pandas.DataFrame
        A ``relmat`` frame (first column ``node``).
    out_file : str
        Output image.
    title : str
        Figure title.

    Returns
    -------
    str
        ``out_file``.
    """
    values = matrix.drop(columns="node").to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6, 5))
    shown = ax.imshow(np.log1p(values), cmap="viridis")
    fig.colorbar(shown, ax=ax, label="log(1 + value)")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("region")
    ax.set_ylabel("region")
    save_figure(fig, out_file, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out_file
