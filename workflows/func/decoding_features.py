"""Features for decoding from a template-space BOLD run, and weight maps back in that space.

Two feature spaces: the mean signal of atlas parcels (``parcels``) or the voxels inside a
mask (``voxels``); in both, ``regions`` (substrings of atlas region names, e.g.
``fusiform``) restricts the features to those parcels, or the mask to their voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.image import resample_to_img

from brainscale.errors import InputDataError
from brainscale.workflows.func.connectivity import parcel_timeseries

DECODE_SPACES = ("parcels", "voxels")
VENTRAL_TEMPORAL_REGIONS = ("fusiform", "parahippocampal", "inferiortemporal", "lingual")
"""Desikan-Killiany regions of ventral temporal cortex (Haxby et al. 2001 decoded object
categories there)."""


@dataclass
class FeatureSpace:
    """Where each decoding feature lives in the template grid.

    Attributes
    ----------
    kind : {"parcels", "voxels"}
    names : list of str
        Parcel names, or ``voxel<i>_<j>_<k>``.
    labels : numpy.ndarray of int
        The template-grid label image: feature ``f`` covers the voxels equal to ``f + 1``.
    affine : numpy.ndarray
        Of the template grid.
    """

    kind: str
    names: list[str]
    labels: np.ndarray
    affine: np.ndarray

    def to_image(self, values: np.ndarray) -> nib.Nifti1Image:
        """Paint ``(n_maps, n_features)`` values onto the grid: a 3D (one map) or 4D image."""
        values = np.atleast_2d(values)
        lookup = np.concatenate([np.zeros((len(values), 1)), values], axis=1)
        data = np.moveaxis(lookup[:, self.labels], 0, -1).astype(np.float32)
        return nib.Nifti1Image(data[..., 0] if len(values) == 1 else data, self.affine)


def select_regions(labels: pd.DataFrame, regions: list[str] | None) -> pd.DataFrame:
    """Atlas rows whose ``name`` contains one of ``regions`` (case-insensitive; all if None)."""
    if not regions:
        return labels
    names = labels["name"].astype(str).str.lower()
    keep = np.zeros(len(labels), dtype=bool)
    for region in regions:
        keep |= names.str.contains(region.lower(), regex=False).to_numpy()
    if not keep.any():
        raise InputDataError(f"--decode-regions {list(regions)}: no atlas region matches")
    return labels[keep].reset_index(drop=True)


def _atlas_on_grid(atlas: nib.Nifti1Image, shape, affine) -> np.ndarray:
    grid = nib.Nifti1Image(np.zeros(shape, np.int8), affine)
    resampled = resample_to_img(atlas, grid, interpolation="nearest", force_resample=True,
                                copy_header=True)
    return np.asarray(resampled.dataobj).astype(np.int64)


def decoding_features(bold: nib.Nifti1Image, mask: nib.Nifti1Image, atlas: nib.Nifti1Image,
                      atlas_labels: pd.DataFrame, *, space: str = "parcels",
                      regions: list[str] | None = None) -> tuple[np.ndarray, FeatureSpace]:
    """Time series of the decoding features of a template-space BOLD run.

    Parameters
    ----------
    bold : nibabel.Nifti1Image
        4D BOLD in template space.
    mask : nibabel.Nifti1Image
        Brain mask on the BOLD grid.
    atlas : nibabel.Nifti1Image
        Label image in template space.
    atlas_labels : pandas.DataFrame
        ``index`` and ``name`` of the atlas regions.
    space : {"parcels", "voxels"}
        Parcel means or voxels.
    regions : list of str, optional
        Region-name substrings restricting the features.

    Returns
    -------
    numpy.ndarray of shape (n_volumes, n_features), FeatureSpace
        Parcels without signal are dropped.
    """
    if space not in DECODE_SPACES:
        raise ValueError(f"decoding space must be one of {DECODE_SPACES}, not {space!r}")
    chosen = select_regions(atlas_labels, regions)
    shape = bold.shape[:3]
    on_grid = _atlas_on_grid(atlas, shape, bold.affine)
    brain = np.asarray(mask.dataobj) > 0
    if space == "parcels":
        series = parcel_timeseries(bold, atlas, chosen).to_numpy()
        valid = np.all(np.isfinite(series), axis=0) & (series.std(axis=0) > 0)
        index = chosen["index"].to_numpy()[valid]
        labels = np.zeros(shape, dtype=np.int64)
        for feature, value in enumerate(index):
            labels[on_grid == value] = feature + 1
        names = chosen["name"].astype(str).to_numpy()[valid].tolist()
        return series[:, valid], FeatureSpace("parcels", names, labels, bold.affine)
    inside = brain & (np.isin(on_grid, chosen["index"].to_numpy()) if regions else True)
    data = np.asarray(bold.dataobj, dtype=np.float32)[inside]
    keep = data.std(axis=1) > 0
    coords = np.argwhere(inside)[keep]
    labels = np.zeros(shape, dtype=np.int64)
    labels[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    if not len(coords):
        raise InputDataError("no voxel with signal inside the decoding mask")
    names = [f"voxel{i}_{j}_{k}" for i, j, k in coords]
    return data[keep].T.astype(np.float64), FeatureSpace("voxels", names, labels, bold.affine)


def n_nonsteady_from_confounds(confounds: pd.DataFrame) -> int:
    """Leading volumes flagged in the ``non_steady_state_outlier_XX`` columns."""
    columns = [c for c in confounds.columns if c.startswith("non_steady_state_outlier")]
    if not columns:
        return 0
    flagged = confounds[columns].fillna(0).to_numpy().sum(axis=1) > 0
    return int(np.argmin(flagged)) if not flagged.all() else len(flagged)


def atlas_on_native_grid(atlas: nib.Nifti1Image, shape, affine: np.ndarray,
                         template_to_native: np.ndarray) -> np.ndarray:
    """Atlas labels on a native BOLD grid (nearest neighbour).

    Parameters
    ----------
    atlas : nibabel.Nifti1Image
        Template-space label image.
    shape, affine
        The native grid.
    template_to_native : numpy.ndarray of shape (4, 4)
        RAS matrix mapping a template point to the native point
        (:func:`brainscale.workflows.func.registration.register_boldref` with the template fixed).

    Returns
    -------
    numpy.ndarray of int
    """
    from scipy import ndimage

    ijk = np.indices(shape[:3]).reshape(3, -1)
    world = affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    voxels = np.linalg.inv(atlas.affine) @ np.linalg.inv(template_to_native) @ world
    labels = ndimage.map_coordinates(np.asarray(atlas.dataobj), voxels[:3], order=0)
    return labels.reshape(shape[:3]).astype(np.int64)
