"""ComBat harmonization of multi-site feature tables, as a fit/transform estimator.

:class:`ComBat` implements neuroCombat's model (Johnson et al. 2007; Fortin et al.
2017, 2018) in vectorized NumPy: a linear model of each feature on batch (site or
scanner) and on the covariates to protect, then an empirical Bayes (parametric or
non-parametric) or plain least-squares estimate of each batch's additive and
multiplicative effect, which is removed. It reproduces the R package's outputs in
every mode (``eb``, ``parametric``, ``mean_only``, ``ref_batch``) and works around
neuroCombat's known defects:

- features with zero residual variance (constant, or fully explained by the
  design) are left unchanged with a warning, instead of becoming NaN or being
  divided by ``median(var != 0) == 1``;
- the reference-batch mode does not call ``np.int`` (removed in NumPy 1.24);
- the data are not cast to float32, and the parameters learned by :meth:`ComBat.fit`
  can be saved and applied to new participants of the same batches, with their own
  covariates (neuroCombat's ``neuroCombatFromTraining`` uses the training average).

Features are processed in blocks of columns, so the memory used is about the
input and output tables plus a few hundred megabytes.

Examples
--------
>>> combat = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"])
>>> harmonized = combat.fit_transform(features, covars)  # doctest: +SKIP
>>> path = combat.save("combat.npz")  # doctest: +SKIP
>>> ComBat.load(path).transform(new_features, new_covars)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from brainscale.errors import InputDataError
from brainscale.workflows.group.combat_estimation import (
    nonparametric_adjustments,
    parametric_adjustments,
    parametric_mean_only_adjustment,
)
from brainscale.workflows.group.combat_persistence import (
    python_scalar,
    read_combat_model,
    write_combat_model,
)
from brainscale.workflows.group.covariates import covariates_of, validated_tables

#: Bytes of float64 working memory per block of features (cache-sized blocks make
#: fit and transform 2-3x faster than 64 MB ones on 10,000 x 79,800 tables).
BLOCK_BYTES = 4 * 1024**2
#: A residual standard deviation below this fraction of a feature's RMS counts as zero.
ZERO_VARIANCE_TOLERANCE = 1e-10

class UnseenBatchError(InputDataError, ValueError):
    """A participant's batch (site, scanner) was not part of the data ComBat was fitted on."""


class ComBat(TransformerMixin, BaseEstimator):
    """ComBat harmonization (neuroCombat's model) with a fit/transform API.

    The batch and covariates come either as ``covars`` (a table on the features'
    index, or aligned by position; scikit-learn metadata routing requests it for
    ``fit`` and ``transform``) or, when ``covars`` is omitted, as columns of ``X``
    named ``batch_col``, ``categorical_cols`` and ``continuous_cols`` (integer
    positions for arrays); those columns are then left out of the output.

    Parameters
    ----------
    batch_col : str
        Column of ``covars`` holding the batch (site, scanner).
    categorical_cols : sequence of str
        Categorical covariates whose effects are protected (e.g. sex, diagnosis);
        one-hot coded, first sorted level dropped.
    continuous_cols : sequence of str
        Continuous covariates whose effects are protected (e.g. age).
    eb : bool
        Pool information across features with empirical Bayes; ``False`` uses the
        per-feature least-squares batch effects.
    parametric : bool
        Parametric (normal / inverse-gamma) priors; ``False`` uses the
        non-parametric prior (costs O(n_features^2) per batch).
    mean_only : bool
        Adjust only the batch means, not the variances.
    ref_batch : object or None
        A batch whose data are left unchanged and that the others are aligned to.

    Attributes
    ----------
    batch_levels_ : list
        Sorted batch labels seen in :meth:`fit`.
    feature_names_ : list of str
        Feature columns, in the order used by the arrays below.
    grand_mean_, var_pooled_ : ndarray, shape (n_features,)
        Standardization mean and pooled residual variance.
    covariate_betas_ : ndarray, shape (n_covariate_columns, n_features)
        Regression coefficients of the protected covariates.
    gamma_star_, delta_star_ : ndarray, shape (n_batches, n_features)
        Batch location and scale removed by :meth:`transform`.
    zero_variance_ : ndarray of bool, shape (n_features,)
        Features left unchanged because their residual variance is zero.
    """

    def __init__(
        self,
        batch_col: str,
        categorical_cols: Sequence[str] = (),
        continuous_cols: Sequence[str] = (),
        eb: bool = True,
        parametric: bool = True,
        mean_only: bool = False,
        ref_batch: object = None,
    ):
        self.batch_col = batch_col
        self.categorical_cols = categorical_cols
        self.continuous_cols = continuous_cols
        self.eb = eb
        self.parametric = parametric
        self.mean_only = mean_only
        self.ref_batch = ref_batch

    # ------------------------------------------------------------------ fitting
    __metadata_request__fit = {"covars": True}
    __metadata_request__transform = {"covars": True}

    def fit(self, X, y=None, covars: pd.DataFrame | None = None) -> ComBat:
        """Estimate the batch effects of every feature.

        Parameters
        ----------
        X : DataFrame or array, shape (n_participants, n_features)
            Numeric features, one row per participant (and session); with the batch
            and covariate columns when ``covars`` is omitted.
        y : None
            Ignored (a DataFrame here is read as ``covars``: ``fit(features, covars)``).
        covars : DataFrame, optional
            The batch column and the covariates, on the same index as ``X``.

        Returns
        -------
        ComBat
            The fitted estimator.
        """
        if isinstance(y, pd.DataFrame) and covars is None:
            covars = y
        features, covars = covariates_of(X, covars, self._covariate_columns())
        values, covars = validated_tables(features, covars, self._covariate_columns())
        self.feature_names_ = features.columns.astype(str).tolist()
        self.n_features_in_ = len(self.feature_names_)
        batch_labels = covars[self.batch_col].to_numpy()
        self.batch_levels_ = [python_scalar(v) for v in np.unique(batch_labels)]
        batch_index = self._batch_index(batch_labels, covars.index)
        n_batches = len(self.batch_levels_)
        self.ref_index_ = self._reference_index()
        self.samples_per_batch_ = np.bincount(batch_index, minlength=n_batches)
        self._check_batch_sizes()
        self.categorical_levels_ = {
            col: [python_scalar(v) for v in np.unique(covars[col].to_numpy())]
            for col in self.categorical_cols
        }
        covariates = self._covariate_design(covars)
        batch_design = self._batch_design_rows()[batch_index]
        design = np.hstack([batch_design, covariates])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise InputDataError(
                "ComBat: the covariates "
                f"{list(self.categorical_cols) + list(self.continuous_cols)} are collinear "
                f"with the batch column {self.batch_col!r} (a covariate constant within "
                "sites, or a site with a single covariate level): the design is singular"
            )
        self._fit_standardization(values, design, batch_index)
        self._fit_batch_effects()
        return self

    def _fit_standardization(
        self, values: np.ndarray, design: np.ndarray, batch_index: np.ndarray
    ) -> None:
        """Regress features on the design; keep per-batch statistics of the standardized data."""
        n_samples, n_features = values.shape
        n_batches = len(self.batch_levels_)
        gram_inverse = np.linalg.inv(design.T @ design)
        if self.ref_index_ is None:
            variance_rows = np.ones(n_samples, dtype=bool)
        else:
            variance_rows = batch_index == self.ref_index_
        self.grand_mean_ = np.empty(n_features)
        self.var_pooled_ = np.empty(n_features)
        self.covariate_betas_ = np.empty((design.shape[1] - n_batches, n_features))
        batch_means = np.empty((n_batches, n_features))
        centred_ss = np.empty((n_batches, n_features))
        self.zero_variance_ = np.zeros(n_features, dtype=bool)
        for block in _feature_blocks(n_samples, n_features):
            data = np.asarray(values[:, block], dtype=np.float64)
            betas = gram_inverse @ (design.T @ data)
            residuals = data - design @ betas
            var_pooled = np.mean(residuals[variance_rows] ** 2, axis=0)
            rms = np.sqrt(np.mean(data**2, axis=0))
            zero = np.sqrt(var_pooled) <= ZERO_VARIANCE_TOLERANCE * rms
            var_pooled[zero] = 1.0
            if self.ref_index_ is None:
                grand_mean = (self.samples_per_batch_ / n_samples) @ betas[:n_batches]
            else:
                grand_mean = betas[self.ref_index_]
            standardized = data - grand_mean - design[:, n_batches:] @ betas[n_batches:]
            standardized /= np.sqrt(var_pooled)
            for b in range(n_batches):
                rows = standardized[batch_index == b]
                batch_means[b, block] = rows.mean(axis=0)
                centred_ss[b, block] = ((rows - batch_means[b, block]) ** 2).sum(axis=0)
            self.grand_mean_[block] = grand_mean
            self.var_pooled_[block] = var_pooled
            self.covariate_betas_[:, block] = betas[n_batches:]
            self.zero_variance_[block] = zero
        self._batch_means = batch_means
        self._centred_ss = centred_ss
        if self.zero_variance_.any():
            names = [n for n, z in zip(self.feature_names_, self.zero_variance_, strict=True) if z]
            warnings.warn(
                f"ComBat: {len(names)} feature(s) with zero residual variance are left "
                f"unchanged: {names[:10]}{' ...' if len(names) > 10 else ''}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _fit_batch_effects(self) -> None:
        """Least-squares, then empirical Bayes, batch locations and scales."""
        n_batches, n_features = self._batch_means.shape
        # gamma_hat solves the batch-only regression of the standardized data; its
        # fitted values are the batch means, so gamma_hat = M^-1 means.
        self.gamma_hat_ = np.linalg.solve(self._batch_design_rows(), self._batch_means)
        if self.mean_only:
            self.delta_hat_ = np.ones((n_batches, n_features))
        else:
            self.delta_hat_ = self._centred_ss / (self.samples_per_batch_[:, None] - 1)
            self.delta_hat_[self.delta_hat_ == 0] = 1.0
        gamma_star = self.gamma_hat_.copy()
        delta_star = self.delta_hat_.copy()
        valid = ~self.zero_variance_
        if self.eb and valid.sum() > 1:
            for b in range(n_batches):
                args = (
                    self._batch_means[b, valid],
                    self._centred_ss[b, valid],
                    int(self.samples_per_batch_[b]),
                    self.gamma_hat_[b, valid],
                    self.delta_hat_[b, valid],
                )
                if not self.parametric:
                    gamma_star[b, valid], delta_star[b, valid] = nonparametric_adjustments(*args)
                elif self.mean_only:
                    gamma_star[b, valid] = parametric_mean_only_adjustment(args[3])
                else:
                    gamma_star[b, valid], delta_star[b, valid] = parametric_adjustments(*args)
        if self.ref_index_ is not None:
            gamma_star[self.ref_index_] = 0.0
            delta_star[self.ref_index_] = 1.0
        gamma_star[:, ~valid] = 0.0
        delta_star[:, ~valid] = 1.0
        self.gamma_star_, self.delta_star_ = gamma_star, delta_star
        del self._batch_means, self._centred_ss

    # ------------------------------------------------------------- transforming
    def transform(self, X, covars: pd.DataFrame | None = None) -> pd.DataFrame:
        """Remove the fitted batch effects from (new) participants of known batches.

        Parameters
        ----------
        X : DataFrame or array, shape (n_participants, n_features)
            The fitted features (same column names; any order), with the batch and
            covariate columns when ``covars`` is omitted.
        covars : DataFrame, optional
            The batch column and the covariates, on the same index as ``X``.

        Returns
        -------
        DataFrame
            Harmonized features, same index, columns and float dtype as ``features``.

        Raises
        ------
        UnseenBatchError
            When a participant's batch was not seen in :meth:`fit`.
        """
        if not hasattr(self, "gamma_star_"):
            raise NotFittedError("ComBat.transform called before fit")
        features, covars = covariates_of(X, covars, self._covariate_columns())
        columns = features.columns.astype(str).tolist()  # no per-label Python loop
        missing = sorted(set(self.feature_names_) - set(columns))
        if missing:
            raise InputDataError(f"ComBat.transform: features missing from the table: {missing}")
        if columns == self.feature_names_:
            ordered = features  # already in the fitted order: no copy
        else:
            label_of = dict(zip(columns, features.columns, strict=True))
            ordered = features[[label_of[name] for name in self.feature_names_]]
        values, covars = validated_tables(ordered, covars, self._covariate_columns())
        batch_index = self._batch_index(covars[self.batch_col].to_numpy(), covars.index)
        covariates = self._covariate_design(covars)
        out_dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
        harmonized = np.empty(values.shape, dtype=out_dtype)
        batch_rows = self._batch_design_rows()[batch_index]
        keep_rows = (
            np.zeros(len(batch_index), dtype=bool)
            if self.ref_index_ is None
            else batch_index == self.ref_index_
        )
        for block in _feature_blocks(*values.shape):
            data = np.asarray(values[:, block], dtype=np.float64)
            scale = np.sqrt(self.var_pooled_[block])
            expected = self.grand_mean_[block] + covariates @ self.covariate_betas_[:, block]
            standardized = (data - expected) / scale
            standardized -= batch_rows @ self.gamma_star_[:, block]
            standardized /= np.sqrt(self.delta_star_[:, block][batch_index])
            result = standardized * scale + expected
            result[keep_rows] = data[keep_rows]
            result[:, self.zero_variance_[block]] = data[:, self.zero_variance_[block]]
            harmonized[:, block] = result
        return pd.DataFrame(harmonized, index=features.index, columns=ordered.columns, copy=False)

    def fit_transform(self, X, y=None, covars: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit on ``X`` and return it harmonized (see :meth:`fit`, :meth:`transform`).

        Parameters
        ----------
        X : DataFrame or array
            Participants x features (and covariate columns when ``covars`` is omitted).
        y : None
            Ignored (a DataFrame here is read as ``covars``).
        covars : DataFrame, optional
            Batch and covariate columns on the same index.

        Returns
        -------
        DataFrame
            Harmonized features.
        """
        if isinstance(y, pd.DataFrame) and covars is None:
            covars = y
        return self.fit(X, covars=covars).transform(X, covars)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to a ``.npz`` file (arrays plus JSON metadata).

        Parameters
        ----------
        path : str or Path
            Output file; ``.npz`` is appended when missing.

        Returns
        -------
        Path
            The file written.
        """
        if not hasattr(self, "gamma_star_"):
            raise RuntimeError("ComBat.save called before fit")
        return write_combat_model(self, path)

    @classmethod
    def load(cls, path: str | Path) -> ComBat:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            A ``.npz`` file written by :meth:`save`.

        Returns
        -------
        ComBat
            The fitted estimator.
        """
        metadata, arrays = read_combat_model(path)
        model = cls(**metadata["params"])
        model.batch_levels_ = metadata["batch_levels"]
        model.categorical_levels_ = metadata["categorical_levels"]
        model.feature_names_ = metadata["feature_names"]
        model.ref_index_ = metadata["ref_index"]
        for name, value in arrays.items():
            setattr(model, name, value)
        return model

    # ---------------------------------------------------------------- helpers
    def _covariate_columns(self) -> list[str]:
        return [self.batch_col, *self.categorical_cols, *self.continuous_cols]

    def _batch_index(self, labels: np.ndarray, index: pd.Index) -> np.ndarray:
        """Map batch labels to positions in :attr:`batch_levels_` (str comparison)."""
        lookup = {str(level): i for i, level in enumerate(self.batch_levels_)}
        unseen = sorted({str(v) for v in labels} - set(lookup))
        if unseen:
            rows = [str(i) for i, v in zip(index, labels, strict=True) if str(v) in unseen]
            raise UnseenBatchError(
                f"ComBat: batch value(s) {unseen} in column {self.batch_col!r} "
                f"(participants {rows[:10]}) were not seen when the model was fitted; "
                f"known batches: {self.batch_levels_}"
            )
        return np.array([lookup[str(v)] for v in labels], dtype=int)

    def _reference_index(self) -> int | None:
        if self.ref_batch is None:
            return None
        names = [str(level) for level in self.batch_levels_]
        if str(self.ref_batch) not in names:
            raise InputDataError(
                f"ComBat: reference batch {self.ref_batch!r} is not a value of column "
                f"{self.batch_col!r} ({self.batch_levels_})"
            )
        return names.index(str(self.ref_batch))

    def _check_batch_sizes(self) -> None:
        if len(self.batch_levels_) < 2:
            raise InputDataError(
                f"ComBat needs at least two batches in column {self.batch_col!r}; "
                f"found {self.batch_levels_}"
            )
        small = [
            level
            for level, count in zip(self.batch_levels_, self.samples_per_batch_, strict=True)
            if count < 2
        ]
        if small and not self.mean_only:
            raise InputDataError(
                f"ComBat: batch(es) {small} of column {self.batch_col!r} have a single "
                "participant, so their variance cannot be estimated; merge them or use "
                "mean_only=True"
            )

    def _batch_design_rows(self) -> np.ndarray:
        """Batch part of the design for each batch level (ref column all ones)."""
        rows = np.eye(len(self.batch_levels_))
        if self.ref_index_ is not None:
            rows[:, self.ref_index_] = 1.0
        return rows

    def _covariate_design(self, covars: pd.DataFrame) -> np.ndarray:
        """One-hot categorical (first level dropped) and continuous covariate columns."""
        columns = []
        for col in self.categorical_cols:
            levels = [str(v) for v in self.categorical_levels_[col]]
            values = covars[col].astype(str).to_numpy()
            unknown = sorted(set(values) - set(levels))
            if unknown:
                raise InputDataError(
                    f"ComBat: covariate {col!r} has level(s) {unknown} not seen in fit ({levels})"
                )
            columns.extend((values == level).astype(float) for level in levels[1:])
        for col in self.continuous_cols:
            columns.append(covars[col].to_numpy(dtype=np.float64))
        if not columns:
            return np.zeros((len(covars), 0))
        return np.column_stack(columns)


def _feature_blocks(n_samples: int, n_features: int) -> list[slice]:
    """Column slices holding about :data:`BLOCK_BYTES` of float64 each."""
    width = max(1, BLOCK_BYTES // (8 * max(n_samples, 1)))
    return [slice(start, min(start + width, n_features)) for start in range(0, n_features, width)]

