"""Collect participant derivatives into tidy group tables.

Reads the derivatives layout of BrainScale (see DESIGN.md) under ``output_dir``:

- ``anat/*_atlas-<A>_morph.tsv``: one row per region (``index``, ``name``, measures);
- ``anat/*_desc-brain_morph.tsv``: one row of global measures;
- ``func|dwi/*_atlas-<A>_meas-<m>[_desc-<d>]_relmat.tsv``: square matrices whose first
  column is ``node``;
- ``func/*_desc-confounds_timeseries.tsv``: confounds, summarised as head-motion QC.

Every table has one row per participant and session (``participant_id``,
``session_id``; ``session_id`` is ``"n/a"`` in datasets without sessions). Several
runs of a task are averaged. Participants that lack a modality are listed in
:attr:`GroupData.missing`, never silently dropped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.errors import InputDataError

NO_SESSION = "n/a"
KEY_COLUMNS = ["participant_id", "session_id"]
MODALITIES = ("anat", "func", "dwi")
_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9+]+)$")


def parse_entities(filename: str) -> dict[str, str]:
    """Return the BIDS entities of a file name, plus ``suffix`` and ``extension``.

    >>> parse_entities("sub-01_ses-a_task-rest_atlas-DK_meas-PearsonCorrelation_relmat.tsv")["meas"]
    'PearsonCorrelation'
    """
    stem, _, extension = filename.partition(".")
    *pairs, suffix = stem.split("_")
    entities = {"suffix": suffix, "extension": "." + extension}
    for pair in pairs:
        match = _ENTITY.match(pair)
        if match:
            entities[match.group(1)] = match.group(2)
    return entities


def upper_triangle(matrices: np.ndarray) -> np.ndarray:
    """Return the edges above the diagonal, row-major: ``(n, N, N) -> (n, N(N-1)/2)``."""
    rows, cols = np.triu_indices(matrices.shape[-1], k=1)
    return matrices[..., rows, cols]


def edge_names(regions: list[str]) -> list[str]:
    """Return ``"<a>__<b>"`` names of the upper-triangle edges, in :func:`upper_triangle` order."""
    rows, cols = np.triu_indices(len(regions), k=1)
    return [f"{regions[i]}__{regions[j]}" for i, j in zip(rows, cols, strict=True)]


def read_connectome(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a ``_relmat.tsv`` file: region names and the square matrix (float32).

    Raises
    ------
    InputDataError
        When the first column is not ``node``, the matrix is not square, the row and
        column names differ, or a value is not a finite number.
    """
    try:
        table = pd.read_csv(path, sep="\t", index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: cannot be read as a TSV matrix ({err})") from err
    if table.index.name != "node":
        raise InputDataError(f"{path}: first column must be 'node', found {table.index.name!r}")
    regions = [str(r) for r in table.index]
    if regions != [str(c) for c in table.columns]:
        raise InputDataError(f"{path}: column headers must equal the 'node' names, in order")
    matrix = table.to_numpy(dtype=np.float32, na_value=np.nan)
    if not np.isfinite(matrix[~np.eye(len(regions), dtype=bool)]).all():
        raise InputDataError(f"{path}: matrix has missing or non-finite off-diagonal values")
    return regions, matrix


def read_region_morph(path: Path) -> pd.Series:
    """Read an ``_atlas-<A>_morph.tsv`` file as one row ``"<measure>__<region>" -> value``."""
    table = pd.read_csv(path, sep="\t")
    if not {"index", "name"} <= set(table.columns):
        raise InputDataError(f"{path}: morphometry table needs 'index' and 'name' columns")
    measures = table.drop(columns=["index"]).set_index("name")
    if measures.empty or measures.shape[1] == 0:
        raise InputDataError(f"{path}: morphometry table has no measures")
    stacked = measures.T.stack()
    stacked.index = [f"{measure}__{region}" for measure, region in stacked.index]
    return stacked.astype(float)


def read_global_morph(path: Path) -> pd.Series:
    """Read a ``_desc-brain_morph.tsv`` file (a single row of global measures)."""
    table = pd.read_csv(path, sep="\t")
    if len(table) != 1:
        raise InputDataError(f"{path}: expected one row of global measures, found {len(table)}")
    return table.iloc[0].astype(float)


def confounds_qc(path: Path) -> dict[str, float]:
    """Summarise head motion in a confounds file: mean/max FD and % of volumes over 0.5 mm."""
    table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    if "framewise_displacement" not in table.columns:
        raise InputDataError(f"{path}: no 'framewise_displacement' column")
    fd = table["framewise_displacement"].to_numpy(dtype=float)
    fd = fd[np.isfinite(fd)]
    return {
        "mean_fd_mm": float(fd.mean()) if len(fd) else np.nan,
        "max_fd_mm": float(fd.max()) if len(fd) else np.nan,
        "fd_over_0p5_percent": float((fd > 0.5).mean() * 100) if len(fd) else np.nan,
        "n_volumes": float(len(table)),
    }


@dataclass
class Connectomes:
    """Connectivity matrices of one kind (modality, task, atlas, measure) for the cohort.

    Only the upper triangles are kept (float32), which halves the memory of a large
    cohort (10,000 x 400-region connectomes: 3.2 GB); :meth:`matrix` rebuilds one matrix.

    Attributes
    ----------
    subjects : pandas.DataFrame
        ``participant_id``, ``session_id`` and ``n_runs`` (runs averaged), one row per matrix.
    regions : list of str
        Region names, the order of the matrix rows and columns.
    edges : numpy.ndarray
        ``(n_subjects, n_regions * (n_regions - 1) / 2)`` float32, :func:`upper_triangle` order.
    diagonals : numpy.ndarray
        ``(n_subjects, n_regions)`` float32, the matrix diagonals.
    """

    name: str
    modality: str
    atlas: str
    meas: str
    subjects: pd.DataFrame
    regions: list[str]
    edges: np.ndarray
    diagonals: np.ndarray

    def matrix(self, row: int) -> np.ndarray:
        """Return the symmetric matrix of subject ``row`` (float64)."""
        n = len(self.regions)
        out = np.diag(self.diagonals[row].astype(np.float64))
        rows, cols = np.triu_indices(n, k=1)
        out[rows, cols] = self.edges[row]
        out[cols, rows] = self.edges[row]
        return out

    @property
    def matrices(self) -> np.ndarray:
        """All matrices as one ``(n_subjects, n_regions, n_regions)`` array (memory heavy)."""
        return np.stack([self.matrix(row) for row in range(len(self.edges))])

    def edge_table(self) -> pd.DataFrame:
        """Return the tidy table: key columns, then one column per upper-triangle edge."""
        edges = pd.DataFrame(self.edges, columns=edge_names(self.regions), copy=False)
        return pd.concat([self.subjects[KEY_COLUMNS].reset_index(drop=True), edges], axis=1)


@dataclass
class GroupData:
    """Everything collected from a derivatives folder.

    Attributes
    ----------
    subjects : pandas.DataFrame
        One row per participant and session with a boolean column per modality.
    tables : dict of str to pandas.DataFrame
        Tidy morphometry tables (``anat_atlas-<A>_morph``, ``anat_desc-brain_morph``).
    connectomes : dict of str to Connectomes
        Functional and structural connectomes by name.
    qc : pandas.DataFrame
        Head-motion QC of the functional runs, averaged per participant and session.
    missing : pandas.DataFrame
        ``participant_id``, ``session_id``, ``modality``: each modality that a participant
        lacks while others have it (``modality == "all"``: in participants.tsv, no output).
    """

    subjects: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    connectomes: dict[str, Connectomes] = field(default_factory=dict)
    qc: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=KEY_COLUMNS))
    missing: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=[*KEY_COLUMNS, "modality"])
    )


def _subject_key(entities: dict[str, str]) -> tuple[str, str]:
    return f"sub-{entities['sub']}", f"ses-{entities['ses']}" if "ses" in entities else NO_SESSION


def _scan(output_dir: Path) -> dict[str, list[tuple[Path, dict[str, str]]]]:
    found: dict[str, list[tuple[Path, dict[str, str]]]] = defaultdict(list)
    for pattern in ("sub-*/*/*.tsv", "sub-*/ses-*/*/*.tsv"):
        for path in sorted(output_dir.glob(pattern)):
            modality = path.parent.name
            if modality in MODALITIES and path.name.startswith("sub-"):
                found[modality].append((path, parse_entities(path.name)))
    return found


def _rows_to_table(rows: dict[tuple[str, str], pd.Series], source: str) -> pd.DataFrame:
    keys = sorted(rows)
    columns = {tuple(rows[k].index) for k in keys}
    if len(columns) > 1:
        raise InputDataError(f"{source}: participants have different regions or measures")
    table = pd.DataFrame([rows[k].to_numpy() for k in keys], columns=rows[keys[0]].index)
    table.insert(0, "session_id", [k[1] for k in keys])
    table.insert(0, "participant_id", [k[0] for k in keys])
    return table


def _collect_morph(files) -> dict[str, pd.DataFrame]:
    grouped: dict[str, dict[tuple[str, str], pd.Series]] = defaultdict(dict)
    for path, ent in files:
        if ent["suffix"] != "morph" or ent["extension"] != ".tsv":
            continue
        if "atlas" in ent:
            grouped[f"anat_atlas-{ent['atlas']}_morph"][_subject_key(ent)] = read_region_morph(path)
        elif ent.get("desc") == "brain":
            grouped["anat_desc-brain_morph"][_subject_key(ent)] = read_global_morph(path)
    return {name: _rows_to_table(rows, name) for name, rows in sorted(grouped.items())}


def _connectome_name(modality: str, ent: dict[str, str]) -> str:
    parts = [modality]
    if modality == "func" and "task" in ent:
        parts.append(f"task-{ent['task']}")
    parts += [f"atlas-{ent['atlas']}", f"meas-{ent['meas']}"]
    if "desc" in ent:
        parts.append(f"desc-{ent['desc']}")
    return "_".join(parts)


def _collect_connectomes(modality: str, files) -> dict[str, Connectomes]:
    grouped: dict[str, dict[tuple[str, str], list[Path]]] = defaultdict(lambda: defaultdict(list))
    meta: dict[str, dict[str, str]] = {}
    for path, ent in files:
        if (
            ent["suffix"] == "relmat"
            and ent["extension"] == ".tsv"
            and {"atlas", "meas"} <= set(ent)
        ):
            name = _connectome_name(modality, ent)
            grouped[name][_subject_key(ent)].append(path)
            meta[name] = ent
    collected = {}
    for name, by_subject in sorted(grouped.items()):
        matrices = {
            key: [partial(_read_named, path) for path in paths]
            for key, paths in by_subject.items()
        }
        collected[name] = connectomes_from_matrices(
            name, modality, meta[name]["atlas"], meta[name]["meas"], matrices
        )
    return collected


def _read_named(path: Path) -> tuple[Path, list[str], np.ndarray]:
    return (path, *read_connectome(path))


def connectomes_from_matrices(
    name: str,
    modality: str,
    atlas: str,
    meas: str,
    matrices: dict[tuple[str, str], list[Callable[[], tuple[str, list[str], np.ndarray]]]],
) -> Connectomes:
    """Build :class:`Connectomes` from ``{(participant_id, session_id): [reader, ...]}``.

    Each reader returns ``(source, regions, matrix)`` when called, so that only one
    matrix is in memory at a time (10,000 x 400-region float64 matrices would take
    12.8 GB). Several matrices of one key (runs) are averaged. Every matrix must have
    the regions of the first one, in the same order.

    Raises
    ------
    InputDataError
        When a participant's regions differ from the others'.
    """
    keys = sorted(matrices)
    reference, regions, _ = matrices[keys[0]][0]()
    n_regions = len(regions)
    rows, cols = np.triu_indices(n_regions, k=1)
    edges = np.empty((len(keys), len(rows)), dtype=np.float32)
    diagonals = np.empty((len(keys), n_regions), dtype=np.float32)
    for row, key in enumerate(keys):
        total = np.zeros((n_regions, n_regions), dtype=np.float64)
        for reader in matrices[key]:
            source, these, matrix = reader()
            if list(these) != list(regions):
                raise InputDataError(f"{source}: regions differ from {reference}")
            total += matrix
        total /= len(matrices[key])
        edges[row], diagonals[row] = total[rows, cols], np.diagonal(total)
    subjects = pd.DataFrame(keys, columns=KEY_COLUMNS)
    subjects["n_runs"] = [len(matrices[k]) for k in keys]
    return Connectomes(name, modality, atlas, meas, subjects, list(regions), edges, diagonals)


def _collect_qc(files) -> pd.DataFrame:
    rows = []
    for path, ent in files:
        if ent["suffix"] == "timeseries" and ent.get("desc") == "confounds":
            rows.append(
                {**dict(zip(KEY_COLUMNS, _subject_key(ent), strict=True)), **confounds_qc(path)}
            )
    if not rows:
        return pd.DataFrame(columns=KEY_COLUMNS)
    runs = pd.DataFrame(rows)
    qc = runs.groupby(KEY_COLUMNS, as_index=False).agg(
        mean_fd_mm=("mean_fd_mm", "mean"),
        max_fd_mm=("max_fd_mm", "max"),
        fd_over_0p5_percent=("fd_over_0p5_percent", "mean"),
        n_func_runs=("mean_fd_mm", "size"),
    )
    return qc


def collect_group_data(output_dir: Path, participants: pd.DataFrame | None = None) -> GroupData:
    """Read every participant's derivatives under ``output_dir`` into tidy tables.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder written by the participant level.
    participants : pandas.DataFrame, optional
        participants.tsv with a ``participant_id`` column; its participants without
        any derivative are reported in ``missing`` with ``modality == "all"``.

    Returns
    -------
    GroupData
        Morphometry tables, connectomes, QC, per-subject availability and what is missing.

    Raises
    ------
    InputDataError
        When no participant derivative is found or a file is malformed.
    """
    output_dir = Path(output_dir)
    files = _scan(output_dir)
    data = GroupData(subjects=pd.DataFrame(columns=KEY_COLUMNS))
    data.tables = _collect_morph(files.get("anat", []))
    for modality in ("func", "dwi"):
        data.connectomes.update(_collect_connectomes(modality, files.get(modality, [])))
    data.qc = _collect_qc(files.get("func", []))

    present: dict[str, set[tuple[str, str]]] = {m: set() for m in MODALITIES}
    for table in data.tables.values():
        present["anat"] |= set(map(tuple, table[KEY_COLUMNS].to_numpy()))
    for conn in data.connectomes.values():
        present[conn.modality] |= set(map(tuple, conn.subjects[KEY_COLUMNS].to_numpy()))
    everyone = sorted(set().union(*present.values()))
    if not everyone:
        raise InputDataError(f"{output_dir}: no participant morphometry or connectivity TSV found")
    subjects = pd.DataFrame(everyone, columns=KEY_COLUMNS)
    for modality in MODALITIES:
        subjects[modality] = [key in present[modality] for key in everyone]
    data.subjects = subjects

    missing = [
        (*key, modality)
        for modality in MODALITIES
        if present[modality]
        for key in everyone
        if key not in present[modality]
    ]
    if participants is not None:
        with_output = {key[0] for key in everyone}
        missing += [
            (pid, NO_SESSION, "all")
            for pid in participants["participant_id"]
            if pid not in with_output
        ]
    data.missing = pd.DataFrame(missing, columns=[*KEY_COLUMNS, "modality"])
    return data
