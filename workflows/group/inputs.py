"""Inputs of the group level: participants table, derivatives, covariate types, head size.

Pure table functions used by :func:`brainscale.workflows.group.run.run_group`: read
participants.tsv, gather BrainScale's derivatives and the ``--derivatives`` folders
into one :class:`~brainscale.workflows.group.collect.GroupData`, type the covariates (warnings
become report notes) and add the head-size covariate of morphometry.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.errors import InputDataError, NoInputError, UsageError
from brainscale.workflows.group.classify import CLASSIFIERS, REGRESSORS
from brainscale.workflows.group.collect import (
    KEY_COLUMNS,
    NO_SESSION,
    GroupData,
    collect_group_data,
)
from brainscale.workflows.group.covariates import split_covariate_types
from brainscale.workflows.group.external import merge_group_data, read_external_derivatives
from brainscale.workflows.group.phenotype import head_size_covariate


def read_participants(path: Path) -> pd.DataFrame:
    """Read participants.tsv (``n/a`` as missing); labels get the ``sub-`` prefix if absent."""
    path = Path(path)
    if not path.is_file():
        raise NoInputError(f"{path}: participants.tsv not found")
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    if "participant_id" not in table.columns:
        raise InputDataError(f"{path}: no 'participant_id' column")
    table["participant_id"] = [
        pid if pid.startswith("sub-") else f"sub-{pid}" for pid in table["participant_id"]
    ]
    if table["participant_id"].duplicated().any():
        dupes = table.loc[table["participant_id"].duplicated(), "participant_id"].tolist()
        raise InputDataError(f"{path}: duplicated participant_id {dupes[:5]}")
    return table


def row_labels(keys: pd.DataFrame) -> pd.Index:
    """Row labels ``sub-X`` or ``sub-X_ses-Y`` of a table's key columns."""
    return pd.Index(
        [p if s == "n/a" else f"{p}_{s}" for p, s in keys[KEY_COLUMNS].to_numpy()], name="label"
    )


def finite_rows(features: pd.DataFrame) -> pd.Series:
    """Return which rows have only finite feature values."""
    values = features.to_numpy()
    values = values if values.dtype.kind == "f" else values.astype(np.float64)
    return pd.Series(np.isfinite(values).all(axis=1), index=features.index)


def split_covariates(covars, columns, types, notes) -> tuple[tuple, tuple]:
    """Categorical and continuous covariates; type warnings become report notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        typed = split_covariate_types(
            covars,
            list(columns),
            categorical=[c for c in types["categorical"] if c in columns],
            continuous=[c for c in types["continuous"] if c in columns],
        )
    for warning in caught:
        if str(warning.message) not in notes:
            notes.append(str(warning.message))
    return typed


def with_head_size(name: str, protected: list[str], head_size: str | None) -> list[str]:
    """Regional morphometry also protects the head-size covariate."""
    if head_size and "anat_atlas-" in name:
        return [*protected, head_size]
    return list(protected)


def add_head_size(data, covars: pd.DataFrame, notes: list[str]) -> str | None:
    """Join the head-size column of the anatomical global table to ``covars`` (in place)."""
    globals_ = [n for n in data.tables if n.endswith("anat_desc-brain_morph")]
    if not any("anat_atlas-" in n for n in data.tables):
        return None
    table = data.tables[globals_[0]] if globals_ else None
    column, note = head_size_covariate(table)
    notes.append(note)
    if column is None:
        return None
    values = table.set_index(row_labels(table))[column]
    covars[column] = values.reindex(covars.index).to_numpy(dtype=float)
    return column


def check_models(models) -> None:
    """Raise ``UsageError`` (exit 64) for a ``--models`` name that is no known model."""
    unknown = sorted(set(models or ()) - set(CLASSIFIERS) - set(REGRESSORS))
    if unknown:
        raise UsageError(
            f"--models: unknown {unknown}; classifiers {list(CLASSIFIERS)}, "
            f"regressors {list(REGRESSORS)}"
        )


def collect_inputs(output_dir: Path, participants: pd.DataFrame, derivatives, notes) -> GroupData:
    """BrainScale's derivatives in ``output_dir`` and the ``--derivatives`` folders, merged."""
    data = None
    if any(output_dir.glob("sub-*")) or not derivatives:
        data = collect_group_data(output_dir, participants)
    for name, root in derivatives.items():
        extra, extra_notes = read_external_derivatives(
            name, root, participants["participant_id"].tolist()
        )
        notes += extra_notes
        data = merge_group_data(data, extra)
    with_output = set(data.subjects["participant_id"])
    absent = [p for p in participants["participant_id"] if p not in with_output]
    known = set(map(tuple, data.missing[["participant_id", "modality"]].to_numpy()))
    extra_missing = [(p, NO_SESSION, "all") for p in absent if (p, "all") not in known]
    if extra_missing:
        data.missing = pd.concat(
            [data.missing, pd.DataFrame(extra_missing, columns=data.missing.columns)],
            ignore_index=True,
        )
    return data
