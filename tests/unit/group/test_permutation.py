"""The shared permutation engine equals the plain loop; batched F statistics equal sklearn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_selection import f_classif, f_regression

from brainscale.workflows.group.classify import evaluate_model
from brainscale.workflows.group.classify_search import f_statistics_many

from .test_classify import make_cohort


def test_batched_f_statistics_equal_scikit_learn_for_every_label_vector():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 12)).astype(np.float32) + 5
    y = np.tile(["a", "b", "c", "c", "b"], 10)
    labels = np.stack([rng.permutation(y) for _ in range(6)])
    ours = f_statistics_many(X, labels)
    for row, vector in zip(ours, labels, strict=True):
        np.testing.assert_allclose(row, f_classif(X.astype(np.float64), vector)[0], rtol=1e-6)
    targets = rng.normal(size=(4, 50))
    for row, target in zip(f_statistics_many(X, targets, task="regression"), targets, strict=True):
        np.testing.assert_allclose(row, f_regression(X.astype(np.float64), target)[0], rtol=1e-6)


@pytest.mark.parametrize(
    ("model", "grid"), [("logreg", {"C": [0.01, 1.0]}), ("linsvm", {"C": [0.001, 0.1]})]
)
def test_shared_permutations_give_the_plain_loops_p_value(model, grid):
    # 4 sites, ComBat in every fold, screening (12 of 40 features) and a 2-value inner grid:
    # every piece the engine shares is exercised
    features, covars, _ = make_cohort(n_per_site=16, n_sites=4, n_features=40, d=0.4, seed=5)
    common = {
        "covars": covars,
        "model": model,
        "site_col": "site",
        "continuous": ["age"],
        "param_grid": grid,
        "max_features": 12,
        "n_permutations": 10,
        "n_bootstrap": 20,
        "seed": 7,
    }
    loop = evaluate_model(features, covars["diagnosis"], permutation_method="loop", **common)
    shared = evaluate_model(
        features, covars["diagnosis"], permutation_method="shared", n_jobs=2, **common
    )
    assert loop.cv == shared.cv == "leave-one-site-out"
    assert len(np.unique(loop.null_scores)) > 3  # a real null distribution, not a constant
    np.testing.assert_array_equal(shared.null_scores, loop.null_scores)
    assert shared.p_value == loop.p_value
    np.testing.assert_array_equal(shared.predictions["y_pred"], loop.predictions["y_pred"])
