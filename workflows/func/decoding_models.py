"""Classifiers and their evaluation for decoding: time-respecting CV, block permutations.

The linear models (linear SVM, logistic regression) are fitted in the row space of the
training patterns: with an L2 penalty the optimal weights are a combination of the
training rows (representer theorem), so projecting standardised patterns on the right
singular vectors of the training set gives the same decision function in at most
``n_train`` dimensions. With thousands of voxels and ~100 trials this is exact and makes
every fit (and every permutation) cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainscale.workflows.func.decoding import Patterns

LINEAR_MODELS = ("linsvm", "logreg")
MODELS = ("linsvm", "logreg", "rf")
FOREST_TREES = 100
FOREST_PERMUTATIONS = 20
"""The forest's permutation test is capped (each permutation refits every fold's forest)."""


class RowSpaceProjection(TransformerMixin, BaseEstimator):
    """Project rows on the span of the training rows (exact for L2-penalised linear models).

    Only applied when there are more features than training rows; ``components_`` maps
    a weight vector in the projected space back to the features (``w @ components_``).
    """

    def fit(self, X, y=None):
        """Compute the right singular vectors of ``X`` (or the identity when p <= n)."""
        X = np.asarray(X, dtype=float)
        if X.shape[1] <= X.shape[0]:
            self.components_ = None
            return self
        _, singular, vt = np.linalg.svd(X, full_matrices=False)
        rank = int(np.sum(singular > singular.max() * 1e-10))
        self.components_ = vt[:rank]
        return self

    def transform(self, X):
        """Return the coordinates of ``X`` in the training row space."""
        X = np.asarray(X, dtype=float)
        return X if self.components_ is None else X @ self.components_.T


def build_classifier(name: str, seed: int = 0):
    """Return an unfitted standardise-then-classify pipeline (``linsvm``, ``logreg``, ``rf``).

    The classifiers are those of the group level
    (:func:`brainscale.workflows.group.classify.build_model`):
    class-balanced weights, default regularisation.
    """
    from brainscale.workflows.group.classify import build_model

    if name not in MODELS:
        raise ValueError(f"unknown decoding model {name!r}; choose from {list(MODELS)}")
    model, _ = build_model(name, "classification", seed=seed)
    if name == "linsvm":  # liblinear's dual solver: 10x faster on <= n_train columns
        model.set_params(dual=True, tol=1e-3)
    if name in LINEAR_MODELS:
        return make_pipeline(StandardScaler(), RowSpaceProjection(), model)
    model.set_params(n_estimators=FOREST_TREES)
    return make_pipeline(StandardScaler(), model)


def cross_validated_predictions(values: np.ndarray, labels: np.ndarray, folds, estimator
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Fit on every fold's training rows and predict its test rows.

    Returns
    -------
    numpy.ndarray, numpy.ndarray
        Indices of the tested rows and their predicted labels (fold order).
    """
    tested, predicted = [], []
    for train, test in folds:
        fitted = clone(estimator).fit(values[train], labels[train])
        tested.append(test)
        predicted.append(fitted.predict(values[test]))
    return np.concatenate(tested), np.concatenate(predicted)


def permute_blocks(labels: np.ndarray, blocks: np.ndarray, runs: np.ndarray, rng) -> np.ndarray:
    """Shuffle the labels of whole blocks within each run (every sample keeps its block's)."""
    permuted = labels.copy()
    for run in np.unique(runs):
        in_run = runs == run
        run_blocks = np.unique(blocks[in_run])
        block_label = {b: labels[in_run & (blocks == b)][0] for b in run_blocks}
        shuffled = rng.permutation([block_label[b] for b in run_blocks])
        for block, label in zip(run_blocks, shuffled, strict=True):
            permuted[in_run & (blocks == block)] = label
    return permuted


@dataclass
class DecodingResult:
    """Cross-validated decoding of one model."""

    model: str
    classes: list[str]
    balanced_accuracy: float
    chance: float
    p_value: float
    n_permutations: int
    fold_scores: list[float]
    confusion: np.ndarray
    predictions: pd.DataFrame
    weights: np.ndarray
    weight_kind: str

    def summary(self) -> dict:
        """One row of the decoding metrics table."""
        return {"model": self.model, "balanced_accuracy": self.balanced_accuracy,
                "chance": self.chance, "permutation_p": self.p_value,
                "n_permutations": self.n_permutations, "n_folds": len(self.fold_scores),
                "fold_balanced_accuracy": ",".join(f"{s:.4f}" for s in self.fold_scores),
                "n_samples": len(self.predictions), "n_classes": len(self.classes)}


def model_weights(fitted, classes: list[str]) -> tuple[np.ndarray, str]:
    """Weights (linear models, one row per class) or importances (one row) of a fit."""
    model = fitted[-1] if hasattr(fitted, "steps") else fitted
    if hasattr(model, "coef_"):
        coef = np.atleast_2d(model.coef_)
        projection = getattr(fitted, "named_steps", {}).get("rowspaceprojection")
        if projection is not None and projection.components_ is not None:
            coef = coef @ projection.components_
        if coef.shape[0] == 1 and len(classes) == 2:  # binary: +w for class 1, -w for class 0
            coef = np.vstack([-coef[0], coef[0]])
        return coef, "weight"
    if hasattr(model, "feature_importances_"):
        return np.atleast_2d(model.feature_importances_), "importance"
    return np.zeros((1, 0)), "none"


def evaluate_decoder(patterns: Patterns, estimator, folds, *, model: str = "",
                     n_permutations: int = 100, seed: int = 0) -> DecodingResult:
    """Cross-validate a classifier, test it by block permutation, refit it on every sample.

    Parameters
    ----------
    patterns : Patterns
        Samples, labels, times, runs and blocks.
    estimator : sklearn classifier
        Unfitted (cloned for every fold).
    folds : list of (train, test)
        From :func:`time_respecting_folds`.
    model : str
        Name recorded in the result.
    n_permutations : int
        Block-label permutations of the whole cross-validation (0: no p-value).
    seed : int
        Seed of the permutations.

    Returns
    -------
    DecodingResult
        Balanced accuracy of the pooled test predictions, its permutation p-value
        ``(1 + #{null >= observed}) / (1 + n_permutations)``, fold scores, confusion
        matrix (rows true, columns predicted), predictions and the refitted model's weights.
    """
    values, labels = patterns.values, patterns.labels
    classes = sorted(np.unique(labels).tolist())
    tested, predicted = cross_validated_predictions(values, labels, folds, estimator)
    score = balanced_accuracy_score(labels[tested], predicted)
    fold_scores, start = [], 0
    for _, test in folds:
        stop = start + len(test)
        fold_scores.append(float(balanced_accuracy_score(labels[test], predicted[start:stop])))
        start = stop
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(n_permutations):
        shuffled = permute_blocks(labels, patterns.blocks, patterns.runs, rng)
        idx, pred = cross_validated_predictions(values, shuffled, folds, estimator)
        null.append(balanced_accuracy_score(shuffled[idx], pred))
    p_value = (1 + np.sum(np.asarray(null) >= score - 1e-12)) / (1 + n_permutations) \
        if n_permutations else np.nan
    weights, kind = model_weights(clone(estimator).fit(values, labels), classes)
    predictions = pd.DataFrame({"run": patterns.runs[tested], "onset": patterns.times[tested],
                                "trial_type": labels[tested], "predicted": predicted})
    return DecodingResult(model, classes, float(score), 1.0 / len(classes), float(p_value),
                          n_permutations, fold_scores,
                          confusion_matrix(labels[tested], predicted, labels=classes),
                          predictions.sort_values(["run", "onset"], ignore_index=True),
                          weights, kind)


def confusion_frame(result: DecodingResult) -> pd.DataFrame:
    """Return the confusion matrix as a table: ``trial_type`` then one column per prediction."""
    frame = pd.DataFrame(result.confusion, columns=result.classes)
    frame.insert(0, "trial_type", result.classes)
    return frame


def weight_frame(result: DecodingResult, feature_names: list[str]) -> pd.DataFrame:
    """Return the weights per feature: ``feature`` then one column per class (or ``importance``)."""
    per_class = result.weights.shape[0] == len(result.classes)
    rows = result.classes if per_class else [result.weight_kind]
    frame = pd.DataFrame(result.weights.T, columns=rows)
    frame.insert(0, "feature", feature_names)
    return frame
