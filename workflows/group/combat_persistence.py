"""Saving and reading fitted ComBat models (``.npz``: fitted arrays plus JSON metadata).

The file written by :meth:`brainscale.workflows.group.harmonize.ComBat.save` holds the arrays of
:data:`FITTED_ARRAYS` and a ``metadata`` JSON string (format and version, the
estimator's parameters, batch and covariate levels, feature names). It is written
atomically, so concurrent writers of one model leave one complete file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from brainscale.derivatives import atomic_write
from brainscale.errors import InputDataError

#: Version of the file written by :func:`write_combat_model`.
COMBAT_FORMAT_VERSION = 1
#: Fitted attributes stored as arrays.
FITTED_ARRAYS = (
    "grand_mean_",
    "var_pooled_",
    "covariate_betas_",
    "gamma_hat_",
    "delta_hat_",
    "gamma_star_",
    "delta_star_",
    "zero_variance_",
    "samples_per_batch_",
)


def python_scalar(value: object) -> object:
    """Turn NumPy scalars into plain Python values (JSON-serialisable)."""
    return value.item() if isinstance(value, np.generic) else value


def write_combat_model(model: Any, path: str | Path) -> Path:
    """Write a fitted ComBat estimator to a ``.npz`` file.

    Parameters
    ----------
    model : brainscale.workflows.group.harmonize.ComBat
        A fitted estimator.
    path : str or Path
        Output file; ``.npz`` is appended when missing.

    Returns
    -------
    Path
        The file written.
    """
    metadata = {
        "format": "brainscale-combat",
        "format_version": COMBAT_FORMAT_VERSION,
        "params": {
            **model.get_params(),
            "categorical_cols": list(model.categorical_cols),
            "continuous_cols": list(model.continuous_cols),
            "ref_batch": python_scalar(model.ref_batch),
        },
        "batch_levels": model.batch_levels_,
        "categorical_levels": model.categorical_levels_,
        "feature_names": model.feature_names_,
        "ref_index": model.ref_index_,
    }
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = {name: getattr(model, name) for name in FITTED_ARRAYS}
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, metadata=np.array(json.dumps(metadata)), **arrays)
    return path


def read_combat_model(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a file written by :func:`write_combat_model`.

    Parameters
    ----------
    path : str or Path
        A ``.npz`` file.

    Returns
    -------
    metadata : dict
        ``params`` (estimator parameters), ``batch_levels``, ``categorical_levels``,
        ``feature_names``, ``ref_index``, format and version.
    arrays : dict of str to ndarray
        The fitted arrays (:data:`FITTED_ARRAYS`).

    Raises
    ------
    brainscale.errors.InputDataError
        For a file that is not a ComBat model, or one of a newer format.
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            metadata = json.loads(str(stored["metadata"]))
            arrays = {name: stored[name] for name in FITTED_ARRAYS}
    except (OSError, KeyError, ValueError) as error:
        raise InputDataError(f"{path}: not a saved ComBat model ({error})") from error
    if metadata.get("format") != "brainscale-combat":
        raise InputDataError(f"{path}: not a saved ComBat model")
    if metadata["format_version"] > COMBAT_FORMAT_VERSION:
        raise InputDataError(
            f"{path}: ComBat model format {metadata['format_version']} is newer than "
            f"this version of BrainScale reads ({COMBAT_FORMAT_VERSION})"
        )
    return metadata, arrays
