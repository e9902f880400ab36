"""Leakage-free prediction on a synthetic cohort with known site and biological effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from brainscale.errors import InputDataError
from brainscale.workflows.group.classify import (
    FoldComBat,
    bootstrap_ci,
    build_model,
    evaluate_model,
    infer_task,
    permutation_p_value,
    site_predictability,
)

SITE_COLS = {"site_col": "site", "covariates": ["age"]}
MODEL_ARGS = {**SITE_COLS, "param_grid": {"C": [0.1]}}  # the default grid: other tests


def make_cohort(
    *, n_per_site=60, n_sites=3, n_features=30, n_effect=5, d=0.8, unbalanced=False, seed=0
):
    """Clean features = biology (diagnosis shift ``d`` on the first features, age slope) plus
    unit noise; the observed features pass the clean ones through each site's scanner: a
    per-site location shift and a per-site scaling of the deviations from the mean."""
    rng = np.random.default_rng(seed)
    sites = np.repeat([f"s{i}" for i in range(n_sites)], n_per_site)
    n = len(sites)
    if unbalanced:
        prevalence = np.repeat(np.linspace(0.15, 0.85, n_sites), n_per_site)
        diagnosis = (rng.random(n) < prevalence).astype(int)
    else:
        diagnosis = np.tile([0, 1], n // 2)
    age = rng.uniform(20, 80, n)
    clean = rng.normal(size=(n, n_features)) + 0.03 * (age[:, None] - 50)
    clean[:, :n_effect] += d * diagnosis[:, None]
    site_index = pd.factorize(sites)[0]
    location = rng.normal(0, 1.5, (n_sites, n_features))
    scale = rng.uniform(0.5, 2.0, (n_sites, n_features))
    centred = clean - clean.mean(axis=0)
    observed = clean.mean(axis=0) + location[site_index] + centred * scale[site_index]
    index = pd.Index([f"sub-{i:03d}" for i in range(n)])
    features = pd.DataFrame(observed, index=index, columns=[f"f{j}" for j in range(n_features)])
    covars = pd.DataFrame({"site": sites, "diagnosis": diagnosis, "age": age}, index=index)
    return features, covars, pd.DataFrame(clean, index=index, columns=features.columns)


def cohens_d(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    a, b = values[groups == 1], values[groups == 0]
    pooled = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / 2)
    return (a.mean(axis=0) - b.mean(axis=0)) / pooled


def out_of_fold_harmonized(features, covars, seed=0):
    harmonized = np.empty(features.shape)
    splits = StratifiedKFold(5, shuffle=True, random_state=seed).split(features, covars["site"])
    for train, test in splits:
        combat = FoldComBat(batch_col="site", continuous_cols=("age",))
        combat.fit(features.iloc[train], covars=covars)
        harmonized[test] = combat.transform(features.iloc[test], covars=covars)
    return harmonized


def test_harmonization_inside_folds_brings_site_prediction_to_chance():
    features, covars, _ = make_cohort()
    before = site_predictability(features, covars, harmonize=False, **SITE_COLS)
    after = site_predictability(features, covars, harmonize=True, **SITE_COLS)
    assert before > 0.95
    assert after < 1 / 3 + 0.12


def test_harmonization_inside_folds_keeps_the_biological_effect_size():
    features, covars, clean = make_cohort(n_per_site=100)
    diagnosis = covars["diagnosis"].to_numpy()
    truth = cohens_d(clean.to_numpy()[:, :5], diagnosis)
    raw = cohens_d(features.to_numpy()[:, :5], diagnosis)
    harmonized = cohens_d(out_of_fold_harmonized(features, covars)[:, :5], diagnosis)
    # fold-wise ComBat (diagnosis never used) recovers the effect sizes of the site-free data
    np.testing.assert_allclose(harmonized, truth, atol=0.1)
    assert np.abs(harmonized - truth).mean() < 0.5 * np.abs(raw - truth).mean()


def test_unseen_site_is_mapped_where_the_training_sites_are():
    features, covars, clean = make_cohort(n_per_site=80)
    train = covars["site"] != "s2"
    # no protected covariate: the scanner model of make_cohort is then exactly ComBat's
    combat = FoldComBat(batch_col="site").fit(features[train], covars=covars)
    harmonized_train = combat.transform(features[train], covars=covars)
    aligned = combat.transform(features[~train], covars=covars)
    # the harmonized training data are an affine image of the clean data, feature by feature;
    # the held-out site must land on the same affine image of its own clean data, up to the
    # sampling error of its location and scale (80 rows), far closer than without alignment
    errors, raw_errors = [], []
    for j in range(features.shape[1]):
        slope, intercept = np.polyfit(clean[train].iloc[:, j], harmonized_train[:, j], 1)
        expected = slope * clean[~train].iloc[:, j] + intercept
        spread = harmonized_train[:, j].std()
        errors.append(np.sqrt(np.mean((aligned[:, j] - expected) ** 2)) / spread)
        raw_errors.append(np.sqrt(np.mean((features[~train].iloc[:, j] - expected) ** 2)) / spread)
    assert max(errors) < 0.35 and np.mean(errors) < 0.2
    assert np.mean(raw_errors) > 3 * np.mean(errors)


def test_fold_combat_covariates_by_label_by_position_or_as_columns():
    features, covars, _ = make_cohort(n_per_site=20)
    train = (covars["site"] != "s2").to_numpy()
    by_label = FoldComBat(batch_col="site").fit(features[train], covars=covars)
    expected = by_label.transform(features[~train], covars=covars)
    # the same rows given by position (arrays) and as columns of X give the same result
    by_position = FoldComBat(batch_col="site").fit(
        features[train].to_numpy(), covars=covars[train].reset_index(drop=True)
    )
    np.testing.assert_array_equal(
        by_position.transform(features[~train].to_numpy(), covars=covars[~train]), expected
    )
    with_columns = features.join(covars[["site"]])
    as_columns = FoldComBat(batch_col="site").fit(with_columns[train])
    np.testing.assert_array_equal(as_columns.transform(with_columns[~train]), expected)
    with pytest.raises(InputDataError, match="no covariate column"):
        by_label.transform(features)
    with pytest.raises(InputDataError, match="fewer than 2 rows"):
        by_label.transform(features[~train].iloc[:1], covars=covars)


def test_real_effect_is_found_with_leave_site_out_and_significant():
    features, covars, _ = make_cohort(n_per_site=40, d=1.0)
    result = evaluate_model(
        features,
        covars["diagnosis"],
        covars=covars,
        model="logreg",
        **MODEL_ARGS,
        n_permutations=19,
        n_bootstrap=300,
    )
    metrics = result.metrics.set_index("metric")
    assert result.cv == "leave-one-site-out"
    assert metrics.loc["balanced_accuracy", "value"] > 0.7
    assert metrics.loc["roc_auc", "ci_low"] > 0.6
    assert result.p_value == pytest.approx(0.05)  # no permuted score reached the observed one
    assert set(result.top_features["feature"].head(5)) == {f"f{j}" for j in range(5)}
    assert result.confusion.to_numpy().sum() == len(features)
    assert result.roc["tpr"].iloc[-1] == 1.0


def test_noise_features_give_chance_and_no_significance_with_unbalanced_labels():
    features, covars, _ = make_cohort(n_per_site=40, n_effect=0, unbalanced=True, seed=1)
    # the label is strongly confounded with site, which the raw features encode
    assert covars.groupby("site")["diagnosis"].mean().agg(["min", "max"]).tolist()[1] > 0.7
    result = evaluate_model(
        features,
        covars["diagnosis"],
        covars=covars,
        model="logreg",
        **MODEL_ARGS,
        n_permutations=19,
        n_bootstrap=200,
    )
    balanced = result.metrics.set_index("metric").loc["balanced_accuracy"]
    assert 0.38 < balanced["value"] < 0.62
    assert balanced["ci_low"] < 0.5 < balanced["ci_high"]
    assert result.p_value > 0.05


def test_regression_of_age_reports_mae_and_r2():
    features, covars, _ = make_cohort(n_per_site=50)
    result = evaluate_model(
        features, covars["age"], covars=covars, model="ridge", site_col="site", n_bootstrap=200
    )
    assert result.task == "regression" and result.confusion is None
    metrics = result.metrics.set_index("metric")
    assert metrics.loc["r2", "value"] > 0.5
    assert (
        metrics.loc["mae", "ci_low"] < metrics.loc["mae", "value"] < metrics.loc["mae", "ci_high"]
    )
    assert metrics.loc["mae", "value"] < 0.5 * covars["age"].std()


def test_target_is_never_a_combat_covariate():
    features, covars, _ = make_cohort(n_per_site=20, n_features=6)
    result = evaluate_model(
        features,
        covars["diagnosis"],
        covars=covars,
        model="logreg",
        site_col="site",
        covariates=["age", "diagnosis"],
        n_bootstrap=10,
    )
    combat = result.final_model.named_steps["combat"]
    assert "diagnosis" not in (*combat.categorical_cols, *combat.continuous_cols)
    assert any("leak" in note for note in result.notes)


def test_bootstrap_interval_of_a_mean_matches_the_normal_theory():
    values = np.random.default_rng(0).normal(10, 2, 400)
    low, high = bootstrap_ci(lambda i: values[i].mean(), 400, 2000, np.random.default_rng(1))
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(400)
    assert low == pytest.approx(values.mean() - half_width, abs=0.03)
    assert high == pytest.approx(values.mean() + half_width, abs=0.03)


def test_permutation_p_value_counts_null_scores_at_least_as_good():
    assert permutation_p_value(0.8, np.array([0.5, 0.8, 0.9, 0.1])) == pytest.approx(3 / 5)
    assert np.isnan(permutation_p_value(0.8, np.array([])))


def test_task_inference_and_model_catalogue():
    assert infer_task(pd.Series(["a", "b", "a"])) == "classification"
    assert infer_task(pd.Series([0, 1, 1, 0])) == "classification"
    assert infer_task(pd.Series(np.linspace(20, 80, 50))) == "regression"
    with pytest.raises(ValueError, match="unknown classification model"):
        build_model("ridge", "classification")
