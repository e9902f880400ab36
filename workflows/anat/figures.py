"""Report figures of the anatomical workflow (SVG, matplotlib Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import nibabel as nib  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from nilearn import plotting  # noqa: E402


def plot_segmentation(t1w: nib.spatialimages.SpatialImage, mask: nib.spatialimages.SpatialImage,
                      dseg: nib.spatialimages.SpatialImage, out_file: str) -> str:
    """Draw the brain mask (red) and GM/WM boundaries (green, blue) over the T1w.

    Parameters
    ----------
    t1w, mask, dseg : nibabel images
        Bias-corrected T1w, brain mask and discrete segmentation (1 CSF, 2 GM, 3 WM).
    out_file : str
        Destination ``.svg``.

    Returns
    -------
    str
        ``out_file``.
    """
    display = plotting.plot_anat(t1w, display_mode="z", cut_coords=7, dim=-0.3)
    display.add_contours(mask, levels=[0.5], colors="r", linewidths=0.8)
    display.add_contours(dseg, levels=[1.5], colors="lime", linewidths=0.5)
    display.add_contours(dseg, levels=[2.5], colors="b", linewidths=0.5)
    display.savefig(out_file)
    display.close()
    plt.close("all")
    return out_file


def plot_normalization(std_t1w: nib.spatialimages.SpatialImage,
                       template_mask: nib.spatialimages.SpatialImage, out_file: str) -> str:
    """Draw the template brain outline over the T1w normalized to the template.

    Parameters
    ----------
    std_t1w : nibabel image
        T1w in template space.
    template_mask : nibabel image
        Template brain mask.
    out_file : str
        Destination ``.svg``.

    Returns
    -------
    str
        ``out_file``.
    """
    display = plotting.plot_anat(std_t1w, display_mode="ortho", cut_coords=(0, -18, 12), dim=-0.3)
    display.add_contours(template_mask, levels=[0.5], colors="r", linewidths=0.8)
    display.savefig(out_file)
    display.close()
    plt.close("all")
    return out_file
