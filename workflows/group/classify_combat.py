"""ComBat inside cross-validation folds, as a scikit-learn transformer.

:class:`FoldComBat` fits ComBat (:class:`brainscale.workflows.group.harmonize.ComBat`) on the
training rows of a fold and harmonizes any rows afterwards, including those of a site
that was not in the training rows (leave-site-out), which ComBat alone cannot do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from brainscale.errors import InputDataError
from brainscale.workflows.group.covariates import covariates_of
from brainscale.workflows.group.harmonize import ComBat


def float_values(table: pd.DataFrame) -> np.ndarray:
    """Return a table's values as float32 when they all are, else float64 (no copy if possible)."""
    values = table.to_numpy()
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


class FoldComBat(TransformerMixin, BaseEstimator):
    """ComBat as a scikit-learn transformer for cross-validation folds.

    Each row's batch and covariates come from ``covars`` (passed to ``fit`` and
    ``transform``; inside a :class:`~sklearn.pipeline.Pipeline` through scikit-learn
    metadata routing, which this transformer requests) or, when ``covars`` is
    omitted, from the columns of ``X`` named ``batch_col``, ``categorical_cols`` and
    ``continuous_cols`` (left out of the output). ``covars`` may be the whole
    participants table: rows are looked up by ``X``'s index when it holds them, else
    taken in order.

    A batch that was not in the training rows (the held-out site of leave-site-out CV)
    is aligned without labels: the covariate effects and the pooled residual scale
    learnt on the harmonized training rows are kept, and the new batch's residual
    location and scale are estimated from its own rows (ComBat's model without the
    empirical Bayes step). This uses the test rows' features and protected covariates,
    never the target.

    Parameters
    ----------
    batch_col : str
        Column holding the batch (site or scanner).
    categorical_cols, continuous_cols : sequence of str
        Covariates whose effects ComBat protects. Never include the prediction target.
    eb, parametric, mean_only : bool
        ComBat's options (see :class:`brainscale.workflows.group.harmonize.ComBat`).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn import config_context
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> rng = np.random.default_rng(0)
    >>> covars = pd.DataFrame({"site": np.repeat(["a", "b", "c"], 20),
    ...                        "age": rng.uniform(20, 80, 60)})
    >>> X = pd.DataFrame(rng.normal(size=(60, 4)) + np.repeat([0.0, 2.0, -1.0], 20)[:, None])
    >>> y = np.tile([0, 1], 30)
    >>> with config_context(enable_metadata_routing=True):
    ...     model = make_pipeline(FoldComBat("site", continuous_cols=["age"]),
    ...                           LogisticRegression()).fit(X[:40], y[:40], covars=covars[:40])
    ...     predicted = model.predict(X[40:], covars=covars[40:])  # site "c" is new
    >>> predicted.shape
    (20,)
    """

    __metadata_request__fit = {"covars": True}
    __metadata_request__transform = {"covars": True}

    def __init__(
        self,
        batch_col: str = "site",
        categorical_cols=(),
        continuous_cols=(),
        eb: bool = True,
        parametric: bool = True,
        mean_only: bool = False,
    ):
        self.batch_col = batch_col
        self.categorical_cols = categorical_cols
        self.continuous_cols = continuous_cols
        self.eb = eb
        self.parametric = parametric
        self.mean_only = mean_only

    def _rows(self, X, covars) -> tuple[np.ndarray, pd.DataFrame]:
        features, covars = covariates_of(X, covars, self._combat_columns())
        values = float_values(features)
        if values.shape[0] == 0 or values.shape[1] == 0:
            raise ValueError(f"0 sample(s) or feature(s) in an array of shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("Input X contains NaN or infinity")
        return values, covars.loc[features.index, self._combat_columns()]

    def _combat_columns(self) -> list[str]:
        return [self.batch_col, *self.categorical_cols, *self.continuous_cols]

    @staticmethod
    def _table(values: np.ndarray, covars: pd.DataFrame) -> pd.DataFrame:
        """Values with positional column labels, so that ComBat never loops over names."""
        return pd.DataFrame(values, index=covars.index, copy=False)

    def _design(self, covars: pd.DataFrame) -> np.ndarray:
        columns = [np.ones(len(covars))]
        for col in self.categorical_cols:
            for level in self.levels_[col][1:]:
                columns.append((covars[col].to_numpy() == level).astype(float))
        for col in self.continuous_cols:
            columns.append(covars[col].to_numpy(dtype=float))
        return np.column_stack(columns)

    def fit(self, X, y=None, covars: pd.DataFrame | None = None):
        """Fit ComBat on the rows of ``X``; ``y`` is ignored (the target is never used)."""
        self._fit(X, covars)
        return self

    def fit_transform(self, X, y=None, covars: pd.DataFrame | None = None) -> np.ndarray:
        """Fit on ``X`` and return its harmonized rows (one ComBat pass, not two)."""
        return self._fit(X, covars)

    def _fit(self, X, covars) -> np.ndarray:
        harmonized, covars = self._rows(X, covars)
        self.batches_ = sorted(pd.unique(covars[self.batch_col]))
        self.levels_ = {c: sorted(pd.unique(covars[c])) for c in self.categorical_cols}
        self.n_features_in_ = harmonized.shape[1]
        self.combat_ = None
        if len(self.batches_) > 1:
            cols = self._combat_columns()
            self.combat_ = ComBat(
                self.batch_col,
                categorical_cols=tuple(self.categorical_cols),
                continuous_cols=tuple(self.continuous_cols),
                eb=self.eb,
                parametric=self.parametric,
                mean_only=self.mean_only,
            )
            table = self._table(harmonized, covars)
            harmonized = float_values(self.combat_.fit_transform(table, covars=covars[cols]))
        design = self._design(covars).astype(harmonized.dtype)
        self.beta_ = np.linalg.solve(design.T @ design, design.T @ harmonized)
        self.residual_scale_ = np.empty(harmonized.shape[1])
        for start in range(0, harmonized.shape[1], 4096):
            block = slice(start, start + 4096)
            residuals = harmonized[:, block] - design @ self.beta_[:, block]
            self.residual_scale_[block] = residuals.std(axis=0)
        self.residual_scale_[self.residual_scale_ == 0] = 1.0
        return harmonized

    def transform(self, X, covars: pd.DataFrame | None = None) -> np.ndarray:
        """Return the harmonized rows of ``X`` as an array (columns in ``X``'s order)."""
        check_is_fitted(self, "beta_")
        values, covars = self._rows(X, covars)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {values.shape[1]} features, but FoldComBat is expecting "
                f"{self.n_features_in_} features as input"
            )
        out = np.empty_like(values)
        batch = covars[self.batch_col].astype(str).to_numpy()
        seen = np.isin(batch, [str(b) for b in self.batches_])
        if seen.any():
            rows = values[seen]
            if self.combat_ is None:
                out[seen] = rows
            else:
                seen_covars = covars[seen]
                harmonized = self.combat_.transform(
                    self._table(rows, seen_covars), seen_covars[self._combat_columns()]
                )
                out[seen] = float_values(harmonized)
        for new_batch in pd.unique(batch[~seen]):
            mask = batch == new_batch
            out[mask] = self._align_new_batch(values[mask], covars[mask], new_batch)
        return out

    def _align_new_batch(self, rows: np.ndarray, covars: pd.DataFrame, batch) -> np.ndarray:
        if len(rows) < 2:
            raise InputDataError(
                f"batch {batch!r} was not in the training rows and has fewer than 2 rows: "
                "its location and scale cannot be estimated"
            )
        for col in self.categorical_cols:
            unknown = set(covars[col]) - set(self.levels_[col])
            if unknown:
                raise InputDataError(f"covariate {col!r} has levels unseen in training: {unknown}")
        effect = self._design(covars).astype(rows.dtype) @ self.beta_
        residuals = rows - effect
        location = residuals.mean(axis=0)
        scale = residuals.std(axis=0)
        scale[scale == 0] = 1.0
        # (residuals - location) / scale * residual_scale_ + effect, in two passes
        gain = (self.residual_scale_ / scale).astype(rows.dtype)
        residuals *= gain
        residuals += effect - location * gain
        return residuals


__all__ = ["FoldComBat", "float_values"]
