"""ComBat harmonization: R reference outputs, neuroCombat, and a cohort with known effects."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.group import harmonize
from brainscale.workflows.group.harmonize import ComBat, UnseenBatchError

REFERENCE_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- helpers
def reference_inputs(combat_reference):
    """Scans x features table and covariates of ComBatHarmonization's norm_r.R."""
    data = pd.read_csv(combat_reference / "inputData" / "testdata.csv")
    features = data.T  # neuroCombat's matrices are features x scans
    covars = pd.DataFrame({"batch": [1] * 5 + [2] * 5, "pheno": [1, 0] * 5}, index=features.index)
    return features, covars


def reference_settings(file_name: str) -> dict:
    """ComBat arguments encoded in a reference output file name (see norm_r.R)."""
    tokens = file_name.removesuffix("_r.csv").split("_")
    return {
        "parametric": "parametric" in tokens,
        "eb": "noeb" not in tokens,
        "mean_only": "meanonly" in tokens or "meanonl" in tokens,
        "ref_batch": 1 if "batchref" in tokens else None,
        "continuous_cols": ["pheno"] if "adjusted" in tokens else [],
    }


class SyntheticCohort(NamedTuple):
    """Observed features with site effects, covariates, and the site-free truth."""

    observed: pd.DataFrame
    covars: pd.DataFrame
    clean: pd.DataFrame
    biological: pd.DataFrame
    age_slope: np.ndarray


def synthetic_cohort(n_per_site=(60, 80, 50), n_features=30, seed=0):
    """Participants with a known age effect, sex effect and site location/scale effects.

    Returns the observed features, the covariates, the site-free features (truth),
    their noise-free biological part and the true age slopes.
    """
    rng = np.random.default_rng(seed)
    sites = np.repeat(["siteA", "siteB", "siteC"], n_per_site)
    n = sites.size
    age = rng.uniform(20, 80, n)
    sex = rng.choice(["F", "M"], n)
    age_slope = rng.normal(0.05, 0.02, n_features)
    sex_effect = rng.normal(0.5, 0.1, n_features)
    baseline = rng.normal(10, 2, n_features)
    clean = (
        baseline
        + np.outer(age - 50, age_slope)
        + np.outer(sex == "M", sex_effect)
        + rng.normal(0, 1, (n, n_features))
    )
    site_shift = {"siteA": 0.0, "siteB": 2.0, "siteC": -1.5}
    site_scale = {"siteA": 1.0, "siteB": 1.8, "siteC": 0.6}
    shift = np.array([site_shift[s] for s in sites])[:, None] * rng.uniform(0.5, 1.5, n_features)
    scale = np.array([site_scale[s] for s in sites])[:, None]
    noise = clean - (baseline + np.outer(age - 50, age_slope) + np.outer(sex == "M", sex_effect))
    observed = clean + shift + (scale - 1.0) * noise
    index = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    columns = [f"region{j:02d}" for j in range(n_features)]
    covars = pd.DataFrame({"site": sites, "age": age, "sex": sex}, index=index)
    return SyntheticCohort(
        pd.DataFrame(observed, index=index, columns=columns),
        covars,
        pd.DataFrame(clean, index=index, columns=columns),
        pd.DataFrame(clean - noise, index=index, columns=columns),
        age_slope,
    )


def age_sex_slopes(features: pd.DataFrame, covars: pd.DataFrame) -> np.ndarray:
    """Least-squares age slope of every feature, adjusting for sex and site."""
    design = np.column_stack(
        [
            pd.get_dummies(covars["site"]).to_numpy(float),
            covars["age"].to_numpy(),
            (covars["sex"] == "M").to_numpy(float),
        ]
    )
    betas, *_ = np.linalg.lstsq(design, features.to_numpy(), rcond=None)
    return betas[-2]


# ------------------------------------------------------------- published references
@pytest.mark.reference
def test_reproduces_every_r_reference_output(combat_reference):
    features, covars = reference_inputs(combat_reference)
    files = sorted((combat_reference / "outputData").glob("testdata_combat_*_r.csv"))
    assert len(files) >= 32
    for path in files:
        settings = reference_settings(path.name)
        harmonized = ComBat("batch", **settings).fit_transform(features, covars)
        expected = pd.read_csv(path).to_numpy()
        np.testing.assert_allclose(
            harmonized.to_numpy().T, expected, rtol=0, atol=REFERENCE_TOLERANCE, err_msg=path.name
        )


@pytest.mark.reference
def test_reproduces_r_training_then_new_data_scenario(combat_reference):
    # training_test_scenario2: neuroCombat fitted on all 10 scans with the covariate,
    # then neuroCombatFromTraining applied to scans V1, V2, V6, V7. The R function
    # uses the *training average* of the covariate effect for the new scans, so giving
    # our transform the training mean as covariate reproduces it.
    features, covars = reference_inputs(combat_reference)
    expected = pd.read_csv(combat_reference / "outputData" / "training_test_scenario2_r.csv")
    model = ComBat("batch", continuous_cols=["pheno"]).fit(features, covars)
    new_covars = covars.loc[expected.columns].assign(pheno=covars["pheno"].mean())
    harmonized = model.transform(features.loc[expected.columns], new_covars)
    np.testing.assert_allclose(
        harmonized.to_numpy().T, expected.to_numpy(), rtol=0, atol=REFERENCE_TOLERANCE
    )


@pytest.mark.reference
@pytest.mark.parametrize(
    "settings",
    [{}, {"parametric": False}, {"eb": False}, {"mean_only": True}],
    ids=["parametric", "nonparametric", "noeb", "meanonly"],
)
def test_equals_neurocombat_python(combat_reference, settings):
    neurocombat = pytest.importorskip("neuroCombat")
    features, covars = reference_inputs(combat_reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a NumPy array, not a DataFrame: neuroCombat casts DataFrames to float32
        expected = neurocombat.neuroCombat(
            dat=features.to_numpy().T,
            covars=covars.reset_index(drop=True),
            batch_col="batch",
            continuous_cols=["pheno"],
            **settings,
        )["data"]
    ours = ComBat("batch", continuous_cols=["pheno"], **settings).fit_transform(features, covars)
    np.testing.assert_allclose(ours.to_numpy().T, expected, rtol=0, atol=1e-10)


# ------------------------------------------------------------- synthetic ground truth
@pytest.mark.parametrize(
    "settings",
    [{}, {"parametric": False}, {"eb": False}, {"ref_batch": "siteA"}],
    ids=["parametric", "nonparametric", "noeb", "refbatch"],
)
def test_removes_site_effects_and_keeps_biological_effects(settings):
    observed, covars, clean, biological, true_slope = synthetic_cohort()
    harmonized = ComBat(
        "site", categorical_cols=["sex"], continuous_cols=["age"], **settings
    ).fit_transform(observed, covars)
    residual = harmonized - clean
    by_site = residual.groupby(covars["site"])
    # site means of the harmonized-minus-true data agree across sites ...
    site_means = by_site.mean()
    assert (site_means.max() - site_means.min()).abs().max() < 0.6
    observed_means = (observed - clean).groupby(covars["site"]).mean()
    assert (observed_means.max() - observed_means.min()).abs().min() > 1.5
    # ... and so do the site standard deviations of the features
    spread = (harmonized - biological).groupby(covars["site"]).std()
    assert (spread.max() / spread.min()).max() < 1.4
    observed_spread = (observed - biological).groupby(covars["site"]).std()
    assert (observed_spread.max() / observed_spread.min()).min() > 2.4
    # the age effect survives harmonization (slopes close to the truth)
    slopes = age_sex_slopes(harmonized, covars)
    assert np.abs(slopes - true_slope).max() < 0.02
    assert np.corrcoef(slopes, true_slope)[0, 1] > 0.8


def test_reference_batch_is_left_unchanged():
    observed, covars, *_ = synthetic_cohort()
    harmonized = ComBat("site", continuous_cols=["age"], ref_batch="siteB").fit_transform(
        observed, covars
    )
    in_ref = covars["site"] == "siteB"
    pd.testing.assert_frame_equal(harmonized[in_ref], observed[in_ref])
    assert not np.allclose(harmonized[~in_ref], observed[~in_ref])


def test_transform_is_row_independent_and_equals_fit_transform():
    observed, covars, *_ = synthetic_cohort()
    model = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"])
    all_rows = model.fit_transform(observed, covars)
    subset = observed.iloc[::7]
    # new participants of known sites, columns in another order
    again = model.transform(subset[subset.columns[::-1]], covars)
    pd.testing.assert_frame_equal(again[subset.columns], all_rows.iloc[::7])


def test_block_processing_gives_the_same_result(monkeypatch):
    observed, covars, *_ = synthetic_cohort()
    whole = ComBat("site", continuous_cols=["age"]).fit_transform(observed, covars)
    monkeypatch.setattr(harmonize, "BLOCK_BYTES", 8 * len(observed) * 4)  # 4 columns
    blocked = ComBat("site", continuous_cols=["age"]).fit_transform(observed, covars)
    pd.testing.assert_frame_equal(blocked, whole, rtol=1e-12, atol=1e-12)


def test_float32_tables_stay_float32_and_match_float64():
    observed, covars, *_ = synthetic_cohort()
    model = ComBat("site", continuous_cols=["age"])
    single = model.fit_transform(observed.astype(np.float32), covars)
    double = model.fit_transform(observed, covars)
    assert (single.dtypes == np.float32).all()
    np.testing.assert_allclose(single.to_numpy(), double.to_numpy(), rtol=0, atol=1e-4)


def test_zero_variance_features_are_left_unchanged_with_a_warning():
    observed, covars, *_ = synthetic_cohort()
    with_constant = observed.assign(constant=7.25)
    # a feature fully explained by site: constant within each site
    with_constant["site_only"] = covars["site"].map({"siteA": 1.0, "siteB": 2.0, "siteC": 3.0})
    model = ComBat("site", continuous_cols=["age"])
    with pytest.warns(RuntimeWarning, match="zero residual variance"):
        harmonized = model.fit_transform(with_constant, covars)
    pd.testing.assert_series_equal(harmonized["constant"], with_constant["constant"])
    pd.testing.assert_series_equal(harmonized["site_only"], with_constant["site_only"])
    # the other features do not see the degenerate ones (priors exclude them)
    expected = ComBat("site", continuous_cols=["age"]).fit_transform(observed, covars)
    pd.testing.assert_frame_equal(harmonized[observed.columns], expected)


def test_large_batches_do_not_underflow_in_nonparametric_mode():
    # with 300-500 participants per site the normal likelihoods of int.eprior underflow
    # to 0/0 = NaN in neuroCombat; with this much data the empirical Bayes estimates
    # must instead approach the per-feature least-squares ones (eb=False)
    observed, covars, *_ = synthetic_cohort(n_per_site=(400, 300, 500), n_features=200)
    nonparametric = ComBat("site", continuous_cols=["age"], parametric=False).fit(observed, covars)
    least_squares = ComBat("site", continuous_cols=["age"], eb=False).fit(observed, covars)
    assert np.isfinite(nonparametric.gamma_star_).all()
    # the prior is the *other* features' estimates: the most extreme features are
    # pulled towards their nearest neighbours, the bulk must agree closely
    gamma_error = np.abs(nonparametric.gamma_star_ - least_squares.gamma_star_)
    delta_error = np.abs(nonparametric.delta_star_ / least_squares.delta_star_ - 1)
    assert np.quantile(gamma_error, 0.95) < 0.05
    assert np.quantile(delta_error, 0.95) < 0.1


# ------------------------------------------------------------------ API and errors
def test_unseen_batch_is_a_clear_error():
    observed, covars, *_ = synthetic_cohort()
    model = ComBat("site", continuous_cols=["age"]).fit(observed, covars)
    new_covars = covars.copy()
    new_covars.iloc[3, new_covars.columns.get_loc("site")] = "siteZ"
    with pytest.raises(UnseenBatchError, match="siteZ") as error:
        model.transform(observed, new_covars)
    assert isinstance(error.value, ValueError)
    assert isinstance(error.value, InputDataError)
    assert "sub-003" in str(error.value)


def test_save_and_load_round_trip(tmp_path):
    observed, covars, *_ = synthetic_cohort()
    model = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"], ref_batch="siteC")
    expected = model.fit_transform(observed, covars)
    path = model.save(tmp_path / "combat")
    assert path.name == "combat.npz"
    loaded = ComBat.load(path)
    assert loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(loaded.transform(observed, covars), expected)


def test_loading_something_else_fails_clearly(tmp_path):
    not_a_model = tmp_path / "x.npz"
    np.savez(not_a_model, a=np.arange(3))
    with pytest.raises(InputDataError, match="not a saved ComBat model"):
        ComBat.load(not_a_model)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f, c: (f.assign(region00=np.nan), c), "missing or infinite"),
        (lambda f, c: (f, c.drop(columns="age")), "not in the covariate table"),
        (lambda f, c: (f, c.assign(site="siteA")), "at least two batches"),
        (
            lambda f, c: (f, c.assign(age=c["site"].map({"siteA": 1, "siteB": 2, "siteC": 3}))),
            "collinear",
        ),
    ],
    ids=["nan-feature", "missing-covariate", "one-batch", "confounded"],
)
def test_bad_inputs_raise_input_data_error(mutate, message):
    observed, covars, *_ = synthetic_cohort()
    features, covariates = mutate(observed, covars)
    with pytest.raises(InputDataError, match=message):
        ComBat("site", continuous_cols=["age"]).fit(features, covariates)


def test_site_prediction_falls_to_chance_after_harmonization():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    observed, covars, *_ = synthetic_cohort(n_per_site=(90, 120, 80))
    harmonized = ComBat("site", categorical_cols=["sex"], continuous_cols=["age"]).fit_transform(
        observed, covars
    )
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))

    def site_accuracy(table):
        scores = cross_val_score(
            classifier, table.to_numpy(), covars["site"], cv=5, scoring="balanced_accuracy"
        )
        return scores.mean()

    chance = 1 / 3
    assert site_accuracy(observed) > 0.85
    assert site_accuracy(harmonized) < chance + 0.1


def test_clone_gives_an_unfitted_estimator_with_the_same_parameters():
    from sklearn.base import clone

    observed, covars, *_ = synthetic_cohort()
    model = ComBat("site", categorical_cols=["sex"], parametric=False, ref_batch="siteA")
    fitted = model.fit(observed, covars)
    copy = clone(fitted)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "gamma_star_")
    pd.testing.assert_frame_equal(
        copy.fit_transform(observed, covars), fitted.transform(observed, covars)
    )


def test_equal_batch_variances_use_the_point_mass_limit_of_the_prior():
    """All scale estimates equal (e.g. two participants per site): the inverse-gamma
    moment estimates diverge; the posterior is their limit, not a division by zero."""
    from brainscale.workflows.group.combat_estimation import (
        inverse_gamma_prior,
        parametric_adjustments,
    )

    rng = np.random.default_rng(0)
    n_samples, gamma_hat = 5, rng.normal(size=20)
    delta_hat = np.full(20, 0.8)
    assert inverse_gamma_prior(delta_hat) == (np.inf, np.inf)
    gamma, delta = parametric_adjustments(gamma_hat.copy(), delta_hat * (n_samples - 1),
                                          n_samples, gamma_hat, delta_hat)
    assert np.allclose(delta, 0.8) and np.isfinite(gamma).all()
    # the degenerate case is the limit of nearly equal variances
    near = delta_hat * (1 + 1e-7 * rng.standard_normal(20))
    gamma_near, delta_near = parametric_adjustments(gamma_hat.copy(), near * (n_samples - 1),
                                                    n_samples, gamma_hat, near)
    assert np.allclose(delta_near, delta, rtol=1e-5)
    assert np.allclose(gamma_near, gamma, rtol=1e-5, atol=1e-8)
