"""Leakage-free prediction of a phenotype from group feature tables.

Everything that learns from data is fitted inside the training rows of each fold:
ComBat harmonization (:class:`FoldComBat`), the univariate screening that linear
models use on wide tables (e.g. 79,800 connectome edges), feature scaling and the
model, whose hyperparameters are chosen by an inner cross-validation (nested CV,
:class:`~brainscale.workflows.group.classify_search.NestedGridSearch`). When sites
exist the outer loop leaves one site out, so that a model is always scored on a
site it never saw. The permutation test repeats the whole nested procedure on
labels shuffled within sites, so that a label that is unbalanced across sites
cannot make a null model look significant.

Runnable examples: :func:`evaluate_model`, :func:`site_predictability`,
:class:`~brainscale.workflows.group.classify_combat.FoldComBat`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    balanced_accuracy_score,
    mean_absolute_error,
)
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC, LinearSVR
from tqdm.auto import tqdm

from brainscale.errors import InputDataError
from brainscale.workflows.group.classify_combat import FoldComBat, float_values
from brainscale.workflows.group.classify_cv import (
    nested_predictions,
    outer_splits,
    permute_within,
    top_features,
)
from brainscale.workflows.group.classify_metrics import (
    ModelEvaluation,
    bootstrap_ci,
    classification_metrics,
    permutation_p_value,
    regression_metrics,
)
from brainscale.workflows.group.classify_permutation import permuted_predictions
from brainscale.workflows.group.classify_search import (
    ColumnScaler,
    InnerSplits,
    NestedGridSearch,
    UnivariateScreen,
)
from brainscale.workflows.group.covariates import split_covariate_types
from brainscale.workflows.group.models import (
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
#: :class:`~brainscale.workflows.group.classify_search.UnivariateScreen`).
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


def make_pipeline(
    estimator, *, harmonizer: FoldComBat | None, screen: UnivariateScreen | None = None
) -> Pipeline:
    """Chain (ComBat ->) (univariate screening ->) standard scaling -> model."""
    steps = [("combat", harmonizer)] if harmonizer is not None else []
    steps += [("screen", screen)] if screen is not None else []
    steps += [("scale", ColumnScaler()), ("model", estimator)]
    return Pipeline(steps)


def site_predictability(
    features: pd.DataFrame,
    covars: pd.DataFrame,
    *,
    site_col: str,
    covariates: list[str] = (),
    categorical: list[str] | None = None,
    continuous: list[str] | None = None,
    harmonize: bool = True,
    seed: int = 0,
    n_jobs: int = 1,
) -> float:
    """Return how well the site can be predicted from features (balanced accuracy, 5-fold).

    A diagnostic of harmonization: with ``harmonize`` ComBat is fitted on the training
    rows of each fold (sites known, as when harmonizing a cohort), then a logistic
    regression predicts the site of the test rows. Chance is ``1 / n_sites``.

    Parameters
    ----------
    features : pandas.DataFrame
        Participants x features.
    covars : pandas.DataFrame
        Site and covariate columns, indexed like ``features``.
    site_col : str
        Column of ``covars`` with the site.
    covariates, categorical, continuous : list of str
        Covariates protected by ComBat, typed as in
        :func:`~brainscale.workflows.group.covariates.split_covariate_types`.
    harmonize : bool
        Fit ComBat inside each training fold before predicting the site.
    seed : int
        Seed of the stratified folds.
    n_jobs : int
        Folds fitted in parallel.

    Returns
    -------
    float
        Balanced accuracy of the site prediction (chance: ``1 / n_sites``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> covars = pd.DataFrame({"site": np.repeat(["a", "b", "c"], 30)})
    >>> shift = np.repeat([[0.0], [1.5], [-1.5]], 30, axis=0)
    >>> features = pd.DataFrame(rng.normal(size=(90, 10)) + shift)
    >>> site_predictability(features, covars, site_col="site", harmonize=False) > 0.8
    True
    >>> site_predictability(features, covars, site_col="site") < 0.6
    True
    """
    sites = covars.loc[features.index, site_col].astype(str).to_numpy()
    cat, cont = split_covariate_types(
        covars, list(covariates), categorical=categorical, continuous=continuous
    )
    harmonizer = (
        FoldComBat(batch_col=site_col, categorical_cols=cat, continuous_cols=cont)
        if harmonize
        else None
    )
    pipeline = make_pipeline(LogisticRegression(C=1.0, max_iter=5000), harmonizer=harmonizer)
    search = NestedGridSearch(pipeline, {}, cv=InnerSplits(3), scoring="balanced_accuracy")
    splits = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(sites, sites))
    params = {"covars": covars.loc[features.index]} if harmonize else {}
    predicted, _, _ = nested_predictions(
        search, features, sites, splits, "classification", params=params, n_jobs=n_jobs
    )
    return float(balanced_accuracy_score(sites, predicted.astype(str)))


def _inner_search(pipeline: Pipeline, grid: dict, task: str, seed: int) -> NestedGridSearch:
    scoring = "balanced_accuracy" if task == "classification" else "neg_mean_absolute_error"
    inner = InnerSplits(3, task=task, seed=seed)
    return NestedGridSearch(pipeline, grid, cv=inner, scoring=scoring)


def _primary_score(task, y, y_pred) -> float:
    if task == "classification":
        return balanced_accuracy_score(y, y_pred)
    return -mean_absolute_error(y, y_pred)


def evaluate_model(
    features: pd.DataFrame,
    target: pd.Series,
    *,
    covars: pd.DataFrame | None = None,
    model: str = "logreg",
    task: str | None = None,
    site_col: str | None = None,
    covariates: list[str] = (),
    categorical: list[str] | None = None,
    continuous: list[str] | None = None,
    harmonize: bool = True,
    cv="auto",
    leave_site_out: bool | None = None,
    positive_label=None,
    seed: int = 0,
    n_permutations: int = 0,
    n_bootstrap: int = 1000,
    device: str = "auto",
    param_grid: dict | None = None,
    max_features: int | None = MAX_FEATURES,
    n_jobs: int = 1,
    progress: bool | None = None,
    permutation_method: str = "shared",
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
        Column of ``covars`` with the site: ComBat batches, within-site permutations,
        the groups of ``cv="leave-site-out"`` and of the inner leave-sites-out folds.
    covariates : list of str
        Columns of ``covars`` protected by ComBat. The target is never used as a ComBat
        covariate.
    categorical, continuous : list of str, optional
        Explicit covariate types (added to ``covariates``). Untyped covariates are
        continuous when numeric; an integer column with few levels then warns
        (:func:`~brainscale.workflows.group.covariates.split_covariate_types`).
    harmonize : bool
        Fit ComBat inside each training fold (needs ``site_col``).
    cv : "auto", "leave-site-out", int or splitter
        Outer cross-validation (:func:`~brainscale.workflows.group.classify_cv.outer_splits`):
        ``"auto"`` leaves one site out with 3 or more sites, else 5 stratified folds;
        an integer: that many stratified shuffled folds (e.g. a published 10-fold
        protocol); a scikit-learn splitter gets the sites as ``groups``.
    leave_site_out : bool, optional
        Former switch: ``False`` is ``cv=5``, ``True`` is ``cv="auto"``.
    positive_label : object, optional
        The positive class of a binary task (ROC curve, AUC, ``score`` column); by
        default the class that sorts last (recorded in ``notes``).
    seed : int
        Seed of the CV splits, the models, the bootstrap and the permutations.
    n_permutations : int
        Label permutations (within sites) of the whole nested CV for the p-value.
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
        training rows of each fold
        (:class:`~brainscale.workflows.group.classify_search.UnivariateScreen`);
        ``None`` keeps every feature.
    n_jobs : int
        Parallel workers (outer folds; -1: all cores).
    progress : bool or None
        Progress bar of the permutation test; ``None``: only on a terminal.
    permutation_method : {"shared", "loop"}
        ``"shared"`` (:func:`~brainscale.workflows.group.classify_permutation.permuted_predictions`)
        shares the label-free work across permutations; ``"loop"`` repeats the nested
        CV per permutation. Both give the same p-value.

    Returns
    -------
    ModelEvaluation
        Metrics with confidence intervals, permutation p-value, predictions, confusion
        matrix, ROC curve, top features and the final refitted pipeline (apply it with
        ``covars=`` under ``sklearn.config_context(enable_metadata_routing=True)``
        when it harmonizes).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> n = 90
    >>> covars = pd.DataFrame({"site": np.repeat(["a", "b", "c"], 30),
    ...                        "age": rng.uniform(20, 80, n),
    ...                        "dx": np.tile(["control", "patient"], 45)})
    >>> features = pd.DataFrame(rng.normal(size=(n, 20)))
    >>> features[0] += 1.5 * (covars["dx"] == "patient")
    >>> result = evaluate_model(features, covars["dx"], covars=covars, site_col="site",
    ...                         continuous=["age"], cv="leave-site-out",
    ...                         positive_label="patient", n_permutations=20, n_bootstrap=100)
    >>> result.cv, result.p_value < 0.1
    ('leave-one-site-out', True)
    """
    notes: list[str] = []
    if leave_site_out is not None:
        cv = "auto" if leave_site_out else 5
    if permutation_method not in ("shared", "loop"):
        raise ValueError("permutation_method must be 'shared' or 'loop'")
    extra = [*(categorical or ()), *(continuous or ())]
    covariates = list(dict.fromkeys([*covariates, *extra]))
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
    positive = None
    if task == "classification" and len(np.unique(y)) == 2:
        classes = list(np.unique(y))
        positive = classes[-1] if positive_label is None else positive_label
        if positive not in classes:
            raise InputDataError(f"positive_label {positive_label!r} is not a class of {classes}")
        notes.append(f"positive class: {positive!r}")

    protected = [c for c in covariates if c != target.name]
    if len(protected) < len(covariates):
        notes.append(f"target {target.name!r} removed from the ComBat covariates (it would leak)")
    harmonizer, params = None, {}
    if harmonize and groups is not None:
        cat, cont = split_covariate_types(
            covars, protected, categorical=categorical, continuous=continuous
        )
        harmonizer = FoldComBat(batch_col=site_col, categorical_cols=cat, continuous_cols=cont)
        params = {"covars": covars.loc[X.index, [site_col, *cat, *cont]]}
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
    cv_name, splits = outer_splits(cv, y, groups, task, seed)
    cv_args = {"groups": groups, "params": params}

    y_pred, scores, folds = nested_predictions(
        search, X, y, splits, task, positive=positive, n_jobs=n_jobs, **cv_args
    )
    rng = np.random.default_rng(seed)
    if task == "classification":
        metrics, confusion, roc = classification_metrics(
            y, y_pred, scores, n_bootstrap, rng, positive=positive
        )
    else:
        metrics, confusion, roc = regression_metrics(y, y_pred, n_bootstrap, rng), None, None

    observed = _primary_score(task, y, y_pred)
    permuted = np.array([permute_within(y, groups, rng) for _ in range(n_permutations)])
    null_scores = np.array([])
    if n_permutations and permutation_method == "shared":
        null_pred = permuted_predictions(
            search, X, permuted, splits, n_jobs=n_jobs, progress=progress, **cv_args
        )
        null_scores = np.array(
            [_primary_score(task, *pair) for pair in zip(permuted, null_pred, strict=True)]
        )
    elif n_permutations:
        null_scores = np.array(
            [
                _primary_score(
                    task, labels, nested_predictions(search, X, labels, splits, task, **cv_args)[0]
                )
                for labels in tqdm(permuted, disable=None if progress is None else not progress)
            ]
        )
    p_value = permutation_p_value(observed, null_scores)

    final = clone(search).fit(X, y, groups=groups, **params).best_estimator_
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
        top_features=top_features(final, list(X.columns)),
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
