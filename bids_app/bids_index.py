"""Open a BIDS dataset: check its paths, validate its file names, index it with pybids.

The dataset is indexed once per run, in memory (nothing is written into ``bids_dir``),
after validation with the ``bids-validator`` package that pybids uses.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

from brainscale.errors import BIDSValidationError, NoInputError, OutputError, UsageError

_SKIPPED_TOP = ("derivatives", "sourcedata", "code", "stimuli", "phenotype")


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
