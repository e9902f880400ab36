"""The phenotype table of the group level: column aliases, participants.json, head size.

BIDS lets a dataset name its participants.tsv columns freely (``gender`` and
``group`` in ds002748, ``DX_GROUP`` and ``SITE_ID`` in ABIDE). The group level's
defaults (``--harmonize-by site``, ``--covariates age sex``, ``--target diagnosis``)
are therefore *roles*, found by :func:`resolve_columns`:

1. a column with the requested name (case-insensitive);
2. a common alias of the role (:data:`ALIASES`);
3. a column whose ``participants.json`` ``Description`` names the role
   (:data:`DESCRIPTION_WORDS`).

A default role found nowhere is a note (that part of the analysis is skipped); a
column the user asked for explicitly that does not exist is a usage error naming
the available columns. Columns that ``participants.json`` gives ``Levels`` are
categorical covariates (sex coded 1/2 stays a category), columns with ``Units``
continuous.

:func:`head_size_covariate` picks the head-size covariate of morphometry from the
anatomical global table: ``etiv_mm3`` (estimated total intracranial volume), else the
brain-mask volume, with a note.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.errors import UsageError

#: Column names accepted for each default role (compared case-insensitively).
ALIASES = {
    "site": ("site", "site_id", "scanner", "site_name", "centre", "center"),
    "sex": ("sex", "gender"),
    "age": ("age", "age_at_scan", "age_years"),
    "diagnosis": ("diagnosis", "group", "dx", "dx_group", "diagnostic_group"),
}
#: Words of a participants.json ``Description`` that identify a role.
DESCRIPTION_WORDS = {
    "site": ("site", "scanner", "acquisition centre", "acquisition center"),
    "sex": ("sex", "gender"),
    "age": ("age",),
    "diagnosis": ("diagnosis", "diagnostic", "patient", "clinical group"),
}
#: Head-size columns of ``anat_desc-brain_morph``, best first, with what they are.
HEAD_SIZE_COLUMNS = (
    ("etiv_mm3", "estimated total intracranial volume"),
    ("brain_mask_volume_mm3", "brain-mask volume (not intracranial: a fallback)"),
    ("tiv_mm3", "brain-mask volume (deprecated name; not intracranial: a fallback)"),
)


@dataclass
class PhenotypeColumns:
    """The columns the group level uses, as found in participants.tsv."""

    site: str | None
    covariates: list[str]
    target: str | None
    categorical: list[str] = field(default_factory=list)
    continuous: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_participants_json(path: Path) -> tuple[dict, list[str]]:
    """Read a participants.json sidecar: ``(column -> metadata, notes)``; absent is empty."""
    path = Path(path)
    if not path.is_file():
        return {}, []
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return {}, [f"{path.name} not read ({err}); column descriptions unused"]
    if not isinstance(meta, dict):
        return {}, [f"{path.name} is not a JSON object; column descriptions unused"]
    return {k: v for k, v in meta.items() if isinstance(v, dict)}, []


def _description(meta: dict) -> str:
    return str(meta.get("Description", meta.get("LongName", "")))


def find_column(role: str, requested: str, columns: Sequence[str], meta: dict) -> str | None:
    """Return the participants.tsv column playing ``role`` (None when none does).

    >>> find_column("sex", "sex", ["participant_id", "age", "gender"], {})
    'gender'
    >>> find_column("diagnosis", "diagnosis", ["participant_id", "DX_GROUP"], {})
    'DX_GROUP'
    """
    by_lower = {c.lower(): c for c in columns if c != "participant_id"}
    for name in (requested, *ALIASES.get(role, ())):
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    for column in by_lower.values():
        text = _description(meta.get(column, {})).lower()
        if any(re.search(rf"\b{re.escape(w)}", text) for w in DESCRIPTION_WORDS.get(role, ())):
            return column
    return None


def _explicit(requested: str, columns: Sequence[str], option: str) -> str:
    if requested in columns:
        return requested
    by_lower = {c.lower(): c for c in columns}
    if requested.lower() in by_lower:
        return by_lower[requested.lower()]
    available = [c for c in columns if c != "participant_id"]
    raise UsageError(
        f"{option} {requested!r}: participants.tsv has no such column; available: {available}"
    )


def resolve_columns(
    participants: pd.DataFrame,
    meta: dict,
    *,
    harmonize_by: str | None,
    covariates: Sequence[str],
    target: str | None,
    explicit: Collection[str] = (),
) -> PhenotypeColumns:
    """Find the site, covariate and target columns of a participants table.

    Parameters
    ----------
    participants : pandas.DataFrame
        participants.tsv.
    meta : dict
        participants.json (column -> metadata).
    harmonize_by, target : str or None
        Requested site and target columns (None: not used).
    covariates : sequence of str
        Requested covariates.
    explicit : collection of str
        Which of ``"harmonize_by"``, ``"covariates"``, ``"target"`` the user gave; the
        others are defaults, resolved through aliases and skipped with a note if absent.

    Returns
    -------
    PhenotypeColumns

    Raises
    ------
    UsageError
        An explicitly requested column is absent (the message lists the columns).

    Examples
    --------
    >>> table = pd.DataFrame(columns=["participant_id", "age", "gender", "group"])
    >>> found = resolve_columns(table, {}, harmonize_by="site", covariates=["age", "sex"],
    ...                         target="diagnosis")
    >>> found.site, found.covariates, found.target
    (None, ['age', 'gender'], 'group')
    """
    columns = list(participants.columns)
    notes: list[str] = []

    def resolve(option, role, requested, flag):
        if requested is None:
            return None
        if flag in explicit:
            return _explicit(requested, columns, option)
        found = find_column(role, requested, columns, meta)
        if found is None:
            notes.append(
                f"participants.tsv has no {requested!r} column (nor {'/'.join(ALIASES[role])}"
                f"): the parts that need it are skipped"
            )
        elif found != requested:
            notes.append(f"{option} {requested!r}: using the participants.tsv column {found!r}")
        return found

    site = resolve("--harmonize-by", "site", harmonize_by, "harmonize_by")
    target_col = resolve("--target", "diagnosis", target, "target")
    found_covariates = []
    for name in covariates:
        role = next((r for r, names in ALIASES.items() if name.lower() in names), name)
        if role not in ALIASES:  # a covariate without a known role: exact name only
            if "covariates" in explicit:
                found_covariates.append(_explicit(name, columns, "--covariates"))
            elif name in columns:
                found_covariates.append(name)
            else:
                notes.append(f"participants.tsv has no covariate column {name!r}: not used")
            continue
        found = resolve("--covariates", role, name, "covariates")
        if found is not None and found not in found_covariates:
            found_covariates.append(found)
    categorical = [c for c in found_covariates if "Levels" in meta.get(c, {})]
    continuous = [
        c for c in found_covariates if c not in categorical and "Units" in meta.get(c, {})
    ]
    descriptions = {c: _description(m) for c, m in meta.items() if c in columns and _description(m)}
    return PhenotypeColumns(
        site, found_covariates, target_col, categorical, continuous, descriptions, notes
    )


def head_size_covariate(global_morph: pd.DataFrame | None) -> tuple[str | None, str]:
    """Return the head-size column of the anatomical global table and a note.

    ``etiv_mm3`` when it holds finite values, else the brain-mask volume (with a note
    that it is not an intracranial volume), else None.

    >>> head_size_covariate(pd.DataFrame({"etiv_mm3": [1.5e6, 1.4e6]}))[0]
    'etiv_mm3'
    """
    if global_morph is None:
        return None, "no anatomical global table: morphometry has no head-size covariate"
    for column, what in HEAD_SIZE_COLUMNS:
        if column in global_morph.columns and np.isfinite(
            global_morph[column].to_numpy(dtype=float)
        ).any():
            note = f"head-size covariate of morphometry: {column} ({what})"
            if column != "etiv_mm3":
                note += "; etiv_mm3 absent from the anatomical derivatives"
            return column, note
    return None, "no etiv_mm3 nor brain-mask volume: morphometry has no head-size covariate"


__all__ = [
    "ALIASES",
    "HEAD_SIZE_COLUMNS",
    "PhenotypeColumns",
    "find_column",
    "head_size_covariate",
    "read_participants_json",
    "resolve_columns",
]
