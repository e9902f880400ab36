"""Covariates of the group models: where they come from and how they are typed.

- :func:`covariates_of` finds the batch and covariate columns of each feature row,
  either in a side table (scikit-learn metadata routing passes it as ``covars=``)
  or among the columns of ``X``; every fold-wise transformer uses it.
- :func:`split_covariate_types` decides which covariates are categorical and which
  continuous: explicitly (``categorical=`` / ``continuous=``) or from the column
  types, with a warning when an integer column with few levels (sex coded 1/2, a
  3-level diagnosis code) would be modelled as continuous.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from brainscale.errors import InputDataError

#: Integer columns with at most this many distinct values look like category codes.
FEW_LEVELS = 5


def covariates_of(X, covars, columns: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(features, covars)`` as DataFrames on one index.

    ``covars`` given: a table indexed like ``X`` (looked up by label, so the whole
    participants table may be passed) or with one row per row of ``X`` (by position).
    ``covars`` omitted: the ``columns`` of ``X`` (names, or integer positions of an
    array) are the covariates, and the other columns the features.
    """
    if sparse.issparse(X):
        raise TypeError("sparse input is not supported: harmonization needs dense features")
    if covars is None:
        if isinstance(X, pd.DataFrame):
            absent = [c for c in columns if c not in X.columns]
            if absent:
                raise InputDataError(
                    f"no covars given and X has no covariate column(s) {absent}"
                )
            return X.drop(columns=columns), X[columns]
        values = np.asarray(X)
        if values.ndim != 2:
            raise ValueError(f"Expected a 2D array, got {values.ndim}D input")
        positions = [int(c) for c in columns]
        features = pd.DataFrame(np.delete(values, positions, axis=1))
        return features, pd.DataFrame(values[:, positions], columns=columns)
    features = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    if not isinstance(covars, pd.DataFrame):
        raise TypeError("covars must be a pandas DataFrame")
    by_label = (
        isinstance(X, pd.DataFrame)
        and covars.index.is_unique
        and features.index.isin(covars.index).all()
    )
    if not by_label:
        if len(covars) != len(features):
            raise InputDataError(
                f"covars has {len(covars)} rows for {len(features)} feature rows and does "
                "not hold their index"
            )
        covars = covars.set_axis(features.index)
    return features, covars


def validated_tables(
    features: pd.DataFrame, covars: pd.DataFrame, columns: list[str]
) -> tuple[np.ndarray, pd.DataFrame]:
    """Check ComBat's feature and covariate tables; return the values and the aligned ``covars``."""
    if not isinstance(features, pd.DataFrame):
        features = pd.DataFrame(features)
    if not isinstance(covars, pd.DataFrame):
        raise TypeError("ComBat: covars must be a pandas DataFrame")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"0 sample(s) or feature(s) in an array of shape {features.shape}")
    absent = [c for c in columns if c not in covars.columns]
    if absent:
        raise InputDataError(f"ComBat: covariate column(s) {absent} not in the covariate table")
    missing_rows = features.index.difference(covars.index)
    if len(missing_rows):
        raise InputDataError(
            f"ComBat: participants {list(missing_rows[:10])} have features but no covariates"
        )
    covars = covars.loc[features.index, columns]
    if covars.isna().any().any():
        bad = covars.columns[covars.isna().any()].tolist()
        raise InputDataError(f"ComBat: missing values in covariate column(s) {bad}")
    values = features.to_numpy()
    if not np.issubdtype(values.dtype, np.number):
        raise InputDataError("ComBat: every feature column must be numeric")
    if not np.isfinite(values).all():
        bad = features.columns[~np.isfinite(values).all(axis=0)].tolist()
        raise InputDataError(f"ComBat: missing or infinite values in feature(s) {bad[:10]}")
    return values, covars


def split_covariate_types(
    covars: pd.DataFrame,
    columns: Sequence[str],
    *,
    categorical: Sequence[str] | None = None,
    continuous: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split covariate names into ``(categorical, continuous)``.

    Columns named in ``categorical`` or ``continuous`` are typed as told; the others
    are continuous when numeric, categorical otherwise. A numeric column of integers
    with at most :data:`FEW_LEVELS` distinct values that was not typed explicitly
    warns (``UserWarning``): it is probably a code (sex 1/2) and would be modelled as
    a slope.

    Parameters
    ----------
    covars : pandas.DataFrame
        The covariate table.
    columns : sequence of str
        Covariates to type (a column named in ``categorical``/``continuous`` but absent
        from ``columns`` is added).
    categorical, continuous : sequence of str, optional
        Explicit types.

    Returns
    -------
    tuple of tuple of str
        Categorical and continuous covariate names, in their order in ``columns``.

    Examples
    --------
    >>> table = pd.DataFrame({"sex": [1, 2, 1, 2], "age": [20.5, 31.0, 44.2, 60.1]})
    >>> split_covariate_types(table, ["sex", "age"], categorical=["sex"])
    (('sex',), ('age',))
    """
    categorical = tuple(categorical or ())
    continuous = tuple(continuous or ())
    both = set(categorical) & set(continuous)
    if both:
        raise ValueError(f"covariate(s) {sorted(both)} listed as categorical and continuous")
    names = list(dict.fromkeys([*columns, *categorical, *continuous]))
    absent = [c for c in names if c not in covars.columns]
    if absent:
        raise InputDataError(f"covariate column(s) {absent} not in the covariate table")
    cat, cont = [], []
    for name in names:
        if name in categorical:
            cat.append(name)
        elif name in continuous:
            cont.append(name)
        elif pd.api.types.is_numeric_dtype(covars[name]) and not pd.api.types.is_bool_dtype(
            covars[name]
        ):
            values = covars[name].dropna().to_numpy(dtype=float)
            levels = np.unique(values)
            if np.all(values == np.round(values)) and len(levels) <= FEW_LEVELS:
                warnings.warn(
                    f"covariate {name!r} holds {len(levels)} integer level(s) "
                    f"{levels.astype(int).tolist()} and is modelled as continuous; pass "
                    f"categorical=[{name!r}] if it is a code (e.g. sex 1/2)",
                    UserWarning,
                    stacklevel=2,
                )
            cont.append(name)
        else:
            cat.append(name)
    return tuple(cat), tuple(cont)


__all__ = ["FEW_LEVELS", "covariates_of", "split_covariate_types", "validated_tables"]
