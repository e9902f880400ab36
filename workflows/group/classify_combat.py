"""ComBat inside cross-validation folds, as a scikit-learn transformer.

:class:`FoldComBat` fits ComBat (:class:`workflows.group.harmonize.ComBat`) on the
training rows of a fold and harmonizes any rows afterwards, including those of a site
that was not in the training rows (leave-site-out), which ComBat alone cannot do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from brainscale.errors import InputDataError
from workflows.group.harmonize import ComBat


def float_values(table: pd.DataFrame) -> np.ndarray:
    """Return a table's values as float32 when they all are, else float64 (no copy if possible)."""
    values = table.to_numpy()
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


class FoldComBat(TransformerMixin, BaseEstimator):
    """ComBat as a scikit-learn transformer that finds each row's covariates in a side table.

    ``X`` must be a DataFrame whose index labels are rows of ``covars``; scikit-learn's
    cross-validation keeps the index when it subsets a DataFrame, so that each fold
    fits ComBat on its own training rows only.

    A batch that was not in the training rows (the held-out site of leave-site-out CV)
    is aligned without labels: the covariate effects and the pooled residual scale
    learnt on the harmonized training rows are kept, and the new batch's residual
    location and scale are estimated from its own rows (ComBat's model without the
    empirical Bayes step). This uses the test rows' features and protected covariates,
    never the target.

    Parameters
    ----------
    covars : pandas.DataFrame
        Batch and covariate columns, indexed like the feature rows.
    batch_col : str
        Column of ``covars`` holding the batch (site or scanner).
    categorical_cols, continuous_cols : sequence of str
        Covariates whose effects ComBat protects. Never include the prediction target.
    eb, parametric, mean_only : bool
        ComBat's options (see :class:`workflows.group.harmonize.ComBat`).
    """

    def __init__(
        self,
        covars: pd.DataFrame,
        batch_col: str = "site",
        categorical_cols=(),
        continuous_cols=(),
        eb: bool = True,
        parametric: bool = True,
        mean_only: bool = False,
    ):
        self.covars = covars
        self.batch_col = batch_col
        self.categorical_cols = categorical_cols
        self.continuous_cols = continuous_cols
        self.eb = eb
        self.parametric = parametric
        self.mean_only = mean_only

    def _rows(self, X) -> tuple[np.ndarray, pd.DataFrame]:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FoldComBat needs a DataFrame whose index points into covars")
        missing = X.index.difference(self.covars.index)
        if len(missing):
            raise InputDataError(f"no covariates for rows {list(missing[:5])}")
        return float_values(X), self.covars.loc[X.index]

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

    def fit(self, X, y=None):
        """Fit ComBat on the rows of ``X``; ``y`` is ignored (the target is never used)."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` and return its harmonized rows (one ComBat pass, not two)."""
        return self._fit(X)

    def _fit(self, X) -> np.ndarray:
        harmonized, covars = self._rows(X)
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
            harmonized = float_values(self.combat_.fit_transform(table, covars[cols]))
        design = self._design(covars).astype(harmonized.dtype)
        self.beta_ = np.linalg.solve(design.T @ design, design.T @ harmonized)
        self.residual_scale_ = np.empty(harmonized.shape[1])
        for start in range(0, harmonized.shape[1], 4096):
            block = slice(start, start + 4096)
            residuals = harmonized[:, block] - design @ self.beta_[:, block]
            self.residual_scale_[block] = residuals.std(axis=0)
        self.residual_scale_[self.residual_scale_ == 0] = 1.0
        return harmonized

    def transform(self, X) -> np.ndarray:
        """Return the harmonized rows of ``X`` as an array (columns in ``X``'s order)."""
        values, covars = self._rows(X)
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
