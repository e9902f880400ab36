"""BIDS input: index once with pybids, validate, select, read metadata, check files.

The dataset is indexed once per run (in memory: nothing is written into ``bids_dir``),
validated with the ``bids-validator`` package that pybids uses, and each participant's
inputs are gathered into a :class:`SubjectData` with their metadata (BIDS inheritance
included: top-level ``task-*_bold.json``, ``dwi.bval``...).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscale.bids_app.input_checks import gradient_problem, image_problem
from brainscale.errors import (
    BIDSValidationError,
    InputDataError,
    NoInputError,
    NothingSelectedError,
    OutputError,
    UsageError,
)

#: Default pybids queries per input type (``--bids-filter-file`` updates them).
DEFAULT_QUERIES: dict[str, dict[str, Any]] = {
    "t1w": {"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]},
    "bold": {"datatype": "func", "suffix": "bold", "extension": [".nii", ".nii.gz"]},
    "dwi": {"datatype": "dwi", "suffix": "dwi", "extension": [".nii", ".nii.gz"]},
}
_SKIPPED_TOP = ("derivatives", "sourcedata", "code", "stimuli", "phenotype")


@dataclass(frozen=True)
class BoldRun:
    """One BOLD series and what goes with it."""

    path: str
    metadata: dict[str, Any]
    events: str | None = None
    fieldmap: dict[str, Any] | None = None


@dataclass(frozen=True)
class DwiSeries:
    """One DWI series with its gradient files."""

    path: str
    bval: str | None
    bvec: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class SubjectData:
    """The selected inputs of one participant.

    Attributes
    ----------
    subject : str
        Participant label without ``sub-``.
    t1w : list of str
        T1w images (all selected sessions).
    bold : list of BoldRun
        BOLD runs.
    dwi : dict
        DWI series grouped by session label (``""`` without sessions); the series of a
        session (e.g. ``dir-AP`` and ``dir-PA``) are processed together.
    """

    subject: str
    t1w: list[str] = field(default_factory=list)
    bold: list[BoldRun] = field(default_factory=list)
    dwi: dict[str, list[DwiSeries]] = field(default_factory=dict)

    def files(self) -> list[str]:
        """Return every input image of the participant."""
        out = list(self.t1w) + [run.path for run in self.bold]
        for series in self.dwi.values():
            out += [s.path for s in series]
        return out


def check_dataset_paths(bids_dir: Path, output_dir: Path, work_dir: Path | None) -> None:
    """Check that the input exists and that nothing will be written into it.

    Parameters
    ----------
    bids_dir, output_dir : pathlib.Path
        Input dataset and derivatives folder.
    work_dir : pathlib.Path or None
        Work directory.

    Raises
    ------
    NoInputError
        ``bids_dir`` does not exist or is not a folder (exit 66).
    UsageError
        ``output_dir`` or ``work_dir`` lies inside ``bids_dir`` (exit 64).
    OutputError
        ``output_dir`` cannot be created or written (exit 73).
    """
    if not bids_dir.is_dir():
        raise NoInputError(f"BIDS dataset folder not found: {bids_dir}")
    if not os.access(bids_dir, os.R_OK | os.X_OK):
        raise NoInputError(f"BIDS dataset folder is not readable: {bids_dir}")
    for name, path in (("output_dir", output_dir), ("work_dir", work_dir)):
        if path is not None and path.resolve().is_relative_to(bids_dir.resolve()):
            raise UsageError(
                f"{name} {path} is inside bids_dir {bids_dir}: BrainScale never writes into "
                "the input dataset; choose a folder outside it (e.g. a sibling folder)"
            )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output_dir {output_dir}: {err.strerror}") from err
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise OutputError(f"output_dir {output_dir} is not writable")


def _bidsignore_patterns(bids_dir: Path) -> list[str]:
    path = bids_dir / ".bidsignore"
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def validate_dataset(bids_dir: Path) -> list[str]:
    """Validate file names with the ``bids-validator`` package.

    Parameters
    ----------
    bids_dir : pathlib.Path
        Dataset root.

    Returns
    -------
    list of str
        Problems found (empty when the dataset is valid): a missing
        ``dataset_description.json`` and every file whose path is not valid BIDS.
    """
    from bids_validator import BIDSValidator

    problems = []
    description = bids_dir / "dataset_description.json"
    if not description.is_file():
        problems.append(f"{description}: missing (required by BIDS)")
    else:
        try:
            content = json.loads(description.read_text())
            for key in ("Name", "BIDSVersion"):
                if key not in content:
                    problems.append(f"{description}: required field {key!r} missing")
        except ValueError as err:
            problems.append(f"{description}: invalid JSON ({err})")
    ignore = _bidsignore_patterns(bids_dir)
    validator = BIDSValidator()
    for root, dirs, files in os.walk(bids_dir):
        rel_root = Path(root).relative_to(bids_dir)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and not (rel_root == Path(".") and d in _SKIPPED_TOP)
        )
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = (rel_root / name).as_posix()
            if any(fnmatch.fnmatch(rel, p.strip("/")) or fnmatch.fnmatch(name, p) for p in ignore):
                continue
            if not validator.is_bids(f"/{rel}"):
                problems.append(f"{bids_dir / rel}: file name is not valid BIDS")
    return problems


def load_layout(bids_dir: Path, *, validate: bool = True, ignore: list[Path] | None = None):
    """Index a BIDS dataset with pybids, validating it first unless told not to.

    Parameters
    ----------
    bids_dir : pathlib.Path
        Dataset root.
    validate : bool
        Run :func:`validate_dataset` and fail on any problem.
    ignore : list of pathlib.Path, optional
        Files pybids must not index (malformed JSON sidecars, which would make it raise
        for everyone; :func:`brainscale.bids_app.input_checks.sidecar_problems` charges them to
        their participants).

    Returns
    -------
    bids.BIDSLayout
        The in-memory index (no database file is written into the dataset).

    Raises
    ------
    BIDSValidationError
        The dataset is not valid BIDS (exit 16); the message lists the problems.
    """
    from bids import BIDSLayout
    from bids.exceptions import PyBIDSError

    if validate:
        problems = validate_dataset(bids_dir)
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise BIDSValidationError(
                f"{bids_dir} is not a valid BIDS dataset ({len(problems)} problem(s)):\n  "
                f"{shown}{more}\nFix them or pass --skip-bids-validation."
            )
    from bids.layout.index import BIDSLayoutIndexer
    from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

    ignored = sorted(DEFAULT_LOCATIONS_TO_IGNORE, key=str) + [
        Path(p).resolve() for p in ignore or ()]
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignored)
    try:
        return BIDSLayout(str(bids_dir), validate=False, derivatives=False, indexer=indexer)
    except (PyBIDSError, ValueError, OSError) as err:
        raise BIDSValidationError(f"{bids_dir}: pybids cannot index it: {err}") from err


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


def collect_subject_data(
    layout,
    subject: str,
    *,
    sessions: tuple[str, ...] | list[str] = (),
    queries: dict[str, dict[str, Any]] | None = None,
) -> SubjectData:
    """Gather one participant's inputs and their metadata.

    Parameters
    ----------
    layout : bids.BIDSLayout
        The indexed dataset.
    subject : str
        Participant label.
    sessions : sequence of str
        Sessions to keep (empty: all).
    queries : dict, optional
        Queries per input type (see :func:`load_filters`).

    Returns
    -------
    SubjectData
        The participant's inputs.
    """
    queries = queries or DEFAULT_QUERIES
    base: dict[str, Any] = {"subject": subject, "return_type": "filename"}
    if sessions:
        base["session"] = list(sessions)

    def get(kind: str) -> list[str]:
        query = {**queries[kind], **base}
        return sorted(layout.get(**query))

    bold_runs = []
    for path in get("bold"):
        events = _events_file(path)
        bold_runs.append(BoldRun(path=path, metadata=layout.get_metadata(path), events=events,
                                 fieldmap=_phasediff_fieldmap(layout, path)))
    dwi: dict[str, list[DwiSeries]] = {}
    for path in get("dwi"):
        session = layout.parse_file_entities(path).get("session", "")
        dwi.setdefault(str(session), []).append(
            DwiSeries(
                path=path,
                bval=_optional(layout.get_bval, path),
                bvec=_optional(layout.get_bvec, path),
                metadata=layout.get_metadata(path),
            )
        )
    return SubjectData(subject=subject, t1w=get("t1w"), bold=bold_runs, dwi=dwi)


def _phasediff_fieldmap(layout, path: str) -> dict[str, Any] | None:
    """Return the phase-difference field map meant for ``path`` (``IntendedFor``), if any."""
    try:
        candidates = layout.get_fieldmap(path, return_list=True)
    except (ValueError, KeyError, IndexError):
        return None
    for candidate in candidates:
        files = (candidate.get("phasediff"), candidate.get("magnitude1"))
        if candidate.get("suffix") == "phasediff" and all(f and Path(f).is_file() for f in files):
            return {
                "phasediff": candidate["phasediff"],
                "magnitude": candidate["magnitude1"],
                "metadata": layout.get_metadata(candidate["phasediff"]),
            }
    return None


def _optional(getter, path: str) -> str | None:
    try:
        return getter(path)
    except (ValueError, IndexError):
        return None


def _events_file(bold_path: str) -> str | None:
    name = Path(bold_path).name
    stem = name.split("_bold.")[0]
    candidate = Path(bold_path).with_name(f"{stem}_events.tsv")
    return str(candidate) if candidate.is_file() else None


def check_input_files(data: SubjectData, modalities: tuple[str, ...]) -> list[str]:
    """Check that each selected input image can be read and has the right shape.

    Headers are checked for sanity before the data are read once, streamed (see
    :mod:`brainscale.bids_app.input_checks`); every problem is reported, one per file.

    Parameters
    ----------
    data : SubjectData
        The participant's inputs.
    modalities : tuple of str
        Parts that will run (only their inputs are checked).

    Returns
    -------
    list of str
        Problems, each ``"<file>: <what is wrong>"``; empty when all inputs are usable.
    """
    problems = []
    expected: list[tuple[str, int]] = []
    if "anat" in modalities or "func" in modalities or "dwi" in modalities:
        expected += [(path, 3) for path in data.t1w]
    if "func" in modalities:
        expected += [(run.path, 4) for run in data.bold]
    if "dwi" in modalities:
        expected += [(s.path, 4) for series in data.dwi.values() for s in series]
    if "func" in modalities:
        for run in data.bold:
            if run.fieldmap:
                expected += [(run.fieldmap["phasediff"], 3), (run.fieldmap["magnitude"], 3)]
    unusable = set()
    for path, ndim in dict.fromkeys(expected):
        problem = image_problem(path, ndim)
        if problem:
            problems.append(f"{path}: {problem}")
            unusable.add(path)
    if "func" in modalities:
        for run in data.bold:
            if "RepetitionTime" not in run.metadata:
                problems.append(f"{run.path}: RepetitionTime missing from the JSON sidecar(s)")
    if "dwi" in modalities:
        for series in data.dwi.values():
            for s in series:
                for kind, gradient in (("bval", s.bval), ("bvec", s.bvec)):
                    if gradient is None:
                        problems.append(
                            f"{s.path}: no .{kind} file found (BIDS inheritance included)"
                        )
                if s.bval and s.bvec and s.path not in unusable:
                    problem = gradient_problem(s.path, s.bval, s.bvec)
                    if problem:
                        problems.append(f"{s.path}: {problem}")
    return problems


def raise_for_problems(subject: str, problems: list[str]) -> None:
    """Raise one :class:`InputDataError` listing every problem of a participant.

    Parameters
    ----------
    subject : str
        Participant label.
    problems : list of str
        From :func:`check_input_files`.
    """
    if problems:
        raise InputDataError(
            f"sub-{subject}: {len(problems)} unusable input file(s):\n  " + "\n  ".join(problems)
        )
