"""Publishing a participant's derivatives all at once, and recovering from a killed publish.

A participant's staged parts (one folder per sub-workflow that succeeded) are assembled
into ``output_dir/.brainscale-publishing-sub-<label>-<id>/sub-<label>/`` (same file
system as ``output_dir``: hard links, copies across file systems), a completion manifest
is written inside it, and the folder is renamed into place. A previous
``sub-<label>/`` is first renamed aside and deleted afterwards. Readers therefore see
either the old folder or the complete new one, never half of one. A kill at any moment
leaves only hidden ``.brainscale-*`` folders, which :func:`recover` resolves on the next
run of that participant.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from brainscale.derivatives import copy_atomic, write_json
from brainscale.errors import OutputError

MANIFEST_NAME = ".brainscale-complete.json"
"""Completion manifest inside each published ``sub-<label>/`` folder."""
_ASSEMBLING = ".brainscale-publishing-"
_RETIRED = ".brainscale-retired-"


def manifest_path(output_dir: Path, subject: str) -> Path:
    """Return the completion manifest of a participant's published folder."""
    return Path(output_dir) / f"sub-{subject}" / MANIFEST_NAME


def read_manifest(output_dir: Path, subject: str) -> dict | None:
    """Return a participant's completion manifest, or ``None`` when it is absent or broken."""
    try:
        return json.loads(manifest_path(output_dir, subject).read_text())
    except (OSError, ValueError):
        return None


def incomplete_participants(output_dir: Path) -> list[str]:
    """List ``sub-*`` folders of ``output_dir`` that no completed publish produced.

    A folder without a manifest, or whose manifest lists a file that is missing, comes
    from an interrupted publish of an older version or from another tool.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.

    Returns
    -------
    list of str
        ``sub-<label>`` names.
    """
    bad = []
    for folder in sorted(p for p in Path(output_dir).glob("sub-*") if p.is_dir()):
        manifest = read_manifest(output_dir, folder.name[4:])
        if manifest is None or any(not (folder / f).is_file() for f in manifest.get("files", [])):
            bad.append(folder.name)
    return bad


def recover(output_dir: Path, subject: str) -> list[str]:
    """Clean what a killed publish of one participant left behind.

    Call it while holding the participant's lock. A half-assembled folder is removed;
    a previous folder renamed aside is put back when no new one replaced it (the kill
    fell between the two renames) and removed otherwise; temporary files of atomic
    writes under ``sub-<label>/`` and of the report are removed.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.
    subject : str
        Participant label.

    Returns
    -------
    list of str
        What was cleaned, for the log.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"sub-{subject}"
    actions = []
    for folder in sorted(output_dir.glob(f"{_ASSEMBLING}sub-{subject}-*")):
        shutil.rmtree(folder, ignore_errors=True)
        actions.append(f"removed the half-published {folder.name}")
    for folder in sorted(output_dir.glob(f"{_RETIRED}sub-{subject}-*")):
        if not final.exists():
            os.rename(folder, final)
            actions.append(f"restored the previous sub-{subject}/ from {folder.name}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            actions.append(f"removed the replaced {folder.name}")
    temporary = [*final.rglob(".*.tmp")] if final.is_dir() else []
    temporary += output_dir.glob(f".sub-{subject}.html.*.tmp")
    for path in temporary:
        with contextlib.suppress(OSError):
            path.unlink()
            actions.append(f"removed the temporary file {path.relative_to(output_dir)}")
    return actions


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        copy_atomic(source, target)


def publish_participant(
    parts: list[Path], output_dir: Path, subject: str, record: dict
) -> list[Path]:
    """Publish a participant's staged parts into ``output_dir`` in one rename.

    Parameters
    ----------
    parts : list of pathlib.Path
        Staging roots of the sub-workflows that succeeded; each holds ``sub-<label>/...``.
    output_dir : pathlib.Path
        The derivatives folder.
    subject : str
        Participant label.
    record : dict
        What ran, failed and was skipped; stored in the manifest with the file list.

    Returns
    -------
    list of pathlib.Path
        The published files.

    Raises
    ------
    brainscale.errors.OutputError
        The folder cannot be written (full disk, permissions): nothing was published
        and the previous ``sub-<label>/`` is untouched.
    """
    output_dir = Path(output_dir)
    token = uuid.uuid4().hex[:8]
    assembling = output_dir / f"{_ASSEMBLING}sub-{subject}-{token}"
    new = assembling / f"sub-{subject}"
    final = output_dir / f"sub-{subject}"
    retired = output_dir / f"{_RETIRED}sub-{subject}-{token}"
    files = []
    try:
        new.mkdir(parents=True)
        for root in parts:
            source_root = Path(root) / f"sub-{subject}"
            for source in sorted(p for p in source_root.rglob("*") if p.is_file()):
                if source.name.startswith("."):
                    continue
                relative = source.relative_to(source_root)
                _place(source, new / relative)
                files.append(relative.as_posix())
        write_json(new / MANIFEST_NAME, {
            **record, "participant_id": f"sub-{subject}",
            "published": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": sorted(set(files)),
        })
        if final.exists():
            os.rename(final, retired)
        os.rename(new, final)
    except (OSError, OutputError) as err:
        shutil.rmtree(assembling, ignore_errors=True)
        if retired.exists() and not final.exists():
            os.rename(retired, final)
        raise OutputError(
            f"cannot publish sub-{subject} into {output_dir}: "
            f"{getattr(err, 'strerror', None) or err}; "
            "nothing of this run was published (the previous derivatives are kept)"
        ) from err
    shutil.rmtree(retired, ignore_errors=True)
    shutil.rmtree(assembling, ignore_errors=True)
    return [final / f for f in sorted(set(files))]
