"""Derivatives of other pipelines, read into the group level's tidy tables.

``--derivatives NAME=PATH`` (repeatable) points the group level at a folder written
by another pipeline; :func:`read_external_derivatives` finds in it, in any mix:

BEP017 connectivity in a BIDS-Derivatives tree (XCP-D, giga_connectome, ...)
    ``sub-<l>[/ses-<s>]/func/sub-<l>[_ses-<s>]_task-<t>..._<atlas|seg>-<A>_
    <meas|stat|measure>-<M>..._relmat.tsv`` (``_conmat.tsv`` for older XCP-D): a square
    matrix with a header of region names and either a first column of the same names
    (XCP-D's ``Node``, BrainScale's ``node``) or none (giga_connectome). Region time
    series ``..._<atlas|seg>-<A>..._timeseries.tsv`` (one column per region, one row per
    volume, header of region names) of an atlas without a relmat are correlated
    (Pearson). Runs of a task are averaged.
C-PAC / ABIDE Preprocessed ROI time series
    ``<FILE_ID>_rois_<atlas>.1D`` (e.g. ``Caltech_0051456_rois_cc200.1D``) or
    ``sub-<l>..._<atlas|seg>-<A>..._timeseries.1D``: whitespace-separated numbers, one
    row per volume, one column per region; an optional first line starting with
    ``#`` names the regions. The participant is the file's ``sub-`` entity or the
    trailing digits of ``FILE_ID`` (``sub-0051456``, or ``sub-51456`` when that is the
    participants.tsv label). Regions whose signal is constant (empty ROIs, common in
    ABIDE's CC200) get a correlation of 0, with a note.
FreeSurfer subject folders
    ``<subject>/stats/aseg.stats`` and ``<subject>/stats/{lh,rh}.aparc.stats``: the
    segmentation volumes (``volume_mm3__<structure>``), the cortical measures per
    region (``surface_area_mm2``, ``gm_volume_mm3``, ``thickness_mean_mm``,
    ``thickness_std_mm``, ``mean_curvature`` of ``L_<region>`` / ``R_<region>``) and the
    global measures, among them ``etiv_mm3`` (FreeSurfer's eTIV).

Table names are prefixed by NAME: ``<NAME>_func_task-rest_atlas-cc200_meas-
PearsonCorrelation`` (connectomes, as BrainScale's), ``<NAME>_anat_atlas-aparc_morph``,
``<NAME>_anat_atlas-aseg_morph``, ``<NAME>_anat_desc-brain_morph``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.errors import InputDataError
from brainscale.workflows.group.collect import (
    KEY_COLUMNS,
    NO_SESSION,
    Connectomes,
    GroupData,
    connectomes_from_matrices,
    parse_entities,
)

_ATLAS_KEYS = ("atlas", "seg")
_MEAS_KEYS = ("meas", "stat", "measure")
_ABIDE_1D = re.compile(r"^(?P<file_id>.*?)_rois_(?P<atlas>[A-Za-z0-9]+)\.1D$")
#: FreeSurfer aparc.stats columns -> BrainScale measure names.
APARC_MEASURES = {
    "SurfArea": "surface_area_mm2",
    "GrayVol": "gm_volume_mm3",
    "ThickAvg": "thickness_mean_mm",
    "ThickStd": "thickness_std_mm",
    "MeanCurv": "mean_curvature",
}
#: FreeSurfer aseg.stats global ``# Measure`` keys -> BrainScale names.
ASEG_GLOBALS = {
    "EstimatedTotalIntraCranialVol": "etiv_mm3",
    "BrainSeg": "brain_volume_mm3",
    "TotalGray": "gm_volume_mm3",
    "CerebralWhiteMatter": "wm_volume_mm3",
    "SubCortGray": "subcortical_gm_volume_mm3",
}


def _first(entities: dict, keys) -> str | None:
    return next((entities[k] for k in keys if k in entities), None)


def _participant(label: str, known: Collection[str]) -> str:
    """``sub-`` label for a subject name, matched to participants.tsv when possible."""
    label = label.removeprefix("sub-")
    candidates = [f"sub-{label}"] if label.isalnum() else []
    digits = re.search(r"(\d+)$", label)
    if digits:
        candidates += [f"sub-{digits.group(1)}", f"sub-{digits.group(1).lstrip('0') or '0'}"]
    if not candidates:
        return "sub-" + re.sub(r"[^A-Za-z0-9]", "", label)
    return next((c for c in candidates if c in known), candidates[0])


# ---------------------------------------------------------------------- files
def read_square_tsv(path: Path) -> tuple[Path, list[str], np.ndarray]:
    """Read a relmat/conmat TSV with or without a first column of region names."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: cannot be read as a TSV matrix ({err})") from err
    first = table.columns[0]
    if table.shape[1] == table.shape[0] + 1 and not pd.api.types.is_numeric_dtype(table[first]):
        table = table.set_index(first)
        if [str(i) for i in table.index] != [str(c) for c in table.columns]:
            raise InputDataError(f"{path}: row names differ from the column headers")
    if table.shape[0] != table.shape[1]:
        raise InputDataError(f"{path}: matrix is {table.shape[0]} x {table.shape[1]}, not square")
    matrix = table.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(matrix[~np.eye(len(matrix), dtype=bool)]).all():
        raise InputDataError(f"{path}: matrix has missing or non-finite off-diagonal values")
    return path, [str(c) for c in table.columns], matrix


def read_timeseries_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a BEP017 ``_timeseries.tsv``: region names and ``(volumes, regions)`` values."""
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: cannot be read as a time-series TSV ({err})") from err
    return [str(c) for c in table.columns], table.to_numpy(dtype=np.float64)


def read_roi_1d(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a C-PAC/AFNI ``.1D`` ROI time-series file (optional ``#`` header of names)."""
    names, rows = None, []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            if names is None and not rows:
                names = text.lstrip("#").split()
            continue
        try:
            rows.append([float(v) for v in text.split()])
        except ValueError as err:
            raise InputDataError(f"{path}: line {number} is not numeric ({err})") from err
    if not rows or len({len(r) for r in rows}) != 1:
        raise InputDataError(f"{path}: no time series, or rows of different lengths")
    values = np.asarray(rows)
    if names is None or len(names) != values.shape[1]:
        names = [f"roi{j + 1:03d}" for j in range(values.shape[1])]
    return [n.lstrip("#") for n in names], values


def correlation_matrix(path: Path, regions: list[str], values: np.ndarray, notes: list[str]):
    """Pearson correlation of region time series; constant regions correlate 0 (noted)."""
    if values.shape[0] < 3:
        raise InputDataError(f"{path}: {values.shape[0]} volume(s), too few to correlate")
    if not np.isfinite(values).all():
        raise InputDataError(f"{path}: time series hold missing or non-finite values")
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    constant = norms <= 1e-12 * max(float(np.abs(values).max()), 1.0)
    if constant.any():
        notes.append(f"{path.name}: {int(constant.sum())} constant region(s) correlate 0")
    norms[constant] = 1.0
    unit = centred / norms
    matrix = unit.T @ unit
    matrix[constant, :] = 0.0
    matrix[:, constant] = 0.0
    np.fill_diagonal(matrix, 1.0)
    return path, regions, np.clip(matrix, -1.0, 1.0)


# ---------------------------------------------------------------------- FreeSurfer
def read_aseg_stats(path: Path) -> pd.Series:
    """Global measures and structure volumes of a FreeSurfer ``aseg.stats`` file."""
    values, header, rows = {}, None, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("# Measure"):
            parts = [p.strip() for p in line.removeprefix("# Measure").split(",")]
            if len(parts) >= 4 and parts[0] in ASEG_GLOBALS:
                values[ASEG_GLOBALS[parts[0]]] = float(parts[3])
        elif line.startswith("# ColHeaders"):
            header = line.removeprefix("# ColHeaders").split()
        elif line.strip() and not line.startswith("#"):
            rows.append(line.split())
    if header is None or "StructName" not in header or "Volume_mm3" not in header:
        raise InputDataError(f"{path}: no '# ColHeaders ... Volume_mm3 StructName' table")
    name_at, volume_at = header.index("StructName"), header.index("Volume_mm3")
    for row in rows:
        values[f"volume_mm3__{row[name_at]}"] = float(row[volume_at])
    return pd.Series(values, dtype=float)


def read_aparc_stats(path: Path, hemi: str) -> pd.Series:
    """Cortical measures per region of a FreeSurfer ``?h.aparc.stats`` file."""
    header, rows = None, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("# ColHeaders"):
            header = line.removeprefix("# ColHeaders").split()
        elif line.strip() and not line.startswith("#"):
            rows.append(line.split())
    if header is None or "StructName" not in header:
        raise InputDataError(f"{path}: no '# ColHeaders StructName ...' table")
    side = {"lh": "L", "rh": "R"}[hemi]
    values = {}
    for fs_name, measure in APARC_MEASURES.items():
        if fs_name in header:
            at = header.index(fs_name)
            for row in rows:
                values[f"{measure}__{side}_{row[header.index('StructName')]}"] = float(row[at])
    return pd.Series(values, dtype=float)


def _freesurfer_tables(root: Path, known, name: str) -> dict[str, pd.DataFrame]:
    rows: dict[str, dict[str, pd.Series]] = defaultdict(dict)
    for stats in sorted(root.glob("*/stats")):
        subject = stats.parent.name
        if subject.startswith("fsaverage"):
            continue
        key = _participant(subject, known)
        if (stats / "aseg.stats").is_file():
            aseg = read_aseg_stats(stats / "aseg.stats")
            volumes = aseg[aseg.index.str.startswith("volume_mm3__")]
            rows[f"{name}_anat_atlas-aseg_morph"][key] = volumes
            rows[f"{name}_anat_desc-brain_morph"][key] = aseg.drop(volumes.index)
        hemis = [stats / f"{h}.aparc.stats" for h in ("lh", "rh")]
        if all(p.is_file() for p in hemis):
            rows[f"{name}_anat_atlas-aparc_morph"][key] = pd.concat(
                [read_aparc_stats(p, p.name[:2]) for p in hemis]
            )
    return {table: _table(by_key, table) for table, by_key in rows.items()}


def _table(by_key: dict[str, pd.Series], name: str) -> pd.DataFrame:
    keys = sorted(by_key)
    columns = list(by_key[keys[0]].index)
    for key in keys:
        if list(by_key[key].index) != columns:
            raise InputDataError(f"{name}: {key} has other regions or measures than {keys[0]}")
    table = pd.DataFrame([by_key[k].to_numpy() for k in keys], columns=columns)
    table.insert(0, "session_id", NO_SESSION)
    table.insert(0, "participant_id", keys)
    return table


# ---------------------------------------------------------------------- connectivity
def _key(entities: dict) -> tuple[str, str]:
    return f"sub-{entities['sub']}", f"ses-{entities['ses']}" if "ses" in entities else NO_SESSION


def _connectome_name(prefix: str, entities: dict, atlas: str, meas: str) -> str:
    parts = [prefix, "func"]
    if "task" in entities:
        parts.append(f"task-{entities['task']}")
    parts += [f"atlas-{atlas}", f"meas-{meas}"]
    if "desc" in entities:
        parts.append(f"desc-{entities['desc']}")
    return "_".join(parts)


def _connectivity(root: Path, known, prefix: str, notes: list[str]) -> dict[str, Connectomes]:
    readers: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    meta: dict[str, tuple[str, str]] = {}
    with_relmat = set()
    series = []
    for path in sorted(root.rglob("sub-*")):
        if not path.is_file():
            continue
        ent = parse_entities(path.name)
        atlas = _first(ent, _ATLAS_KEYS)
        if "sub" not in ent or atlas is None:
            continue
        if ent["suffix"] in ("relmat", "conmat") and ent["extension"] == ".tsv":
            meas = _first(ent, _MEAS_KEYS) or "unknown"
            name = _connectome_name(prefix, ent, atlas, meas)
            readers[name][_key(ent)].append(partial(read_square_tsv, path))
            meta[name] = (atlas, meas)
            with_relmat.add((_key(ent), ent.get("task"), atlas))
        elif ent["suffix"] == "timeseries" and ent["extension"] in (".tsv", ".1D"):
            if ent.get("desc") == "confounds":
                continue
            series.append((path, ent, atlas))
    for path in sorted(root.rglob("*_rois_*.1D")):
        match = _ABIDE_1D.match(path.name)
        if match and not path.name.startswith("sub-"):
            ent = {"sub": _participant(match["file_id"], known).removeprefix("sub-")}
            series.append((path, ent, match["atlas"]))
    for path, ent, atlas in series:
        if (_key(ent), ent.get("task"), atlas) in with_relmat:
            continue  # the pipeline's own matrix is used
        name = _connectome_name(prefix, ent, atlas, "PearsonCorrelation")
        reader = read_roi_1d if path.suffix == ".1D" else read_timeseries_tsv
        readers[name][_key(ent)].append(partial(_correlate, path, reader, notes))
        meta[name] = (atlas, "PearsonCorrelation")
    return {
        name: connectomes_from_matrices(name, "func", *meta[name], by_key)
        for name, by_key in sorted(readers.items())
    }


def _correlate(path, reader, notes):
    return correlation_matrix(path, *reader(path), notes)


# ---------------------------------------------------------------------- entry point
def parse_derivatives_option(values) -> dict[str, Path]:
    """Turn ``["NAME=PATH", ...]`` into ``{NAME: PATH}`` (``ValueError`` on a bad item)."""
    parsed = {}
    for value in values or ():
        name, sep, path = str(value).partition("=")
        if not sep or not name or not path or not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise ValueError(f"--derivatives {value!r}: expected NAME=PATH, NAME alphanumeric")
        if name in parsed:
            raise ValueError(f"--derivatives: {name!r} given twice")
        parsed[name] = Path(path)
    return parsed


def read_external_derivatives(
    name: str, root: Path, participants: Collection[str] = ()
) -> tuple[GroupData, list[str]]:
    """Read another pipeline's derivatives folder into group tables.

    Parameters
    ----------
    name : str
        Prefix of the table names (the ``NAME`` of ``--derivatives NAME=PATH``).
    root : pathlib.Path
        The folder.
    participants : collection of str
        participants.tsv labels (``sub-...``), to match subject folder and file names.

    Returns
    -------
    GroupData, list of str
        The tables and connectomes found, and notes.

    Raises
    ------
    InputDataError
        The folder does not exist or holds nothing readable.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for sub in ("0050001", "0050002"):
    ...     np.savetxt(root / f"Site_{sub}_rois_cc200.1D", rng.normal(size=(50, 4)))
    >>> data, notes = read_external_derivatives("abide", root)
    >>> list(data.connectomes), data.subjects["participant_id"].tolist()
    (['abide_func_atlas-cc200_meas-PearsonCorrelation'], ['sub-0050001', 'sub-0050002'])
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(f"--derivatives {name}={root}: folder not found")
    notes: list[str] = []
    known = set(participants)
    tables = _freesurfer_tables(root, known, name)
    connectomes = _connectivity(root, known, name, notes)
    if not tables and not connectomes:
        raise InputDataError(
            f"--derivatives {name}={root}: no relmat/timeseries TSV, .1D ROI time series or "
            "FreeSurfer stats/ folder found"
        )
    present = {"anat": set(), "func": set()}
    for table in tables.values():
        present["anat"] |= set(map(tuple, table[KEY_COLUMNS].to_numpy()))
    for conn in connectomes.values():
        present["func"] |= set(map(tuple, conn.subjects[KEY_COLUMNS].to_numpy()))
    everyone = sorted(present["anat"] | present["func"])
    subjects = pd.DataFrame(everyone, columns=KEY_COLUMNS)
    for modality in ("anat", "func", "dwi"):
        subjects[modality] = [k in present.get(modality, set()) for k in everyone]
    notes.insert(
        0,
        f"--derivatives {name}: {len(tables)} table(s), {len(connectomes)} connectome set(s) "
        f"of {len(everyone)} participant(s) from {root}",
    )
    return GroupData(subjects=subjects, tables=tables, connectomes=connectomes), notes


def merge_group_data(base: GroupData | None, extra: GroupData) -> GroupData:
    """Add another source's tables to ``base`` (subjects: union, modalities: or)."""
    if base is None:
        return extra
    subjects = pd.concat([base.subjects, extra.subjects]).groupby(KEY_COLUMNS, as_index=False)
    merged = subjects.agg({m: "max" for m in ("anat", "func", "dwi")})
    return GroupData(
        subjects=merged,
        tables={**base.tables, **extra.tables},
        connectomes={**base.connectomes, **extra.connectomes},
        qc=base.qc,
        missing=base.missing,
    )


__all__ = [
    "APARC_MEASURES",
    "ASEG_GLOBALS",
    "correlation_matrix",
    "merge_group_data",
    "parse_derivatives_option",
    "read_aparc_stats",
    "read_aseg_stats",
    "read_external_derivatives",
    "read_roi_1d",
    "read_square_tsv",
    "read_timeseries_tsv",
]
