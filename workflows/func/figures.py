"""Report figures: carpet plot with FD/DVARS, coregistration check, connectivity heatmap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from nilearn import plotting  # noqa: E402

from brainscale.writers import save_figure  # noqa: E402


def plot_carpet_with_confounds(
    bold: nib.Nifti1Image, mask: nib.Nifti1Image, confounds: pd.DataFrame, tr: float, out_file
) -> str:
    """Save a carpet plot of the brain voxels under FD and DVARS traces (SVG).

    Parameters
    ----------
    bold : nibabel.Nifti1Image
        4D BOLD.
    mask : nibabel.Nifti1Image
        Brain mask on the BOLD grid.
    confounds : pandas.DataFrame
        Needs ``framewise_displacement`` and ``std_dvars``.
    tr : float
        Repetition time (s).
    out_file : path-like
        Destination SVG.

    Returns
    -------
    str
        The written file.
    """
    fig = plt.figure(figsize=(10, 7))
    grid = fig.add_gridspec(3, 1, height_ratios=[1, 1, 4], hspace=0.35)
    time = np.arange(len(confounds)) * tr
    for row, (column, label) in enumerate(
        (("framewise_displacement", "FD (mm)"), ("std_dvars", "std DVARS"))
    ):
        ax = fig.add_subplot(grid[row])
        ax.plot(time, confounds[column].to_numpy(dtype=float), lw=0.8, color=f"C{row}")
        ax.set_ylabel(label)
        ax.set_xlim(time[0], time[-1])
        ax.tick_params(labelbottom=False)
    ax_carpet = fig.add_subplot(grid[2])
    plotting.plot_carpet(bold, mask_img=mask, t_r=tr, figure=fig, axes=ax_carpet,
                         detrend=True, title=None)
    save_figure(fig, out_file, format="svg", bbox_inches="tight")
    plt.close(fig)
    return str(out_file)


def plot_coregistration(anat: nib.Nifti1Image, boldref_on_anat: nib.Nifti1Image, out_file) -> str:
    """Save the BOLD reference resampled onto the T1w with the T1w's edges drawn over it."""
    display = plotting.plot_anat(boldref_on_anat, display_mode="ortho", dim=-0.5,
                                 title="BOLD reference with T1w edges")
    display.add_edges(anat, color="r")
    save_figure(display, out_file)
    display.close()
    return str(out_file)


def plot_connectivity(matrix: np.ndarray, names: list[str], title: str, out_file) -> str:
    """Save a connectivity matrix heatmap (SVG)."""
    fig, ax = plt.subplots(figsize=(8, 7))
    shown = np.array(matrix, dtype=float)
    np.fill_diagonal(shown, np.nan)
    labels = list(names) if len(names) <= 40 else None
    plotting.plot_matrix(np.nan_to_num(shown), labels=labels, axes=ax,
                         vmin=-1, vmax=1, colorbar=True, title=title)
    save_figure(fig, out_file, format="svg", bbox_inches="tight")
    plt.close(fig)
    return str(out_file)
