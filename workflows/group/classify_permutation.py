"""Permutation tests of nested cross-validation, with the label-free work shared.

The p-value of :func:`brainscale.workflows.group.classify.evaluate_model` comes from repeating
the whole nested procedure (in-fold ComBat, univariate screening, inner model
selection, refit) on label vectors permuted within sites. Done one permutation
after another, that repeats work that does not depend on the labels: the ComBat fit
of every outer and inner training set is the same for all permutations, because
the outer splits are fixed and the inner splits leave sites out
(:class:`~brainscale.workflows.group.classify_search.InnerSplits`). :func:`permuted_predictions`
therefore goes fold by fold and, inside a fold, over all label vectors at once:

- ComBat is fitted once per (outer or inner) training set and shared by every vector;
- the screening statistics of all vectors come from one batched pass
  (:func:`~brainscale.workflows.group.classify_search.f_statistics_many`);
- folds run in parallel (``n_jobs`` joblib workers; the feature table is memory-mapped,
  not copied), with a progress bar on a terminal;
- the scaling statistics of every column are computed once per training set and
  indexed with each vector's screened features
  (:class:`~brainscale.workflows.group.classify_search.ColumnScaler`);
- only the model fits, which depend on each vector's selected features, run once per
  vector; the candidates of the inner grid are fitted along
  the regularization path with warm starts
  (:func:`~brainscale.workflows.group.classify_search.fit_candidates`, also used by the plain loop).

Every step is the plain loop's, on the same rows with the same parameters, so the
predictions, and hence the p-values, are those of the plain loop (tested). Memory:
one fold's harmonized training and test rows at a time per worker (about the size
of the feature table), plus the ``(n_vectors, n_features)`` statistics.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import ParameterGrid
from tqdm.auto import tqdm

from brainscale.workflows.group.classify_combat import float_values
from brainscale.workflows.group.classify_cv import fold_workers
from brainscale.workflows.group.classify_search import (
    ColumnScaler,
    NestedGridSearch,
    column_statistics,
    f_statistics_many,
    fit_candidates,
    subset_params,
    top_k_support,
)


def _rows(X, index):
    return X.iloc[index] if hasattr(X, "iloc") else X[index]


class _FoldData:
    """The harmonized rows of one (outer or inner) training set and its held-out rows."""

    def __init__(self, harmonizer, X, train, test, params, n_rows):
        if harmonizer is None:
            self.train = float_values(_rows(X, train)) if hasattr(X, "iloc") else X[train]
            self.test = float_values(_rows(X, test)) if hasattr(X, "iloc") else X[test]
            self._statistics = None
            return
        fitted = clone(harmonizer)
        self.train = fitted.fit_transform(_rows(X, train), **subset_params(params, train, n_rows))
        self.test = fitted.transform(_rows(X, test), **subset_params(params, test, n_rows))
        self._statistics = None

    def scaler(self, support: np.ndarray | None) -> ColumnScaler:
        """Return the ColumnScaler of the training rows of the ``support`` columns."""
        if getattr(self, "_statistics", None) is None:
            self._statistics = column_statistics(self.train)
        mean, scale = self._statistics
        if support is None:
            return ColumnScaler.from_statistics(mean, scale)
        return ColumnScaler.from_statistics(mean[support], scale[support])

    def supports(self, screen, labels) -> list[np.ndarray | None]:
        """Kept feature indices for each label vector (``None``: no screening)."""
        if screen is None:
            return [None] * len(labels)
        stats = f_statistics_many(self.train, labels, task=screen.task)
        return [top_k_support(row, screen.k) for row in stats]


def _columns(values: np.ndarray, support: np.ndarray | None) -> np.ndarray:
    return values if support is None else values[:, support]


def _scaler(scale, data: _FoldData, support):
    """Return the scaling step fitted on the training rows (shared statistics if possible)."""
    if isinstance(scale, ColumnScaler):
        return data.scaler(support)
    return clone(scale).fit(_columns(data.train, support))


def _fold_predictions(search: NestedGridSearch, X, labels, train, test, groups, params):
    """Predictions of the held-out rows ``test`` for every label vector (one outer fold)."""
    steps = dict(search.pipeline.steps)
    harmonizer, screen = steps.get("combat"), steps.get("screen")
    scale, model = search.pipeline.steps[-2][1], search.pipeline.steps[-1][1]
    n_rows = labels.shape[1]
    candidates = list(ParameterGrid(search.param_grid))
    y_train = labels[:, train]
    train_groups = None if groups is None else groups[train]
    best = [candidates[0]] * len(labels)
    if len(candidates) > 1:
        scorer = get_scorer(search.scoring)
        label_free = getattr(search.cv, "label_free", lambda g: False)(train_groups)
        per_vector = (
            [list(search.cv.split(train, y_train[0], train_groups))] * len(labels)
            if label_free
            else [list(search.cv.split(train, yk, train_groups)) for yk in y_train]
        )
        scores = np.zeros((len(labels), len(candidates), len(per_vector[0])))
        shared: dict[bytes, _FoldData] = {}
        for vectors, inner in _by_split(per_vector):
            for split, (inner_train, inner_test) in enumerate(inner):
                key = inner_train.tobytes()
                if key not in shared:
                    shared.clear()  # one inner training set in memory at a time
                    shared[key] = _FoldData(
                        harmonizer, X, train[inner_train], train[inner_test], params, n_rows
                    )
                data = shared[key]
                supports = data.supports(screen, y_train[np.ix_(vectors, inner_train)])
                for vector, support in zip(vectors, supports, strict=True):
                    scaler = _scaler(scale, data, support)
                    fit_rows = scaler.transform(_columns(data.train, support))
                    held_out = scaler.transform(_columns(data.test, support))
                    fitted = fit_candidates(
                        model, candidates, fit_rows, y_train[vector, inner_train]
                    )
                    for index, candidate_model in enumerate(fitted):
                        scores[vector, index, split] = scorer(
                            candidate_model, held_out, y_train[vector, inner_test]
                        )
        best = [candidates[int(np.argmax(row.mean(axis=1)))] for row in scores]
    data = _FoldData(harmonizer, X, train, test, params, n_rows)
    supports = data.supports(screen, y_train)
    predictions = np.empty((len(labels), len(test)), dtype=labels.dtype)
    for vector, support in enumerate(supports):
        scaler = _scaler(scale, data, support)
        fitted = clone(model).set_params(**best[vector])
        fitted.fit(scaler.transform(_columns(data.train, support)), y_train[vector])
        predictions[vector] = fitted.predict(scaler.transform(_columns(data.test, support)))
    return test, predictions


def _by_split(per_vector: list[list]) -> list[tuple[list[int], list]]:
    """Group label vectors that share the same inner splits (all of them when label-free)."""
    groups: dict[bytes, tuple[list[int], list]] = {}
    for vector, splits in enumerate(per_vector):
        key = b"".join(train.tobytes() + b"|" for train, _ in splits)
        groups.setdefault(key, ([], splits))[0].append(vector)
    return list(groups.values())


def permuted_predictions(
    search: NestedGridSearch,
    X,
    labels: np.ndarray,
    splits: list,
    *,
    groups: np.ndarray | None = None,
    params: dict | None = None,
    n_jobs: int = 1,
    progress: bool | None = None,
) -> np.ndarray:
    """Out-of-fold predictions of a nested CV for many label vectors, work shared.

    Parameters
    ----------
    search : NestedGridSearch
        The unfitted inner search (pipeline, grid, inner splitter, scoring).
    X : DataFrame or array, shape (n_samples, n_features)
        Features.
    labels : ndarray, shape (n_vectors, n_samples)
        Label vectors (e.g. permutations of the target).
    splits : list of (train, test)
        Outer folds, the same for every vector.
    groups : ndarray, optional
        Site of each row (inner leave-sites-out splits).
    params : dict, optional
        Metadata for the pipeline steps (``covars=``).
    n_jobs : int
        Parallel workers (folds); -1: all cores. Fewer run when the memory available
        cannot hold a fold per worker
        (:func:`~brainscale.workflows.group.classify_cv.fold_workers`).
    progress : bool or None
        Progress bar over folds; ``None``: only on a terminal.

    Returns
    -------
    ndarray, shape (n_vectors, n_samples)
        Predicted label of every row for every vector.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import StratifiedKFold
    >>> from brainscale.workflows.group.classify import make_pipeline
    >>> from brainscale.workflows.group.classify_search import InnerSplits, NestedGridSearch
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 5)), np.tile([0, 1], 20)
    >>> search = NestedGridSearch(make_pipeline(LogisticRegression(), harmonizer=None),
    ...                           {"C": [0.1, 1.0]}, InnerSplits(3), "balanced_accuracy")
    >>> labels = np.stack([rng.permutation(y) for _ in range(4)])
    >>> splits = list(StratifiedKFold(4).split(X, y))
    >>> permuted_predictions(search, X, labels, splits, progress=False).shape
    (4, 40)
    """
    labels = np.asarray(labels)
    params = params or {}
    predictions = np.empty(labels.shape, dtype=labels.dtype)
    tasks = (
        delayed(_fold_predictions)(search, X, labels, train, test, groups, params)
        for train, test in splits
    )
    table_bytes = X.memory_usage(index=False).sum() if hasattr(X, "memory_usage") else X.nbytes
    workers = fold_workers(n_jobs, int(table_bytes))
    results = Parallel(n_jobs=workers, return_as="generator_unordered")(tasks)
    bar = tqdm(
        results,
        total=len(splits),
        desc=f"permutations ({len(labels)} label vectors) by fold",
        disable=None if progress is None else not progress,
        leave=False,
    )
    for test, fold_predictions in bar:
        predictions[:, test] = fold_predictions
    return predictions


__all__ = ["permuted_predictions"]
