"""Select what a run processes: pybids queries per input type, participants, array tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brainscale.errors import NothingSelectedError, UsageError

#: Default pybids queries per input type (``--bids-filter-file`` updates them).
DEFAULT_QUERIES: dict[str, dict[str, Any]] = {
    "t1w": {"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]},
    "bold": {"datatype": "func", "suffix": "bold", "extension": [".nii", ".nii.gz"]},
    "dwi": {"datatype": "dwi", "suffix": "dwi", "extension": [".nii", ".nii.gz"]},
}


def load_filters(path: Path | None) -> dict[str, dict[str, Any]]:
    """Merge a ``--bids-filter-file`` into the default queries.

    Parameters
    ----------
    path : pathlib.Path or None
        JSON file ``{"t1w": {...}, "bold": {...}, "dwi": {...}}``.

    Returns
    -------
    dict
        Queries per input type.

    Raises
    ------
    UsageError
        Invalid JSON or an unknown input type.
    """
    queries = {key: dict(value) for key, value in DEFAULT_QUERIES.items()}
    if path is None:
        return queries
    try:
        given = json.loads(Path(path).read_text())
    except ValueError as err:
        raise UsageError(f"--bids-filter-file {path}: invalid JSON ({err})") from err
    if not isinstance(given, dict):
        raise UsageError(f"--bids-filter-file {path}: expected a JSON object")
    unknown = sorted(set(given) - set(queries))
    if unknown:
        raise UsageError(
            f"--bids-filter-file {path}: unknown input type(s) {unknown}; use {sorted(queries)}"
        )
    for key, query in given.items():
        if not isinstance(query, dict):
            raise UsageError(f"--bids-filter-file {path}: {key!r} must map to an object")
        queries[key].update(query)
    return queries


def select_participants(layout, labels: tuple[str, ...] | list[str]) -> list[str]:
    """Resolve ``--participant_label`` against the dataset.

    Parameters
    ----------
    layout : bids.BIDSLayout
        The indexed dataset.
    labels : sequence of str
        Requested labels (without ``sub-``); empty means every participant.

    Returns
    -------
    list of str
        Sorted participant labels.

    Raises
    ------
    NothingSelectedError
        A requested participant is absent, or the dataset has none (exit 18).
    """
    available = sorted(layout.get_subjects())
    if not labels:
        if not available:
            raise NothingSelectedError(f"{layout.root}: the dataset has no participants")
        return available
    missing = sorted(set(labels) - set(available))
    if missing:
        raise NothingSelectedError(
            f"participant(s) {', '.join('sub-' + m for m in missing)} not found in "
            f"{layout.root}; available: {', '.join('sub-' + a for a in available) or 'none'}"
        )
    return sorted(set(labels))


def select_array_task(participants: list[str], index: int | None) -> list[str]:
    """Pick the participant of one array task from the sorted selection.

    Parameters
    ----------
    participants : list of str
        Sorted participant labels.
    index : int or None
        0-based array index (``--array-index``, ``SLURM_ARRAY_TASK_ID`` or
        ``AWS_BATCH_JOB_ARRAY_INDEX``); ``None`` keeps every participant.

    Returns
    -------
    list of str
        One participant, or all of them.

    Raises
    ------
    UsageError
        The index is outside ``0 .. len(participants) - 1``.
    """
    if index is None:
        return participants
    if not 0 <= index < len(participants):
        raise UsageError(
            f"array index {index} is out of range: {len(participants)} participant(s) selected "
            f"(valid indices 0..{len(participants) - 1})"
        )
    return [participants[index]]
