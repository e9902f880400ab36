"""Scalable pieces of the leakage-free prediction pipeline.

- :class:`UnivariateScreen` keeps the features with the largest univariate F statistic
  (scikit-learn's ``f_classif`` / ``f_regression``), computed in one streaming pass
  over row chunks, so that a linear model on 10,000 participants x 79,800 connectome
  edges trains on a few thousand columns. It is a pipeline step, so it is fitted on
  the training rows of every fold only (screening on all rows would leak the target).
- :class:`NestedGridSearch` is the inner cross-validation of nested CV. It gives the
  same choice as :class:`sklearn.model_selection.GridSearchCV` over the model's
  hyperparameters, but fits the preprocessing steps (ComBat, screening, scaling) once
  per inner fold instead of once per fold and candidate; with a single candidate
  there is nothing to choose and the inner loop is skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, TransformerMixin, clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if

#: Rows per chunk of the streaming statistics (about 40 MB of float64 for 80,000 columns).
CHUNK_ROWS = 64


def _values(X) -> np.ndarray:
    return X.to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)


def f_statistics(X, y, *, task: str = "classification") -> np.ndarray:
    """Univariate F statistic of every feature against the target.

    Classification: one-way ANOVA F across the classes (scikit-learn ``f_classif``);
    regression: ``r^2 / (1 - r^2) * (n - 2)`` with ``r`` the Pearson correlation
    (``f_regression``). Sums are accumulated in float64 over chunks of rows, around a
    shift (the first chunk's mean) that avoids cancellation, so a float32 table is
    never copied whole.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Features.
    y : array-like, shape (n_samples,)
        Class labels or continuous target.
    task : {"classification", "regression"}
        Which statistic.

    Returns
    -------
    ndarray, shape (n_features,)
        F statistics; NaN for features that are constant (within every class).
    """
    values = _values(X)
    y = np.asarray(y)
    n, p = values.shape
    if task == "classification":
        _, codes = np.unique(y, return_inverse=True)
        groups = np.eye(codes.max() + 1)[codes]  # one-hot, (n, n_classes)
    else:
        target = y.astype(float)
        groups = (target - target.mean())[:, None]
    shift = values[: min(n, CHUNK_ROWS)].astype(np.float64).mean(axis=0)
    sums = np.zeros(p)
    squares = np.zeros(p)
    by_group = np.zeros((groups.shape[1], p))
    for start in range(0, n, CHUNK_ROWS):
        chunk = values[start : start + CHUNK_ROWS].astype(np.float64) - shift
        sums += chunk.sum(axis=0)
        squares += np.einsum("ij,ij->j", chunk, chunk)
        by_group += groups[start : start + CHUNK_ROWS].T @ chunk
    total_ss = squares - sums**2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        if task == "classification":
            counts = groups.sum(axis=0)
            between = (by_group**2 / counts[:, None]).sum(axis=0) - sums**2 / n
            within = total_ss - between
            n_classes = groups.shape[1]
            return (between / (n_classes - 1)) / (within / (n - n_classes))
        r = by_group[0] / np.sqrt(total_ss * np.sum(groups[:, 0] ** 2))
        return r**2 / (1 - r**2) * (n - 2)


class UnivariateScreen(TransformerMixin, BaseEstimator):
    """Keep the ``k`` features with the largest univariate F statistic (fitted on ``X, y``).

    Parameters
    ----------
    k : int
        Number of features kept (all of them when there are fewer).
    task : {"classification", "regression"}
        Statistic used (see :func:`f_statistics`).

    Attributes
    ----------
    scores_ : ndarray, shape (n_features,)
        F statistics of the training rows.
    support_ : ndarray of int
        Indices of the kept features, in increasing order.
    """

    def __init__(self, k: int = 5000, task: str = "classification"):
        self.k = k
        self.task = task

    def fit(self, X, y):
        """Score every feature on the training rows and choose the ``k`` best."""
        self.scores_ = f_statistics(X, y, task=self.task)
        self.n_features_in_ = self.scores_.size
        ranking = np.argsort(-np.nan_to_num(self.scores_, nan=-np.inf), kind="stable")
        self.support_ = np.sort(ranking[: self.k])
        return self

    def transform(self, X) -> np.ndarray:
        """Return the kept columns."""
        return _values(X)[:, self.support_]

    def get_support(self, indices: bool = False) -> np.ndarray:
        """Boolean mask (or indices) of the kept features, as scikit-learn selectors do."""
        if indices:
            return self.support_
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.support_] = True
        return mask


def _best_has(name: str):
    return lambda search: hasattr(search.best_estimator_, name)


class NestedGridSearch(MetaEstimatorMixin, BaseEstimator):
    """Choose a pipeline's model hyperparameters by an inner cross-validation.

    Equivalent to ``GridSearchCV(pipeline, {"model__<name>": values}, cv, scoring)``
    (same splits, scores and choice, the first best candidate on ties) when the grid
    only tunes the last step: the steps before it are fitted once per inner fold and
    shared by the candidates.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Preprocessing steps followed by the model (last step).
    param_grid : dict
        Grid of the model's parameters (plain names, e.g. ``{"C": [0.1, 1.0]}``).
    cv : cross-validation splitter
        Inner splits.
    scoring : str
        scikit-learn scorer name.

    Attributes
    ----------
    best_params_ : dict
        Chosen model parameters.
    cv_scores_ : ndarray, shape (n_candidates, n_splits)
        Inner validation scores (empty with a single candidate).
    best_estimator_ : Pipeline
        The pipeline with the chosen parameters, refitted on all rows.
    """

    def __init__(self, pipeline: Pipeline, param_grid: dict, cv, scoring: str):
        self.pipeline = pipeline
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring

    def fit(self, X, y):
        """Run the inner cross-validation, then refit the best pipeline on all rows."""
        y = np.asarray(y)
        candidates = list(ParameterGrid(self.param_grid))
        self.cv_scores_ = np.empty((0, 0))
        best = candidates[0]
        if len(candidates) > 1:
            splits = list(self.cv.split(X, y))
            scorer = get_scorer(self.scoring)
            self.cv_scores_ = np.empty((len(candidates), len(splits)))
            for split, (train, test) in enumerate(splits):
                preprocess = clone(self.pipeline[:-1])
                X_train = preprocess.fit_transform(_rows(X, train), y[train])
                X_test = preprocess.transform(_rows(X, test))
                for index, params in enumerate(candidates):
                    model = clone(self.pipeline[-1]).set_params(**params).fit(X_train, y[train])
                    self.cv_scores_[index, split] = scorer(model, X_test, y[test])
            best = candidates[int(np.argmax(self.cv_scores_.mean(axis=1)))]
        self.best_params_ = best
        model_name = self.pipeline.steps[-1][0]
        self.best_estimator_ = clone(self.pipeline).set_params(
            **{f"{model_name}__{name}": value for name, value in best.items()}
        )
        self.best_estimator_.fit(X, y)
        self.classes_ = getattr(self.best_estimator_, "classes_", None)
        return self

    def predict(self, X):
        """Predictions of the refitted best pipeline."""
        return self.best_estimator_.predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the refitted best pipeline."""
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the refitted best pipeline."""
        return self.best_estimator_.decision_function(X)


def _rows(X, index: np.ndarray):
    return X.iloc[index] if isinstance(X, pd.DataFrame) else X[index]


__all__ = ["NestedGridSearch", "UnivariateScreen", "f_statistics"]
