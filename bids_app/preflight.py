"""Checks of the environment and of the options that run before any processing.

Everything a run will need from its surroundings is tried first, so that a full disk,
an unwritable folder, a bad plugin file or a malformed ``participants.tsv`` ends the run
in seconds with one line and the documented exit code (73 for the environment, 64 for
usage), instead of after hours, once per participant, or with a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from brainscale.errors import OutputError, UsageError

MIN_FREE_BYTES = 200 * 2**20
"""Free space required in ``output_dir`` and in the work directory before starting."""


def is_disk_full(err: BaseException) -> bool:
    """Return whether an error (or its cause) is a full disk or an exceeded quota."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def check_writable_folder(folder: Path, role: str, min_free: int = MIN_FREE_BYTES) -> None:
    """Create a folder if needed, write and delete a probe file in it, check free space.

    Parameters
    ----------
    folder : pathlib.Path
        The folder.
    role : str
        What it is, for the message (``"output_dir"``, ``"logs folder"``, ...).
    min_free : int
        Bytes that must be free on its file system.

    Raises
    ------
    brainscale.errors.OutputError
        It cannot be created or written, or its file system is (nearly) full (exit 73).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".brainscale-probe-{uuid.uuid4().hex[:8]}"
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as err:
        raise OutputError(f"{role} {folder} is not writable: {err.strerror or err}") from err
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise OutputError(
            f"{role} {folder}: only {free / 2**20:.0f} MiB free on its file system "
            f"(at least {min_free / 2**20:.0f} MiB needed); free some space or choose "
            "another folder"
        )


def check_participants_tsv(path: Path) -> None:
    """Check that ``participants.tsv``, when present, is a readable table.

    Parameters
    ----------
    path : pathlib.Path
        ``bids_dir/participants.tsv``.

    Raises
    ------
    brainscale.errors.UsageError
        The file is not tab-separated text with a ``participant_id`` column and rows of
        equal length (exit 64).
    """
    if not path.is_file():
        return
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: malformed participants table (not UTF-8 text: {err})") from err
    rows = [line.split("\t") for line in lines if line.strip()]
    if not rows:
        raise UsageError(f"{path}: malformed participants table (empty)")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise UsageError(
                f"{path}: malformed participants table (line {number} has {len(row)} "
                f"tab-separated fields, the header {len(rows[0])})"
            )
    columns = rows[0]
    table = {name: [row[k] for row in rows[1:]] for k, name in enumerate(columns)}
    if "participant_id" not in table:
        raise UsageError(
            f"{path}: no 'participant_id' column (columns: {', '.join(columns)}); "
            "BIDS requires it, tab-separated"
        )
    bad = [v for v in table["participant_id"] if not v.startswith("sub-")]
    if bad:
        raise UsageError(f"{path}: participant_id values must start with 'sub-': {bad[:5]}")


def check_plugin_file(plugin_file: Path | None, nprocs: int, mem_gb: float):
    """Read ``--use-plugin`` once, before any participant runs.

    Parameters
    ----------
    plugin_file : pathlib.Path or None
        The YAML file.
    nprocs : int
        ``--nprocs``.
    mem_gb : float
        ``--mem-gb``.

    Returns
    -------
    brainscale.workflows.engine.ExecutionPlan
        The plan (default MultiProc/Linear without a file).

    Raises
    ------
    brainscale.errors.UsageError
        The file is not a valid plugin description (exit 64).
    """
    from brainscale.workflows.engine import plan_execution

    try:
        return plan_execution(nprocs=nprocs, mem_gb=mem_gb, plugin_file=plugin_file)
    except ValueError as err:
        raise UsageError(f"--use-plugin {err}") from err
