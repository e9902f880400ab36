"""Cross-validation pieces of :func:`brainscale.workflows.group.classify.evaluate_model`.

- :func:`outer_splits` turns ``cv=`` (``"auto"``, ``"leave-site-out"``, an integer or a
  scikit-learn splitter) into the outer folds and their name;
- :func:`nested_predictions` fits the inner search on each outer training set (in
  parallel) and predicts the held-out rows;
- :func:`permute_within` shuffles labels within sites (the permutation test's null).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import KFold, LeaveOneGroupOut, StratifiedKFold
from sklearn.pipeline import Pipeline

from brainscale.errors import InputDataError
from brainscale.workflows.group.classify_search import subset_params

LEAVE_SITE_OUT = "leave-site-out"


def outer_splits(cv, y: np.ndarray, groups: np.ndarray | None, task: str, seed: int):
    """Return ``(name, splits)`` of the outer cross-validation.

    Parameters
    ----------
    cv : "auto", "leave-site-out", int or splitter
        ``"auto"``: leave one site out with 3 or more sites, else 5 folds;
        an integer: that many (stratified for classification) shuffled folds;
        an object with ``split(X, y, groups)``: its folds (given the sites as groups).
    y : ndarray
        Target.
    groups : ndarray or None
        Site of each row.
    task : {"classification", "regression"}
        Stratify integer folds on the classes or not.
    seed : int
        Shuffling seed of integer folds.

    Returns
    -------
    str, list of (train, test)
        A name for the report (``"leave-one-site-out"``, ``"5-fold"``, the splitter's
        class) and the folds.
    """
    n_sites = 0 if groups is None else len(np.unique(groups))
    if isinstance(cv, str):
        if cv == LEAVE_SITE_OUT:
            if n_sites < 2:
                raise InputDataError("cv='leave-site-out' needs a site column with 2+ sites")
            return "leave-one-site-out", list(LeaveOneGroupOut().split(y, y, groups))
        if cv != "auto":
            raise ValueError(f"cv must be 'auto', {LEAVE_SITE_OUT!r}, an int or a splitter")
        if n_sites >= 3:
            return "leave-one-site-out", list(LeaveOneGroupOut().split(y, y, groups))
        cv = 5
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if task == "classification":
            n_splits = int(min(cv, np.bincount(pd.factorize(y)[0]).min()))
            if n_splits < 2:
                raise InputDataError(
                    "each class needs at least 2 participants for cross-validation"
                )
            splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
        else:
            splitter = KFold(int(cv), shuffle=True, random_state=seed)
        return f"{splitter.get_n_splits()}-fold", list(splitter.split(y, y))
    if not hasattr(cv, "split"):
        raise ValueError(f"cv={cv!r} is not 'auto', {LEAVE_SITE_OUT!r}, an int or a splitter")
    return type(cv).__name__, list(cv.split(np.zeros((len(y), 1)), y, groups))


def fold_workers(n_jobs: int, table_bytes: int, *, copies: float = 3.0) -> int:
    """Return how many outer folds may run at once without exhausting memory.

    Each worker holds about ``copies`` x the feature table (a fold's harmonized training
    and test rows, the screened and scaled columns); the workers together get at most
    half of the memory available now. ``n_jobs`` -1 means all cores.

    >>> fold_workers(8, 1024)
    8
    """
    wanted = (os.cpu_count() or 1) if n_jobs in (-1, 0) else max(1, int(n_jobs))
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return wanted
    fits = int(0.5 * available // max(copies * table_bytes, 1))
    return max(1, min(wanted, fits))


def permute_within(y: np.ndarray, groups: np.ndarray | None, rng) -> np.ndarray:
    """Return ``y`` shuffled within each group (the whole vector when ``groups`` is None)."""
    permuted = y.copy()
    if groups is None:
        return rng.permutation(y)
    for group in np.unique(groups):
        index = np.flatnonzero(groups == group)
        permuted[index] = y[rng.permutation(index)]
    return permuted


def decision_scores(model, X, positive=None, **params) -> np.ndarray | None:
    """Score of the positive class (binary) or class probabilities, when the model has them."""
    classes = getattr(model, "classes_", None)
    classes = [] if classes is None else list(classes)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X, **params)
        if proba.shape[1] != 2:
            return proba
        return proba[:, classes.index(positive) if positive in classes else 1]
    if hasattr(model, "decision_function"):
        scores = model.decision_function(X, **params)
        if scores.ndim == 1 and positive is not None and classes and positive == classes[0]:
            return -scores
        return scores
    return None


def _fit_predict(search, X, y, train, test, groups, params, task, positive):
    fitted = clone(search).fit(
        X.iloc[train],
        y[train],
        groups=None if groups is None else groups[train],
        **subset_params(params, train, len(y)),
    )
    test_params = subset_params(params, test, len(y))
    y_pred = fitted.predict(X.iloc[test], **test_params)
    scores = None
    if task == "classification":
        scores = decision_scores(fitted, X.iloc[test], positive, **test_params)
    return test, y_pred, scores


def _nbytes(X) -> int:
    return int(X.memory_usage(index=False).sum()) if hasattr(X, "memory_usage") else X.nbytes


def nested_predictions(
    search, X, y, splits, task, *, groups=None, params=None, positive=None, n_jobs=1
):
    """Out-of-fold predictions, decision scores and fold numbers of a nested CV.

    Parameters
    ----------
    search : NestedGridSearch
        The unfitted inner search, cloned and fitted on each outer training set.
    X : DataFrame
        Features.
    y : ndarray
        Target.
    splits : list of (train, test)
        Outer folds.
    task : {"classification", "regression"}
        What is predicted.
    groups : ndarray, optional
        Sites, for the inner leave-sites-out splits.
    params : dict, optional
        Metadata routed to the pipeline (``covars=``).
    positive : object, optional
        Positive class of a binary task (its score is kept).
    n_jobs : int
        Folds fitted in parallel.

    Returns
    -------
    y_pred, scores, folds : ndarray
        ``scores`` is None when the model has no scores or the task is regression.
    """
    params = params or {}
    y_pred = np.empty(len(y), dtype=object if task == "classification" else float)
    scores, folds = None, np.empty(len(y), dtype=int)
    fold_of = {id(test): fold for fold, (_, test) in enumerate(splits)}
    results = Parallel(n_jobs=fold_workers(n_jobs, _nbytes(X)))(
        delayed(_fit_predict)(search, X, y, train, test, groups, params, task, positive)
        for train, test in splits
    )
    for (_, test), (_, fold_pred, fold_scores) in zip(splits, results, strict=True):
        y_pred[test] = fold_pred
        folds[test] = fold_of[id(test)]
        if fold_scores is not None:
            if scores is None:
                scores = np.zeros((len(y), *fold_scores.shape[1:]))
            scores[test] = fold_scores
    if task == "classification":
        y_pred = y_pred.astype(y.dtype)
    return y_pred, scores, folds


def top_features(final_model: Pipeline, names: list[str]) -> pd.DataFrame:
    """Feature importances of a fitted pipeline's model (0 for screened-out features)."""
    model = final_model.named_steps["model"]
    if hasattr(model, "coef_"):
        coef = np.atleast_2d(model.coef_)
        weights, signed = np.abs(coef).mean(axis=0), coef.mean(axis=0)
    elif hasattr(model, "feature_importances_"):
        weights = signed = np.asarray(model.feature_importances_)
    else:
        return pd.DataFrame(columns=["feature", "importance", "signed_weight"])
    if "screen" in final_model.named_steps:  # screened-out features weigh 0
        kept = final_model.named_steps["screen"].get_support(indices=True)
        full = np.zeros((2, len(names)))
        full[:, kept] = weights, signed
        weights, signed = full
    table = pd.DataFrame({"feature": names, "importance": weights, "signed_weight": signed})
    return table.sort_values("importance", ascending=False, ignore_index=True)


__all__ = [
    "LEAVE_SITE_OUT",
    "decision_scores",
    "fold_workers",
    "nested_predictions",
    "outer_splits",
    "permute_within",
    "top_features",
]
