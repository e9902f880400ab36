"""Parcel time series and functional connectivity matrices (Pearson, partial, Fisher z)."""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.image import resample_to_img
from scipy import sparse
from sklearn.covariance import LedoitWolf

from brainscale.workflows.func.denoise import denoise_timeseries, fit_strategy, select_confounds

MEASURES = ("PearsonCorrelation", "PartialCorrelation")


def parcel_timeseries(
    bold: nib.Nifti1Image, atlas: nib.Nifti1Image, labels: pd.DataFrame
) -> pd.DataFrame:
    """Average the BOLD signal within every atlas region.

    The atlas is resampled to the BOLD grid (nearest neighbour). A region without any
    voxel on that grid gets a NaN column, so every run has all the atlas's regions.

    Parameters
    ----------
    bold : nibabel.Nifti1Image
        4D BOLD in the atlas's space.
    atlas : nibabel.Nifti1Image
        Integer label image.
    labels : pandas.DataFrame
        Columns ``index`` and ``name``.

    Returns
    -------
    pandas.DataFrame
        Time x regions, columns named by ``labels["name"]``.
    """
    atlas_on_bold = resample_to_img(
        atlas, nib.Nifti1Image(np.zeros(bold.shape[:3], np.int8), bold.affine),
        interpolation="nearest", force_resample=True, copy_header=True,
    )
    label_data = np.asarray(atlas_on_bold.dataobj).astype(np.int64).ravel()
    index = labels["index"].to_numpy(dtype=np.int64)
    position = {value: k for k, value in enumerate(index)}
    voxels = np.flatnonzero(np.isin(label_data, index))
    rows = np.array([position[v] for v in label_data[voxels]], dtype=np.int64)
    counts = np.bincount(rows, minlength=len(index)).astype(float)
    weights = sparse.csr_matrix(
        (1.0 / counts[rows], (rows, np.arange(len(voxels)))), shape=(len(index), len(voxels))
    )
    data = np.asarray(bold.dataobj, dtype=np.float32).reshape(-1, bold.shape[3])[voxels]
    means = np.asarray(weights @ data).T
    means[:, counts == 0] = np.nan
    return pd.DataFrame(means, columns=labels["name"].astype(str).tolist())


def _valid_columns(timeseries: np.ndarray) -> np.ndarray:
    finite = np.all(np.isfinite(timeseries), axis=0)
    spread = np.zeros(timeseries.shape[1])
    spread[finite] = timeseries[:, finite].std(axis=0)
    return finite & (spread > 0)


def pearson_matrix(timeseries: np.ndarray) -> np.ndarray:
    """Pearson correlation between columns; NaN rows/columns for constant or NaN series.

    Parameters
    ----------
    timeseries : numpy.ndarray of shape (T, N)
        One column per region.

    Returns
    -------
    numpy.ndarray of shape (N, N)
        Symmetric, unit diagonal where defined.
    """
    valid = _valid_columns(timeseries)
    out = np.full((timeseries.shape[1],) * 2, np.nan)
    if valid.sum() >= 1:
        corr = np.corrcoef(timeseries[:, valid], rowvar=False)
        corr = np.atleast_2d((corr + corr.T) / 2.0)
        np.fill_diagonal(corr, 1.0)
        out[np.ix_(valid, valid)] = corr
    return out


def partial_correlation_matrix(timeseries: np.ndarray) -> np.ndarray:
    """Partial correlation from the Ledoit-Wolf shrunk precision matrix.

    Parameters
    ----------
    timeseries : numpy.ndarray of shape (T, N)
        One column per region.

    Returns
    -------
    numpy.ndarray of shape (N, N)
        ``-P_ij / sqrt(P_ii P_jj)``, unit diagonal; NaN for invalid series.
    """
    valid = _valid_columns(timeseries)
    out = np.full((timeseries.shape[1],) * 2, np.nan)
    if valid.sum() >= 2:
        series = timeseries[:, valid]
        series = (series - series.mean(axis=0)) / series.std(axis=0)
        precision = LedoitWolf().fit(series).precision_
        scale = np.sqrt(np.diag(precision))
        partial = -precision / np.outer(scale, scale)
        partial = (partial + partial.T) / 2.0
        np.fill_diagonal(partial, 1.0)
        out[np.ix_(valid, valid)] = partial
    return out


def fisher_z(matrix: np.ndarray) -> np.ndarray:
    """Fisher z-transform (arctanh) of a correlation matrix; the diagonal becomes NaN."""
    z = np.arctanh(np.clip(matrix, -1 + 1e-7, 1 - 1e-7))
    np.fill_diagonal(z, np.nan)
    return z


def relmat_frame(matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Return a square matrix as a table: first column ``node``, then one per region."""
    frame = pd.DataFrame(matrix, columns=list(names))
    frame.insert(0, "node", list(names))
    return frame


def regions_with_signal(parcels: pd.DataFrame) -> np.ndarray:
    """Flag the regions whose series is finite and not constant.

    Parameters
    ----------
    parcels : pandas.DataFrame
        Time x regions (a region without any voxel has a NaN column).

    Returns
    -------
    numpy.ndarray of bool, one per column
    """
    return np.all(np.isfinite(parcels.to_numpy()), axis=0) & (parcels.std(axis=0).to_numpy() > 0)


@dataclass
class DenoisedParcels:
    """Parcel time series after confound regression and censoring."""

    values: np.ndarray
    """(T, N) series; NaN rows for censored volumes, NaN columns for regions without signal."""
    names: list[str]
    """Region names, one per column of ``values``."""
    kept: np.ndarray
    """Indices of the kept (uncensored) volumes."""
    strategy: str
    """The strategy applied (a fallback of the requested one when the run is short)."""
    note: str | None
    """Why another strategy than the requested one was applied."""
    confound_columns: list[str]
    """Confound regressors of the applied strategy."""
    regions_without_signal: list[str]
    """Regions left out (no voxel, NaN or constant series)."""

    @property
    def timeseries(self) -> pd.DataFrame:
        """``values`` as a table, one column per region."""
        return pd.DataFrame(self.values, columns=self.names)


def denoise_parcels(parcels: pd.DataFrame, confounds: pd.DataFrame, strategy: str, tr: float,
                    source: str = "") -> DenoisedParcels:
    """Regress confounds out of parcel time series, censoring regions without signal.

    Parameters
    ----------
    parcels : pandas.DataFrame
        Time x regions (:func:`parcel_timeseries`).
    confounds : pandas.DataFrame
        The run's confounds table.
    strategy : str
        Requested denoising strategy (falls back as in
        :func:`brainscale.workflows.func.denoise.fit_strategy`).
    tr : float
        Repetition time (s).
    source : str
        Raw BOLD name for messages.

    Returns
    -------
    DenoisedParcels
    """
    names = list(parcels.columns)
    valid = regions_with_signal(parcels)
    cleaned = np.full(parcels.shape, np.nan)
    used, note = fit_strategy(confounds, strategy)
    kept_values, kept = denoise_timeseries(parcels.to_numpy()[:, valid], confounds, used, tr,
                                           source)
    cleaned[np.ix_(kept, np.flatnonzero(valid))] = kept_values
    _, _, columns = select_confounds(confounds, used)
    return DenoisedParcels(
        values=cleaned, names=names, kept=kept, strategy=used, note=note,
        confound_columns=columns,
        regions_without_signal=[n for n, ok in zip(names, valid, strict=True) if not ok],
    )


def connectivity_matrices(series: np.ndarray) -> dict[str, np.ndarray]:
    """Return the Pearson and partial correlation matrices and their Fisher z.

    Parameters
    ----------
    series : numpy.ndarray of shape (T, N)
        Denoised region time series of the kept volumes.

    Returns
    -------
    dict
        ``pearson``, ``partial``, ``pearson_z``, ``partial_z``: (N, N) matrices.
    """
    pearson = pearson_matrix(series)
    partial = partial_correlation_matrix(series)
    return {"pearson": pearson, "partial": partial,
            "pearson_z": fisher_z(pearson), "partial_z": fisher_z(partial)}


def atlas_connectivity(bold: nib.Nifti1Image, atlas: nib.Nifti1Image, labels: pd.DataFrame,
                       confounds: pd.DataFrame, strategy: str, tr: float, source: str = ""
                       ) -> tuple[DenoisedParcels, dict[str, np.ndarray]]:
    """Denoise the parcel time series of one atlas and compute its connectivity matrices.

    Parameters
    ----------
    bold : nibabel.Nifti1Image
        4D preprocessed BOLD in the atlas's space.
    atlas : nibabel.Nifti1Image
        Integer label image.
    labels : pandas.DataFrame
        Columns ``index`` and ``name``.
    confounds, strategy, tr, source
        As in :func:`denoise_parcels`.

    Returns
    -------
    denoised : DenoisedParcels
    matrices : dict
        :func:`connectivity_matrices` of the kept volumes.
    """
    denoised = denoise_parcels(parcel_timeseries(bold, atlas, labels), confounds, strategy, tr,
                               source)
    return denoised, connectivity_matrices(denoised.values[denoised.kept])
