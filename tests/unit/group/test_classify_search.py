"""Screening and inner search: equal to scikit-learn's references, and leakage-free."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_selection import f_classif, f_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from brainscale.workflows.group.classify import evaluate_model
from brainscale.workflows.group.classify_search import (
    NestedGridSearch,
    UnivariateScreen,
    f_statistics,
)


def wide_cohort(n=90, p=400, n_effect=4, d=1.0, seed=0):
    """Features with a class effect on the first ``n_effect`` columns, plus an offset
    (so that a naive float32 sum of squares would lose precision)."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1, 2], n // 3)[:n]
    X = rng.normal(size=(n, p)) + 1000.0
    X[:, :n_effect] += d * (y[:, None] == 1)
    return X, y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_f_statistics_equal_scikit_learn_f_classif(n_classes):
    X, y = wide_cohort()
    keep = y < n_classes
    X, y = X[keep], y[keep]
    # F is shift-invariant; scikit-learn's sums of squares lose digits to the 1000 offset,
    # so its reference is computed on centred data
    expected, _ = f_classif(X - X.mean(axis=0), y)
    np.testing.assert_allclose(f_statistics(X, y), expected, rtol=1e-9)
    # float32 input is accumulated in float64 chunks: only the input rounding remains
    single = X.astype(np.float32)
    reference = f_classif(single - single.astype(float).mean(axis=0), y)[0]
    np.testing.assert_allclose(f_statistics(single, y), reference, rtol=1e-6)


def test_f_statistics_equal_scikit_learn_f_regression():
    X, _ = wide_cohort()
    target = X[:, 0] - 1000 + np.random.default_rng(1).normal(size=len(X))
    expected, _ = f_regression(X - X.mean(axis=0), target)
    np.testing.assert_allclose(f_statistics(X, target, task="regression"), expected, rtol=1e-9)


def test_screen_keeps_the_informative_features_and_nothing_when_constant():
    X, y = wide_cohort(n=150, d=1.5)
    X[:, 10] = 3.0  # constant: NaN statistic, never kept before a real feature
    screen = UnivariateScreen(k=4).fit(X, y)
    np.testing.assert_array_equal(screen.get_support(indices=True), [0, 1, 2, 3])
    assert screen.get_support().sum() == 4
    assert np.isnan(screen.scores_[10])
    np.testing.assert_array_equal(screen.transform(X), X[:, :4])
    assert UnivariateScreen(k=10_000).fit(X, y).transform(X).shape == X.shape


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_nested_grid_search_equals_grid_search_cv(task):
    X, y = wide_cohort(n=120, p=60, d=0.6, seed=3)
    if task == "classification":
        model, grid, scoring = (
            LogisticRegression(max_iter=2000),
            {"C": [0.001, 0.1, 10.0]},
            "balanced_accuracy",
        )
        cv = StratifiedKFold(3, shuffle=True, random_state=0)
    else:
        y = X[:, :3].sum(axis=1) + np.random.default_rng(0).normal(size=len(X))
        model, grid, scoring = Ridge(), {"alpha": [0.1, 100.0, 1e5]}, "neg_mean_absolute_error"
        cv = KFold(3, shuffle=True, random_state=0)
    pipeline = Pipeline(
        [
            ("screen", UnivariateScreen(k=20, task=task)),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )
    ours = NestedGridSearch(pipeline, grid, cv=cv, scoring=scoring).fit(X, y)
    reference = GridSearchCV(
        pipeline, {f"model__{k}": v for k, v in grid.items()}, cv=cv, scoring=scoring
    ).fit(X, y)
    assert {f"model__{k}": v for k, v in ours.best_params_.items()} == reference.best_params_
    np.testing.assert_allclose(
        ours.cv_scores_.mean(axis=1), reference.cv_results_["mean_test_score"], rtol=1e-10
    )
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    if task == "classification":
        np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X))
    else:
        assert not hasattr(ours, "predict_proba")


def test_single_candidate_skips_the_inner_loop():
    X, y = wide_cohort(n=60, p=30, seed=4)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=0.5))])
    search = NestedGridSearch(pipeline, {"C": [0.5]}, cv=StratifiedKFold(3), scoring="accuracy")
    search.fit(X, y)
    assert search.cv_scores_.size == 0
    np.testing.assert_allclose(search.decision_function(X), pipeline.fit(X, y).decision_function(X))


def noise_cohort(n_per_site=40, n_sites=3, n_features=1500, seed=1):
    """Pure-noise features with site shifts; the label's prevalence differs by site."""
    rng = np.random.default_rng(seed)
    sites = np.repeat([f"s{i}" for i in range(n_sites)], n_per_site)
    prevalence = np.repeat(np.linspace(0.2, 0.8, n_sites), n_per_site)
    diagnosis = (rng.random(sites.size) < prevalence).astype(int)
    shift = rng.normal(0, 1, (n_sites, n_features))[pd.factorize(sites)[0]]
    index = pd.Index([f"sub-{i:03d}" for i in range(sites.size)])
    features = pd.DataFrame(
        rng.normal(size=(sites.size, n_features)) + shift,
        index=index,
        columns=[f"e{j}" for j in range(n_features)],
    )
    covars = pd.DataFrame({"site": sites, "diagnosis": diagnosis}, index=index)
    return features, covars


def test_screening_inside_folds_gives_chance_on_noise_and_outside_would_not():
    features, covars = noise_cohort(seed=2)
    result = evaluate_model(
        features,
        covars["diagnosis"],
        covars=covars,
        model="logreg",
        site_col="site",
        param_grid={"C": [0.1]},
        max_features=20,
        n_permutations=19,
        n_bootstrap=200,
    )
    assert any("screening" in note for note in result.notes)
    balanced = result.metrics.set_index("metric").loc["balanced_accuracy", "value"]
    assert 0.35 < balanced < 0.65
    assert result.p_value > 0.05
    assert (result.top_features["importance"] > 0).sum() == 20
    # positive control: the same screening fitted on all rows (the leak) looks predictive
    y = covars["diagnosis"].to_numpy()
    leaked = UnivariateScreen(k=20).fit(features, y).transform(features)
    predicted = cross_val_predict(
        Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=0.1))]),
        leaked,
        y,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
    )
    leaked_accuracy = np.mean([np.mean(predicted[y == c] == c) for c in (0, 1)])
    assert leaked_accuracy > balanced + 0.1


def test_screened_linear_model_finds_the_real_effect():
    rng = np.random.default_rng(5)
    features, covars = noise_cohort(n_features=1000, seed=5)
    covars["diagnosis"] = rng.integers(0, 2, len(covars))
    effect = [f"e{j}" for j in range(5)]
    features[effect] += 1.2 * covars[["diagnosis"]].to_numpy()
    result = evaluate_model(
        features,
        covars["diagnosis"],
        covars=covars,
        model="logreg",
        site_col="site",
        max_features=50,
        n_bootstrap=100,
    )
    assert result.metrics.set_index("metric").loc["balanced_accuracy", "value"] > 0.75
    assert set(result.top_features["feature"].head(5)) == set(effect)
