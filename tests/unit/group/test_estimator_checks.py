"""The group estimators against scikit-learn's contract (``sklearn.utils.estimator_checks``).

Expected failures are listed with their reason. ComBat and FoldComBat are checked with the
batch in column 0 of ``X`` (covariates as columns of ``X``); scikit-learn's checks feed random
continuous data, so that column then holds one row per batch, which ComBat cannot estimate:
the checks that fit on such data are expected to fail, and the same properties are tested
below on data with a real batch column.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn import config_context
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from brainscale.errors import InputDataError
from brainscale.workflows.group.classify_combat import FoldComBat
from brainscale.workflows.group.classify_search import (
    ColumnScaler,
    InnerSplits,
    NestedGridSearch,
    UnivariateScreen,
)
from brainscale.workflows.group.harmonize import ComBat
from brainscale.workflows.group.models import TorchMLPClassifier, TorchMLPRegressor

ONE_ROW_PER_BATCH = (
    "random continuous X from the checks: the batch column holds one row per batch, and ComBat "
    "needs at least 2 rows per batch"
)
_COMBAT_FITTING_CHECKS = (
    "check_complex_data", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_dtype_object", "check_estimators_dtypes", "check_estimators_empty_data_messages",
    "check_estimators_fit_returns_self", "check_estimators_nan_inf",
    "check_estimators_overwrite_params", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_fit2d_1feature", "check_fit2d_predict1d",
    "check_fit_check_is_fitted", "check_fit_idempotent", "check_fit_score_takes_y",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_n_features_in", "check_n_features_in_after_fitting", "check_pipeline_consistency",
    "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
    "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes",
)
COMBAT_EXPECTED = dict.fromkeys(_COMBAT_FITTING_CHECKS, ONE_ROW_PER_BATCH)
COMBAT_EXPECTED["check_fit2d_1sample"] = ONE_ROW_PER_BATCH
SEARCH_EXPECTED = {
    "check_estimator_sparse_array": "dense feature tables only (the inner pipeline's choice)",
    "check_estimator_sparse_matrix": "dense feature tables only (the inner pipeline's choice)",
    "check_dtype_object": "the target's type is checked by the inner model, after the split",
}
ESTIMATORS = [
    (ComBat(batch_col=0), COMBAT_EXPECTED),
    (FoldComBat(batch_col=0), {k: v for k, v in COMBAT_EXPECTED.items()
                               if k != "check_fit2d_1sample"}),
    (UnivariateScreen(k=2), {}),
    (ColumnScaler(), {}),
    (
        NestedGridSearch(
            Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]),
            {"C": [0.1, 1.0]},
            InnerSplits(3),
            "accuracy",
        ),
        SEARCH_EXPECTED,
    ),
    (TorchMLPClassifier(epochs=40, device="cpu"), {}),
    (TorchMLPRegressor(epochs=40, device="cpu"), {}),
]


@pytest.mark.parametrize(
    ("estimator", "expected"), ESTIMATORS, ids=[type(e).__name__ for e, _ in ESTIMATORS]
)
def test_scikit_learn_estimator_checks(estimator, expected):
    with _quiet():
        results = check_estimator(estimator, expected_failed_checks=expected, on_fail=None)
    unexpected = [
        (r["check_name"], str(r["exception"])[:200])
        for r in results
        if r["status"] == "failed" and r["check_name"] not in expected
    ]
    assert not unexpected
    assert sum(r["status"] == "passed" for r in results) >= 15


class _quiet:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def test_column_scaler_equals_standard_scaler_and_subsets_its_statistics():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(80, 30)) * 3 + 7).astype(np.float32)
    X[:, 4] = 2.0  # constant column: scale 1, as StandardScaler
    ours = ColumnScaler().fit(X)
    np.testing.assert_allclose(ours.transform(X), StandardScaler().fit_transform(X), atol=2e-6)
    columns = np.array([1, 4, 9, 29])
    # the statistics of a column subset are the subset of the statistics, bit for bit
    subset = ColumnScaler().fit(X[:, columns])
    np.testing.assert_array_equal(subset.mean_, ours.mean_[columns])
    np.testing.assert_array_equal(subset.scale_, ours.scale_[columns])


def _batched_data(seed=0):
    rng = np.random.default_rng(seed)
    sites = np.repeat(["a", "b", "c"], 20)
    X = pd.DataFrame(rng.normal(size=(60, 5)) * np.repeat([1.0, 2.0, 0.5], 20)[:, None]
                     + np.repeat([0.0, 3.0, -2.0], 20)[:, None]).astype(np.float32)
    covars = pd.DataFrame({"site": sites, "age": rng.uniform(20, 80, 60)})
    return X, covars


@pytest.mark.parametrize("estimator", [ComBat("site", continuous_cols=["age"]),
                                       FoldComBat("site", continuous_cols=["age"])])
def test_combat_contract_on_data_with_a_batch_column(estimator):
    X, covars = _batched_data()
    fitted = clone(estimator)
    assert fitted.fit(X, covars=covars) is fitted  # fit returns self
    first = np.asarray(fitted.transform(X, covars=covars))
    assert first.dtype == np.float32  # float32 stays float32
    again = np.asarray(clone(estimator).fit(X, covars=covars).transform(X, covars=covars))
    np.testing.assert_array_equal(first, again)  # idempotent, deterministic
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(np.asarray(restored.transform(X, covars=covars)), first)
    order = np.random.default_rng(1).permutation(len(X))  # rows transformed independently
    shuffled = np.asarray(fitted.transform(X.iloc[order], covars=covars.iloc[order]))
    np.testing.assert_allclose(shuffled, first[order], rtol=1e-6)
    columns = X.assign(site=covars["site"], age=covars["age"])  # covariates as columns of X
    np.testing.assert_allclose(
        np.asarray(clone(estimator).fit(columns).transform(columns)), first, rtol=1e-6
    )
    with pytest.raises((ValueError, InputDataError)):  # features missing
        fitted.transform(X.iloc[:, :3].to_numpy(), covars=covars)
    bad = X.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises((ValueError, InputDataError), match="(?i)nan|infinite"):
        clone(estimator).fit(bad, covars=covars)


def test_fold_combat_in_a_pipeline_through_metadata_routing():
    X, covars = _batched_data()
    y = np.tile([0, 1], 30)
    pipe = make_pipeline(FoldComBat("site", continuous_cols=["age"]), LogisticRegression())
    with config_context(enable_metadata_routing=True):
        pipe.fit(X[:40], y[:40], covars=covars[:40])
        predicted = pipe.predict(X[40:], covars=covars[40:])  # site "c" unseen: aligned
    assert predicted.shape == (20,)
    harmonized = pipe[0].transform(X[40:], covars=covars[40:])
    # the unseen site lands on the training sites' scale (its raw sd is 0.5)
    assert 0.7 < harmonized.std(axis=0).mean() / pipe[0].transform(
        X[:40], covars=covars[:40]).std(axis=0).mean() < 1.3
