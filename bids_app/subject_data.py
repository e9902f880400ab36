"""One participant's inputs, gathered from the pybids index with their metadata.

Metadata follow BIDS inheritance (top-level ``task-*_bold.json``, ``dwi.bval``...); each
BOLD run carries its events file and its phase-difference field map when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainscale.bids_app.bids_selection import DEFAULT_QUERIES


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
        Queries per input type (see
        :func:`brainscale.bids_app.bids_selection.load_filters`).

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
