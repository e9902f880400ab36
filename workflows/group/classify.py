"""Leakage-free prediction of a phenotype from group feature tables.

Everything that learns from data is fitted inside the training rows of each fold:
ComBat harmonization (:class:`FoldComBat`), the univariate screening that linear
models use on wide tables (e.g. 79,800 connectome edges), feature scaling and the
model, whose hyperparameters are chosen by an inner cross-validation (nested CV,
:class:`~workflows.group.classify_search.NestedGridSearch`). When sites
exist the outer loop leaves one site out, so that a model is always scored on a
site it never saw. The permutation test repeats the whole nested procedure on
labels shuffled within sites, so that a label that is unbalanced across sites
cannot make a null model look significant.

Examples
--------
>>> result = evaluate_model(features, participants["diagnosis"], covars=participants,
...                         model="logreg", site_col="site", covariates=["age", "sex"])
>>> result.metrics
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    balanced_accuracy_score,
    mean_absolute_error,
)
from sklearn.model_selection import KFold, LeaveOneGroupOut, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC, LinearSVR

from brainscale.errors import InputDataError
from workflows.group.classify_combat import FoldComBat, float_values
from workflows.group.classify_metrics import (
    bootstrap_ci,
    classification_metrics,
    permutation_p_value,
    regression_metrics,
)
from workflows.group.classify_search import NestedGridSearch, UnivariateScreen
from workflows.group.models import (
    BrainNetCNNClassifier,
    BrainNetCNNRegressor,
    TorchMLPClassifier,
    TorchMLPRegressor,
)

CLASSIFIERS = ("logreg", "linsvm", "rf", "mlp", "brainnetcnn")
REGRESSORS = ("ridge", "linsvr", "rf", "mlp", "brainnetcnn")
#: Models preceded by univariate screening when there are more than ``max_features``.
LINEAR_MODELS = ("logreg", "linsvm", "ridge", "linsvr")
#: Default number of features a linear model keeps after screening (see
#: :class:`~workflows.group.classify_search.UnivariateScreen`).
MAX_FEATURES = 5000


def build_model(name: str, task: str, *, seed: int = 0, device: str = "auto"):
    """Return an unfitted model and its hyperparameter grid.

    Classifiers weight classes by their inverse frequency, so that a label that is
    unbalanced (overall or across sites) does not push predictions towards the
    training majority, which biases leave-site-out scores below chance.

    Parameters
    ----------
    name : str
        One of :data:`CLASSIFIERS` (classification) or :data:`REGRESSORS` (regression).
    task : {"classification", "regression"}
        What is predicted.
    seed : int
        Random state of the model.
    device : str
        Torch device for ``mlp`` and ``brainnetcnn``.

    Returns
    -------
    estimator, dict
        The model and the grid searched by the inner cross-validation.
    """
    torch_args = {"seed": seed, "device": device, "epochs": 60}
    catalogue = {
        "classification": {
            "logreg": (
                LogisticRegression(max_iter=5000, class_weight="balanced"),
                {"C": [0.01, 0.1, 1.0]},
            ),
            "linsvm": (
                LinearSVC(max_iter=20000, class_weight="balanced"),
                {"C": [0.001, 0.01, 0.1]},
            ),
            "rf": (
                RandomForestClassifier(
                    n_estimators=200, class_weight="balanced", random_state=seed
                ),
                {"max_depth": [4, None]},
            ),
            "mlp": (TorchMLPClassifier(**torch_args), {"weight_decay": [1e-3, 1e-1]}),
            "brainnetcnn": (BrainNetCNNClassifier(**torch_args), {"weight_decay": [1e-3, 1e-1]}),
        },
        "regression": {
            "ridge": (Ridge(), {"alpha": [1.0, 10.0, 100.0]}),
            "linsvr": (LinearSVR(max_iter=20000, random_state=seed), {"C": [0.01, 0.1, 1.0]}),
            "rf": (
                RandomForestRegressor(n_estimators=200, random_state=seed),
                {"max_depth": [4, None]},
            ),
            "mlp": (TorchMLPRegressor(**torch_args), {"weight_decay": [1e-3, 1e-1]}),
            "brainnetcnn": (BrainNetCNNRegressor(**torch_args), {"weight_decay": [1e-3, 1e-1]}),
        },
    }
    if task not in catalogue:
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    if name not in catalogue[task]:
        raise ValueError(f"unknown {task} model {name!r}; choose from {sorted(catalogue[task])}")
    estimator, grid = catalogue[task][name]
    return estimator, grid


def infer_task(target: pd.Series) -> str:
    """Return ``"regression"`` for a numeric column with over 10 values, else classification."""
    values = target.dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "regression" if numeric and values.nunique() > 10 else "classification"


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


def make_pipeline(
    estimator, *, harmonizer: FoldComBat | None, screen: UnivariateScreen | None = None
) -> Pipeline:
    """Chain (ComBat ->) (univariate screening ->) standard scaling -> model."""
    steps = [("combat", harmonizer)] if harmonizer is not None else []
    steps += [("screen", screen)] if screen is not None else []
    steps += [("scale", StandardScaler(copy=screen is None)), ("model", estimator)]
    return Pipeline(steps)


def site_predictability(
    features: pd.DataFrame,
    covars: pd.DataFrame,
    *,
    site_col: str,
    covariates: list[str] = (),
    harmonize: bool = True,
    seed: int = 0,
) -> float:
    """Return how well the site can be predicted from features (balanced accuracy, 5-fold).

    A diagnostic of harmonization: with ``harmonize`` ComBat is fitted on the training
    rows of each fold (sites known, as when harmonizing a cohort), then a logistic
    regression predicts the site of the test rows. Chance is ``1 / n_sites``.
    """
    sites = covars.loc[features.index, site_col].astype(str).to_numpy()
    numeric = [c for c in covariates if pd.api.types.is_numeric_dtype(covars[c])]
    harmonizer = (
        FoldComBat(
            covars.loc[features.index],
            batch_col=site_col,
            categorical_cols=tuple(c for c in covariates if c not in numeric),
            continuous_cols=tuple(numeric),
        )
        if harmonize
        else None
    )
    pipeline = make_pipeline(LogisticRegression(C=1.0, max_iter=5000), harmonizer=harmonizer)
    splits = StratifiedKFold(5, shuffle=True, random_state=seed).split(sites, sites)
    predicted = np.empty(len(sites), dtype=object)
    for train, test in splits:
        fitted = clone(pipeline).fit(features.iloc[train], sites[train])
        predicted[test] = fitted.predict(features.iloc[test])
    return float(balanced_accuracy_score(sites, predicted.astype(str)))


def _outer_splits(y: np.ndarray, groups: np.ndarray | None, task: str, seed: int):
    if groups is not None and len(np.unique(groups)) >= 3:
        return "leave-one-site-out", list(LeaveOneGroupOut().split(y, y, groups))
    if task == "classification":
        n_splits = int(min(5, np.bincount(pd.factorize(y)[0]).min()))
        if n_splits < 2:
            raise InputDataError("each class needs at least 2 participants for cross-validation")
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    else:
        splitter = KFold(5, shuffle=True, random_state=seed)
    return f"{splitter.get_n_splits()}-fold", list(splitter.split(y, y))


def _inner_search(pipeline: Pipeline, grid: dict, task: str, seed: int) -> NestedGridSearch:
    inner = (
        StratifiedKFold(3, shuffle=True, random_state=seed)
        if task == "classification"
        else KFold(3, shuffle=True, random_state=seed)
    )
    scoring = "balanced_accuracy" if task == "classification" else "neg_mean_absolute_error"
    return NestedGridSearch(pipeline, grid, cv=inner, scoring=scoring)


def _decision_scores(model, X) -> np.ndarray | None:
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        return proba[:, 1] if proba.shape[1] == 2 else proba
    if hasattr(model, "decision_function"):
        return model.decision_function(X)
    return None


def _nested_predictions(search, X, y, splits, task):
    y_pred = np.empty(len(y), dtype=object if task == "classification" else float)
    scores, folds = None, np.empty(len(y), dtype=int)
    for fold, (train, test) in enumerate(splits):
        fitted = clone(search).fit(X.iloc[train], y[train])
        y_pred[test] = fitted.predict(X.iloc[test])
        folds[test] = fold
        if task == "classification":
            fold_scores = _decision_scores(fitted, X.iloc[test])
            if fold_scores is not None:
                if scores is None:
                    scores = np.zeros((len(y), *fold_scores.shape[1:]))
                scores[test] = fold_scores
    if task == "classification":
        y_pred = y_pred.astype(y.dtype)
    return y_pred, scores, folds


def _primary_score(task, y, y_pred) -> float:
    if task == "classification":
        return balanced_accuracy_score(y, y_pred)
    return -mean_absolute_error(y, y_pred)


def _permute_within(y: np.ndarray, groups: np.ndarray | None, rng) -> np.ndarray:
    permuted = y.copy()
    if groups is None:
        return rng.permutation(y)
    for group in np.unique(groups):
        index = np.flatnonzero(groups == group)
        permuted[index] = y[rng.permutation(index)]
    return permuted


def _top_features(final_model: Pipeline, names: list[str]) -> pd.DataFrame:
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


def evaluate_model(
    features: pd.DataFrame,
    target: pd.Series,
    *,
    covars: pd.DataFrame | None = None,
    model: str = "logreg",
    task: str | None = None,
    site_col: str | None = None,
    covariates: list[str] = (),
    harmonize: bool = True,
    leave_site_out: bool = True,
    seed: int = 0,
    n_permutations: int = 0,
    n_bootstrap: int = 1000,
    device: str = "auto",
    param_grid: dict | None = None,
    max_features: int | None = MAX_FEATURES,
) -> ModelEvaluation:
    """Score a model that predicts ``target`` from ``features`` with nested cross-validation.

    Parameters
    ----------
    features : pandas.DataFrame
        Participants x features, indexed by a participant key shared with ``target`` and
        ``covars``.
    target : pandas.Series
        What to predict, on the same index; rows where it is missing are dropped.
    covars : pandas.DataFrame, optional
        Site and covariate columns on the same index.
    model : str
        A name from :data:`CLASSIFIERS` or :data:`REGRESSORS`.
    task : {"classification", "regression"}, optional
        Inferred from ``target`` by :func:`infer_task` when omitted.
    site_col : str, optional
        Column of ``covars`` with the site: ComBat batches, within-site permutations and,
        with ``leave_site_out``, the outer CV groups.
    covariates : list of str
        Columns of ``covars`` protected by ComBat (numeric ones continuous, others
        categorical). The target is never used as a ComBat covariate.
    harmonize : bool
        Fit ComBat inside each training fold (needs ``site_col``).
    leave_site_out : bool
        Outer CV leaves one site out (with 3 or more sites); ``False``: stratified K-fold.
    seed : int
        Seed of the CV splits, the models, the bootstrap and the permutations.
    n_permutations : int
        Label permutations of the whole nested CV for the p-value (0: no test).
    n_bootstrap : int
        Bootstrap resamples of the out-of-fold predictions for the confidence intervals.
    device : str
        Torch device for the torch models.
    param_grid : dict, optional
        Hyperparameter grid of the model (default: :func:`build_model`'s). A grid with
        a single candidate skips the inner cross-validation (nothing to choose).
    max_features : int or None
        Linear models (:data:`LINEAR_MODELS`) on more features than this keep the
        ``max_features`` with the largest univariate F statistic, chosen on the
        training rows of each fold (:class:`~workflows.group.classify_search.UnivariateScreen`);
        ``None`` keeps every feature.

    Returns
    -------
    ModelEvaluation
        Metrics with confidence intervals, permutation p-value, predictions, confusion
        matrix, ROC curve, top features and the final refitted pipeline.
    """
    notes: list[str] = []
    keep = target.notna()
    if covars is not None:
        needed = [c for c in [site_col, *covariates] if c]
        absent = [c for c in needed if c not in covars.columns]
        if absent:
            raise InputDataError(f"participants table has no column(s) {absent}")
        keep &= covars.loc[target.index, needed].notna().all(axis=1)
    if (~keep).any():
        notes.append(
            f"{int((~keep).sum())} participant(s) dropped for a missing target or covariate"
        )
    if keep.all() and features.index.equals(target.index):
        X = features  # every row used: no copy of a table that may hold gigabytes
    else:
        X = features.loc[keep[keep].index]
    if not np.isfinite(float_values(X)).all():
        raise InputDataError("feature table has missing values; impute or drop them first")
    y = target.loc[X.index].to_numpy()
    task = task or infer_task(target)
    groups = covars.loc[X.index, site_col].to_numpy() if site_col and covars is not None else None

    protected = [c for c in covariates if c != target.name]
    if len(protected) < len(covariates):
        notes.append(f"target {target.name!r} removed from the ComBat covariates (it would leak)")
    harmonizer = None
    if harmonize and groups is not None:
        numeric = [c for c in protected if pd.api.types.is_numeric_dtype(covars[c])]
        harmonizer = FoldComBat(
            covars.loc[X.index],
            batch_col=site_col,
            categorical_cols=tuple(c for c in protected if c not in numeric),
            continuous_cols=tuple(numeric),
        )
    estimator, grid = build_model(model, task, seed=seed, device=device)
    grid = grid if param_grid is None else param_grid
    screen = None
    if model in LINEAR_MODELS and max_features is not None and X.shape[1] > max_features:
        screen = UnivariateScreen(max_features, task=task)
        notes.append(
            f"{max_features} of {X.shape[1]} features kept by univariate F screening "
            "inside each training fold"
        )
    pipeline = make_pipeline(estimator, harmonizer=harmonizer, screen=screen)
    search = _inner_search(pipeline, grid, task, seed)
    cv_name, splits = _outer_splits(y, groups if leave_site_out else None, task, seed)

    y_pred, scores, folds = _nested_predictions(search, X, y, splits, task)
    rng = np.random.default_rng(seed)
    if task == "classification":
        metrics, confusion, roc = classification_metrics(y, y_pred, scores, n_bootstrap, rng)
    else:
        metrics, confusion, roc = regression_metrics(y, y_pred, n_bootstrap, rng), None, None

    observed = _primary_score(task, y, y_pred)
    null_scores = np.array(
        [
            _primary_score(
                task, permuted, _nested_predictions(search, X, permuted, splits, task)[0]
            )
            for permuted in (_permute_within(y, groups, rng) for _ in range(n_permutations))
        ]
    )
    p_value = permutation_p_value(observed, null_scores)

    final = clone(search).fit(X, y).best_estimator_
    predictions = pd.DataFrame({"fold": folds, "y_true": y, "y_pred": y_pred}, index=X.index)
    if scores is not None and scores.ndim == 1:
        predictions["score"] = scores
    return ModelEvaluation(
        model=model,
        task=task,
        cv=cv_name,
        metrics=metrics,
        p_value=p_value,
        null_scores=null_scores,
        predictions=predictions,
        confusion=confusion,
        roc=roc,
        top_features=_top_features(final, list(X.columns)),
        final_model=final,
        notes=notes,
    )


__all__ = [
    "CLASSIFIERS",
    "LINEAR_MODELS",
    "MAX_FEATURES",
    "REGRESSORS",
    "FoldComBat",
    "ModelEvaluation",
    "NestedGridSearch",
    "UnivariateScreen",
    "bootstrap_ci",
    "build_model",
    "evaluate_model",
    "infer_task",
    "make_pipeline",
    "permutation_p_value",
    "site_predictability",
]
