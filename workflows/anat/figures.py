"""Report figures of the anatomical workflow (SVG, matplotlib Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from nilearn import image, plotting  # noqa: E402

from brainscale.workflows.anat.images import bounding_box  # noqa: E402
from brainscale.writers import save_figure  # noqa: E402

FIGURE_VOXEL_MM = 1.0
"""Finer images are resampled to this voxel size (and cropped to the brain) for display."""


def _for_display(mask: nib.spatialimages.SpatialImage,
                 *images: tuple[nib.spatialimages.SpatialImage, str]) -> list[nib.Nifti1Image]:
    """Crop images to the brain mask's bounding box (+10 mm) at no finer than 1 mm.

    Drawing contours of a 0.7 mm head image takes a minute and writes megabytes of SVG;
    at 1 mm over the brain the figure looks the same.
    """
    zooms = np.asarray(mask.header.get_zooms()[:3], dtype=float)
    brain = np.asarray(mask.dataobj) > 0
    if not brain.any():
        return [img for img, _ in images]
    box = bounding_box(brain, margin=np.ceil(10.0 / zooms).astype(int))
    lo = np.array([s.start for s in box])
    hi = np.array([s.stop for s in box])
    voxel = max(FIGURE_VOXEL_MM, float(zooms.min()))
    corner = mask.affine @ np.append(lo, 1.0)
    rotation = mask.affine[:3, :3] / zooms
    target = np.eye(4)
    target[:3, :3] = rotation * voxel
    target[:3, 3] = corner[:3]
    shape = tuple(np.ceil((hi - lo) * zooms / voxel).astype(int))
    return [image.resample_img(img, target_affine=target, target_shape=shape,
                               interpolation=interpolation, force_resample=True,
                               copy_header=True)
            for img, interpolation in images]


def _axial_cuts(mask: nib.spatialimages.SpatialImage, count: int = 7) -> list[float]:
    """Return ``count`` axial world coordinates spread over the brain, cerebellum to vertex."""
    inside = np.argwhere(np.asarray(mask.dataobj) > 0)
    if inside.size == 0:
        return list(np.linspace(-40, 60, count))
    z = nib.affines.apply_affine(mask.affine, inside[:: max(1, len(inside) // 20000)])[:, 2]
    low, high = np.percentile(z, (5, 97))
    return [float(c) for c in np.linspace(low, high, count)]


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
    t1w, mask, dseg = _for_display(mask, (t1w, "continuous"), (mask, "nearest"),
                                   (dseg, "nearest"))
    display = plotting.plot_anat(t1w, display_mode="z", cut_coords=_axial_cuts(mask), dim=-0.3)
    display.add_contours(mask, levels=[0.5], colors="r", linewidths=0.8)
    display.add_contours(dseg, levels=[1.5], colors="lime", linewidths=0.5)
    display.add_contours(dseg, levels=[2.5], colors="b", linewidths=0.5)
    save_figure(display, out_file)
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
    save_figure(display, out_file)
    display.close()
    plt.close("all")
    return out_file
