"""Scores of out-of-fold predictions: metrics, bootstrap intervals, permutation p-values.

Pure NumPy/scikit-learn functions used by :mod:`brainscale.workflows.group.classify`; the metrics
evaluated thousands of times inside the bootstrap are computed directly with NumPy
(same values as scikit-learn's, without its input validation overhead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from sklearn.pipeline import Pipeline


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall (fast; same value as scikit-learn's)."""
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls))


def _auc(y_true: np.ndarray, scores: np.ndarray, classes: np.ndarray, positive=None) -> float:
    if len(np.unique(y_true)) < 2:
        return np.nan
    if scores.ndim == 1:
        positive = y_true == (classes[-1] if positive is None else positive)
        n_pos, n_neg = positive.sum(), (~positive).sum()
        ranks = rankdata(scores)
        return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    present = np.isin(classes, np.unique(y_true))
    if not present.all():
        return np.nan
    return roc_auc_score(y_true, scores, multi_class="ovr", labels=classes)


def bootstrap_ci(values_fn, n_rows: int, n_bootstrap: int, rng, level: float = 0.95):
    """Return the percentile bootstrap interval of a statistic of resampled rows.

    Parameters
    ----------
    values_fn : callable
        ``values_fn(index) -> float`` computes the statistic on the rows ``index``.
    n_rows, n_bootstrap : int
        Rows to resample with replacement, and resamples.
    rng : numpy.random.Generator
        Random generator.
    level : float
        Coverage of the interval.

    Returns
    -------
    tuple of float
        ``(low, high)``; NaN when fewer than 10 resamples gave a finite value.
    """
    stats = np.array([values_fn(rng.integers(0, n_rows, n_rows)) for _ in range(n_bootstrap)])
    stats = stats[np.isfinite(stats)]
    if len(stats) < 10:
        return np.nan, np.nan
    tail = (1 - level) / 2 * 100
    return tuple(np.percentile(stats, [tail, 100 - tail]))


def classification_metrics(y_true, y_pred, scores, n_bootstrap: int, rng, positive=None):
    """Accuracy, balanced accuracy and ROC AUC with bootstrap CIs, confusion matrix, ROC curve.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray
        Labels and out-of-fold predicted labels.
    scores : numpy.ndarray or None
        Out-of-fold decision scores: positive-class score (binary) or class probabilities.
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals.
    rng : numpy.random.Generator
        Random generator of the resampling.
    positive : object, optional
        Positive class of a binary task (default: the class that sorts last); ``scores``
        are that class's.

    Returns
    -------
    metrics, confusion, roc : pandas.DataFrame
        ``roc`` is None unless the task is binary with scores.
    """
    classes = np.unique(y_true)
    functions = {
        "accuracy": lambda i: float(np.mean(y_true[i] == y_pred[i])),
        "balanced_accuracy": lambda i: _balanced_accuracy(y_true[i], y_pred[i]),
    }
    if scores is not None:
        functions["roc_auc"] = lambda i: _auc(y_true[i], scores[i], classes, positive)
    everyone = np.arange(len(y_true))
    rows = [
        (name, fn(everyone), *bootstrap_ci(fn, len(y_true), n_bootstrap, rng))
        for name, fn in functions.items()
    ]
    metrics = pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"])
    confusion = pd.DataFrame(
        confusion_matrix(y_true, y_pred, labels=classes),
        index=pd.Index(classes, name="true"),
        columns=pd.Index(classes, name="predicted"),
    )
    roc = None
    if scores is not None and scores.ndim == 1 and len(classes) == 2:
        fpr, tpr, threshold = roc_curve(
            y_true == (classes[-1] if positive is None else positive), scores
        )
        roc = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": threshold})
    return metrics, confusion, roc


def regression_metrics(y_true, y_pred, n_bootstrap: int, rng) -> pd.DataFrame:
    """Mean absolute error and R² of out-of-fold predictions, with bootstrap CIs."""
    functions = {
        "mae": lambda i: float(np.mean(np.abs(y_true[i] - y_pred[i]))),
        "r2": lambda i: (
            1 - np.sum((y_true[i] - y_pred[i]) ** 2) / np.sum((y_true[i] - y_true[i].mean()) ** 2)
        ),
    }
    everyone = np.arange(len(y_true))
    rows = [
        (name, fn(everyone), *bootstrap_ci(fn, len(y_true), n_bootstrap, rng))
        for name, fn in functions.items()
    ]
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"])


def permutation_p_value(observed: float, null_scores: np.ndarray) -> float:
    """Return ``(1 + #{null >= observed}) / (1 + n)`` (NaN without permutations)."""
    if len(null_scores) == 0:
        return np.nan
    return float((1 + np.sum(null_scores >= observed - 1e-12)) / (1 + len(null_scores)))


@dataclass
class ModelEvaluation:
    """What :func:`evaluate_model` found, as tables ready to be written.

    Attributes
    ----------
    metrics : pandas.DataFrame
        One row per metric: ``metric``, ``value``, ``ci_low``, ``ci_high`` (bootstrap 95 %).
    p_value : float
        Permutation-test p-value of the primary score (NaN when no permutation was run).
    predictions : pandas.DataFrame
        Out-of-fold predictions, one row per participant (``fold``, ``y_true``, ``y_pred``,
        ``score`` columns).
    confusion : pandas.DataFrame or None
        Confusion matrix of the out-of-fold predictions (rows: truth, columns: predicted).
    roc : pandas.DataFrame or None
        ROC curve (``fpr``, ``tpr``, ``threshold``) of a binary classification.
    top_features : pandas.DataFrame
        Feature importances of the model refitted on all rows, largest first.
    final_model : sklearn.pipeline.Pipeline
        The pipeline refitted on all rows with the hyperparameters chosen by inner CV.
    """

    model: str
    task: str
    cv: str
    metrics: pd.DataFrame
    p_value: float
    null_scores: np.ndarray
    predictions: pd.DataFrame
    confusion: pd.DataFrame | None
    roc: pd.DataFrame | None
    top_features: pd.DataFrame
    final_model: Pipeline
    notes: list[str] = field(default_factory=list)
