import numpy as np
import pandas as pd
import pytest

from brainscale.errors import InputDataError
from brainscale.workflows.func.confounds import cosine_basis, expand_terms
from brainscale.workflows.func.denoise import denoise_timeseries, select_confounds
from brainscale.workflows.func.motion import MOTION_COLUMNS


def _confounds(n_vols=100, seed=0, outliers=(), n_nonsteady=0):
    rng = np.random.default_rng(seed)
    base = pd.DataFrame(rng.standard_normal((n_vols, 9)).cumsum(axis=0),
                        columns=list(MOTION_COLUMNS) + ["global_signal", "csf", "white_matter"])
    parts = [expand_terms(base)]
    parts.append(pd.DataFrame(rng.standard_normal((n_vols, 5)),
                              columns=[f"a_comp_cor_{k:02d}" for k in range(5)]))
    drift = cosine_basis(n_vols, 2.0)
    parts.append(pd.DataFrame(drift, columns=[f"cosine_{k:02d}" for k in range(drift.shape[1])]))
    for k, idx in enumerate(outliers):
        parts.append(pd.DataFrame({f"motion_outlier_{k:02d}": np.arange(n_vols) == idx}))
    for k in range(n_nonsteady):
        parts.append(pd.DataFrame({f"non_steady_state_outlier_{k:02d}": np.arange(n_vols) == k}))
    return pd.concat(parts, axis=1).astype(float)


@pytest.mark.parametrize("strategy, n_regressors", [
    ("6P", 6), ("9P", 9), ("24P", 24), ("36P", 36), ("acompcor", 17), ("acompcor_gsr", 18)])
def test_strategy_regressor_counts(strategy, n_regressors):
    table = _confounds()
    n_cosine = sum(c.startswith("cosine_") for c in table.columns)
    regressors, kept, columns = select_confounds(table, strategy)
    assert len(columns) == n_regressors + n_cosine == regressors.shape[1]
    assert len(set(columns)) == len(columns)
    assert len(kept) == len(table)


def test_regression_removes_confound_and_keeps_signal():
    table = _confounds(n_vols=150)
    rng = np.random.default_rng(5)
    signal = rng.standard_normal(150)
    series = np.column_stack([signal + 3 * table["trans_x"], signal + 2 * table["rot_z"]])
    cleaned, kept = denoise_timeseries(series, table, "6P", 2.0)
    for k, column in enumerate(["trans_x", "rot_z"]):
        assert abs(np.corrcoef(cleaned[:, k], table[column])[0, 1]) < 1e-6
        assert np.corrcoef(cleaned[:, k], signal)[0, 1] > 0.9
    assert np.allclose(cleaned.std(axis=0, ddof=1), 1.0)


def test_scrubbing_censors_flagged_and_nonsteady_volumes():
    table = _confounds(outliers=(40, 41, 70), n_nonsteady=2)
    _, kept, _ = select_confounds(table, "24P_scrub")
    assert set(range(100)) - set(kept) == {0, 1, 40, 41, 70}
    _, kept, _ = select_confounds(table, "24P")
    assert set(range(100)) - set(kept) == {0, 1}


def test_too_few_volumes_is_an_input_error():
    table = _confounds(n_vols=40)
    with pytest.raises(InputDataError, match="sub-02_task-fa_bold.nii.gz.*degrees of freedom"):
        denoise_timeseries(np.ones((40, 3)), table, "36P", 1.0, "sub-02_task-fa_bold.nii.gz")


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown denoising strategy"):
        select_confounds(_confounds(), "42P")
