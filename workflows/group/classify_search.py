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
from sklearn import config_context
from sklearn.base import BaseEstimator, MetaEstimatorMixin, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import GroupKFold, KFold, ParameterGrid, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

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
    return f_statistics_many(X, np.asarray(y)[None, :], task=task)[0]


def f_statistics_many(X, labels, *, task: str = "classification") -> np.ndarray:
    """F statistics of every feature against each of several target vectors at once.

    The label-independent sums are accumulated once and the class (or target) sums of
    all vectors come from one matrix product per chunk of rows, so the statistics of
    100 permuted label vectors cost about as much as those of a few. Row ``k`` equals
    ``f_statistics(X, labels[k], task=task)``.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Features.
    labels : array-like, shape (n_vectors, n_samples)
        Target vectors (classification: the same classes in each, e.g. permutations).
    task : {"classification", "regression"}
        Which statistic.

    Returns
    -------
    ndarray, shape (n_vectors, n_features)
    """
    values = _values(X)
    labels = np.asarray(labels)
    n_vectors, n = labels.shape
    p = values.shape[1]
    if task == "classification":
        _, codes = np.unique(labels, return_inverse=True)
        codes = codes.reshape(labels.shape)
        n_classes = int(codes.max()) + 1
        # one-hot of every vector side by side: (n, n_vectors * n_classes)
        groups = np.zeros((n, n_vectors * n_classes))
        groups[np.arange(n)[:, None], np.arange(n_vectors) * n_classes + codes.T] = 1.0
    else:
        target = labels.astype(float)
        groups = (target - target.mean(axis=1, keepdims=True)).T
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
            counts = groups.sum(axis=0).reshape(n_vectors, n_classes)
            by_class = by_group.reshape(n_vectors, n_classes, p)
            between = (by_class**2 / counts[:, :, None]).sum(axis=1) - sums**2 / n
            within = total_ss - between
            return (between / (n_classes - 1)) / (within / (n - n_classes))
        r = by_group / np.sqrt(total_ss * np.sum(groups**2, axis=0)[:, None])
        return r**2 / (1 - r**2) * (n - 2)


def top_k_support(scores: np.ndarray, k: int) -> np.ndarray:
    """Return the indices (increasing) of the ``k`` largest scores (NaN last, ties by position)."""
    ranking = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    return np.sort(ranking[:k])


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
        X, y = validate_data(self, X, y, dtype=None, ensure_min_features=1)
        self.scores_ = f_statistics(X, y, task=self.task)
        self.support_ = top_k_support(self.scores_, self.k)
        return self

    def transform(self, X) -> np.ndarray:
        """Return the kept columns."""
        check_is_fitted(self, "support_")
        return validate_data(self, X, reset=False, dtype=None)[:, self.support_]

    def get_support(self, indices: bool = False) -> np.ndarray:
        """Boolean mask (or indices) of the kept features, as scikit-learn selectors do."""
        if indices:
            return self.support_
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.support_] = True
        return mask


class ColumnScaler(TransformerMixin, BaseEstimator):
    """Standardize columns to zero mean and unit variance (float64 statistics).

    The same transform as :class:`sklearn.preprocessing.StandardScaler`, with the
    column statistics computed by NumPy's reductions, in which each column's value
    depends only on that column: the statistics of a subset of columns are the
    subset of the statistics of all of them, bit for bit. The permutation engine
    therefore computes them once per training set and indexes them with each
    permutation's screened features (:meth:`from_statistics`), instead of refitting.

    Parameters
    ----------
    copy : bool
        Ignored (kept for StandardScaler's signature); the output is a new array.

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (n_features,)
        Column means and standard deviations (1 where a column is constant).
    """

    def __init__(self, copy: bool = True):
        self.copy = copy

    def fit(self, X, y=None):
        """Compute the column means and standard deviations."""
        X = validate_data(self, X, dtype=(np.float64, np.float32))
        self.mean_, self.scale_ = column_statistics(X)
        return self

    @classmethod
    def from_statistics(cls, mean: np.ndarray, scale: np.ndarray) -> ColumnScaler:
        """Return a fitted scaler from precomputed :func:`column_statistics` (or a subset)."""
        scaler = cls()
        scaler.mean_, scaler.scale_, scaler.n_features_in_ = mean, scale, len(mean)
        return scaler

    def transform(self, X) -> np.ndarray:
        """Return ``(X - mean_) / scale_`` in ``X``'s float dtype."""
        check_is_fitted(self, "mean_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
        out = np.subtract(X, self.mean_.astype(dtype), dtype=dtype)
        out /= self.scale_.astype(dtype)
        return out


def column_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations in float64 (constant columns: scale 1).

    Each column is copied contiguous (in blocks of columns) and reduced along its own
    axis, so its statistics do not depend on the other columns (NumPy reorders the loops
    of an axis-0 reduction with the array's shape, which changes the rounding).
    """
    n, p = X.shape
    mean, scale = np.empty(p), np.empty(p)
    for start in range(0, p, 2048):
        columns = np.array(X[:, start : start + 2048].T, dtype=np.float64, order="C")  # a copy
        block_mean = columns.sum(axis=1) / n
        columns -= block_mean[:, None]
        mean[start : start + 2048] = block_mean
        scale[start : start + 2048] = np.sqrt(np.einsum("ij,ij->i", columns, columns) / n)
    scale[scale == 0] = 1.0
    return mean, scale


class InnerSplits:
    """The inner cross-validation of nested CV: leave-sites-out when sites are known.

    With groups (sites) and at least ``n_splits`` of them in the training rows the
    inner folds are :class:`~sklearn.model_selection.GroupKFold` over sites, so that
    hyperparameters are chosen for what the outer leave-site-out loop scores (a new
    site) and the folds do not depend on the labels: they are the same for every
    permuted label vector, which lets the permutation test share the in-fold ComBat
    fits (:mod:`brainscale.workflows.group.classify_permutation`). Otherwise the folds are
    stratified (classification) or plain shuffled K-folds.

    Parameters
    ----------
    n_splits : int
        Inner folds.
    task : {"classification", "regression"}
        Stratify on the labels (classification) or not.
    seed : int
        Shuffling seed of the K-folds.
    """

    def __init__(self, n_splits: int = 3, task: str = "classification", seed: int = 0):
        self.n_splits = n_splits
        self.task = task
        self.seed = seed

    def label_free(self, groups) -> bool:
        """Return whether the folds of rows with these ``groups`` ignore the labels."""
        return groups is not None and len(np.unique(groups)) >= self.n_splits

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Return the number of inner folds."""
        return self.n_splits

    def split(self, X, y, groups=None):
        """Yield ``(train, test)`` row indices."""
        if self.label_free(groups):
            return GroupKFold(self.n_splits).split(X, y, groups)
        if self.task == "classification":
            splitter = StratifiedKFold(self.n_splits, shuffle=True, random_state=self.seed)
        else:
            splitter = KFold(self.n_splits, shuffle=True, random_state=self.seed)
        return splitter.split(X, y)


#: Models whose ``warm_start`` starts the solver from the previous solution (and only
#: that: a forest's ``warm_start`` adds trees, so it is not listed).
WARM_STARTABLE = (LogisticRegression,)


def fit_candidates(model, candidates: list[dict], X, y) -> list:
    """Fit ``model`` with each candidate's parameters, in order, on the same rows.

    Logistic regressions are warm-started from the previous candidate's solution (the
    grid's order: increasing ``C`` follows the regularization path), which converges
    to the same optimum in about a third fewer iterations. Every caller (the inner CV
    of :class:`NestedGridSearch` and the permutation engine) fits through this
    function, so they give identical models.
    """
    fitted, previous = [], None
    for candidate in candidates:
        estimator = clone(model).set_params(**candidate)
        if isinstance(estimator, WARM_STARTABLE) and previous is not None:
            estimator.set_params(warm_start=True)
            estimator.coef_ = previous.coef_.copy()
            estimator.intercept_ = previous.intercept_.copy()
        previous = estimator.fit(X, y)
        fitted.append(previous)
    return fitted


def _best_has(name: str):
    return lambda search: hasattr(search.best_estimator_, name)


class NestedGridSearch(MetaEstimatorMixin, BaseEstimator):
    """Choose a pipeline's model hyperparameters by an inner cross-validation.

    Equivalent to ``GridSearchCV(pipeline, {"model__<name>": values}, cv, scoring)``
    (same splits and choice, the first best candidate on ties) when the grid only tunes
    the last step: the steps before it are fitted once per inner fold and shared by the
    candidates, and logistic-regression candidates are warm-started along the grid
    (:func:`fit_candidates`; same optimum within the solver's tolerance).

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

    def fit(self, X, y, groups=None, **params):
        """Run the inner cross-validation, then refit the best pipeline on all rows.

        Parameters
        ----------
        X : DataFrame or array
            Training rows.
        y : array-like
            Target.
        groups : array-like, optional
            Group (site) of each row, passed to the inner splitter.
        **params
            Metadata routed to the pipeline steps (e.g. ``covars=`` for
            :class:`~brainscale.workflows.group.classify_combat.FoldComBat`); sample-aligned
            values are subset with the rows of each inner fold.
        """
        y = np.asarray(y)
        candidates = list(ParameterGrid(self.param_grid))
        self.cv_scores_ = np.empty((0, 0))
        best = candidates[0]
        if len(candidates) > 1:
            splits = list(self.cv.split(X, y, groups))
            scorer = get_scorer(self.scoring)
            self.cv_scores_ = np.empty((len(candidates), len(splits)))
            for split, (train, test) in enumerate(splits):
                preprocess = clone(self.pipeline[:-1])
                with routing():
                    X_train = preprocess.fit_transform(
                        _rows(X, train), y[train], **subset_params(params, train, len(y))
                    )
                    X_test = preprocess.transform(
                        _rows(X, test), **subset_params(params, test, len(y))
                    )
                models = fit_candidates(self.pipeline[-1], candidates, X_train, y[train])
                for index, model in enumerate(models):
                    self.cv_scores_[index, split] = scorer(model, X_test, y[test])
            best = candidates[int(np.argmax(self.cv_scores_.mean(axis=1)))]
        self.best_params_ = best
        model_name = self.pipeline.steps[-1][0]
        self.best_estimator_ = clone(self.pipeline).set_params(
            **{f"{model_name}__{name}": value for name, value in best.items()}
        )
        with routing():
            self.best_estimator_.fit(X, y, **params)
        self.classes_ = getattr(self.best_estimator_, "classes_", None)
        self.n_features_in_ = getattr(self.best_estimator_, "n_features_in_", None)
        return self

    def predict(self, X, **params):
        """Predictions of the refitted best pipeline (``params`` routed, e.g. ``covars=``)."""
        check_is_fitted(self, "best_estimator_")
        with routing():
            return self.best_estimator_.predict(X, **params)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X, **params):
        """Class probabilities of the refitted best pipeline."""
        with routing():
            return self.best_estimator_.predict_proba(X, **params)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X, **params):
        """Decision function of the refitted best pipeline."""
        with routing():
            return self.best_estimator_.decision_function(X, **params)


def routing():
    """Context in which scikit-learn routes metadata (``covars=``) to the steps asking for it."""
    return config_context(enable_metadata_routing=True)


def subset_params(params: dict, index: np.ndarray, n_rows: int) -> dict:
    """Rows ``index`` of the sample-aligned values in ``params`` (others unchanged).

    A covariate table indexed by participant is subset by position only when it has
    exactly one row per sample; :func:`~brainscale.workflows.group.covariates.covariates_of`
    looks rows up by label otherwise.
    """
    return {
        name: _rows(value, index) if hasattr(value, "__len__") and len(value) == n_rows else value
        for name, value in params.items()
    }


def _rows(X, index: np.ndarray):
    return X.iloc[index] if isinstance(X, (pd.DataFrame, pd.Series)) else X[index]


__all__ = [
    "WARM_STARTABLE",
    "ColumnScaler",
    "InnerSplits",
    "NestedGridSearch",
    "UnivariateScreen",
    "f_statistics",
    "column_statistics",
    "f_statistics_many",
    "fit_candidates",
    "routing",
    "subset_params",
    "top_k_support",
]
