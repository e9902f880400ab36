"""Group-level quality control: the IQM table, per-site robust outlier flags, exclusions.

- :func:`collect_iqms` reads every participant's ``*_desc-iqms_<suffix>.json`` (MRIQC names)
  into one row per image, with the head-motion summary of each BOLD run's confounds.
- :func:`flag_outliers` computes, for every metric of :data:`QC_METRICS` and within each
  site and modality (IQMs depend on the scanner), the robust z-score ``(x - median) /
  (1.4826 MAD)`` and flags values beyond :data:`OUTLIER_Z` on the metric's bad side
  (Iglewicz & Hoaglin 1993's modified z-score rule; Esteban et al. 2017 show that IQMs are
  site-dependent). Sites with fewer than :data:`MIN_SITE_IMAGES` images are compared with
  all images of the modality.
- :func:`decide_exclusions` applies ``--qc-exclude``: ``auto`` excludes an image flagged on
  at least :data:`AUTO_MIN_FLAGS` metrics, a BOLD run with mean FD above
  :data:`AUTO_FD_MEAN_MM` (Parkes et al. 2018, lenient criterion) and a DWI series with more
  than :data:`AUTO_BAD_VOLUMES_FRAC` bad volumes; ``none`` excludes nothing; a TSV names
  the exclusions (``participant_id`` and optionally ``session_id``, ``modality``, ``task``,
  ``reason``).
- :func:`apply_exclusions` removes the excluded images' rows from the feature sets that
  derive from them, so every group analysis runs on the included set.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.errors import InputDataError, UsageError
from brainscale.workflows.group.collect import KEY_COLUMNS, NO_SESSION, confounds_qc, parse_entities

HIGH, LOW, BOTH = "high", "low", "both"
"""Which side of a metric is bad: ``HIGH`` (large values are bad), ``LOW``, ``BOTH``."""

QC_METRICS = {
    "anat": {"cjv": HIGH, "cnr": LOW, "snr_total": LOW, "snrd_total": LOW, "efc": HIGH,
             "fber": LOW, "wm2max": BOTH, "inu_range": HIGH, "fwhm_avg": HIGH, "qi_1": HIGH,
             "icvs_csf": BOTH, "icvs_gm": BOTH, "icvs_wm": BOTH},
    "func": {"tsnr": LOW, "snr": LOW, "dvars_std": HIGH, "dvars_vstd": HIGH, "fd_mean": HIGH,
             "fd_perc": HIGH, "gcor": HIGH, "aor": HIGH, "aqi": HIGH, "gsr_x": HIGH,
             "gsr_y": HIGH, "fwhm_avg": HIGH, "efc": HIGH},
    "dwi": {"summary_fa_median": BOTH, "summary_md_median": BOTH, "fa_degenerate": HIGH,
            "fd_mean": HIGH, "bad_volumes_frac": HIGH, "dropout_slices_num": HIGH},
}
"""Metrics flagged at the group level per modality, with their bad side (``cnr_b<b>``
shells of DWI are added as ``LOW``)."""
OUTLIER_Z = 3.5
MIN_SITE_IMAGES = 5
AUTO_MIN_FLAGS = 3
AUTO_FD_MEAN_MM = 0.55
AUTO_BAD_VOLUMES_FRAC = 0.2
QC_RULES = ("auto", "none")
_DATATYPES = ("anat", "func", "dwi")
_MODALITY_ALIASES = {"anat": "anat", "t1w": "anat", "func": "func", "bold": "func",
                     "dwi": "dwi"}


@dataclasses.dataclass
class QCResult:
    """Everything the group QC produced.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per image: keys, ``modality``, ``image``, ``site``, IQMs,
        ``n_outlier_metrics``, ``outlier_metrics``, ``excluded``, ``exclusion_reason``.
    outliers : pandas.DataFrame
        One row per flagged (image, metric) with value, reference median and robust z.
    exclusions : pandas.DataFrame
        ``participant_id``, ``session_id``, ``modality``, ``task``, ``image``, ``reason``.
    notes : list of str
        Messages for the report.
    """

    table: pd.DataFrame
    outliers: pd.DataFrame
    exclusions: pd.DataFrame
    notes: list[str]


def _scalar(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def collect_iqms(output_dir: Path) -> pd.DataFrame:
    """Read every ``*_desc-iqms_*.json`` and BOLD confounds summary into one row per image."""
    output_dir = Path(output_dir)
    rows = []
    seen_confounds = set()
    for datatype in _DATATYPES:
        for pattern in (f"sub-*/{datatype}/*", f"sub-*/ses-*/{datatype}/*"):
            for path in sorted(output_dir.glob(pattern + "_desc-iqms_*.json")):
                ent = parse_entities(path.name)
                try:
                    content = json.loads(path.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise InputDataError(f"{path}: not a readable IQM JSON ({err})") from err
                row = _key_row(ent, datatype, path.name.replace("_desc-iqms", "")[:-5])
                row.update({k: float(v) for k, v in content.items() if _scalar(v)})
                if datatype == "func":
                    confounds = path.with_name(
                        path.name.replace("_desc-iqms_bold.json", "_desc-confounds_timeseries.tsv"))
                    if confounds.is_file():
                        row.update(confounds_qc(confounds))
                        seen_confounds.add(confounds)
                rows.append(row)
            for path in sorted(output_dir.glob(pattern + "_desc-confounds_timeseries.tsv")):
                if datatype == "func" and path not in seen_confounds:  # no IQM JSON (older run)
                    ent = parse_entities(path.name)
                    row = _key_row(ent, datatype, path.name.replace(
                        "_desc-confounds_timeseries.tsv", "_bold"))
                    motion = confounds_qc(path)
                    rows.append({**row, **motion, "fd_mean": motion["mean_fd_mm"]})
    columns = [*KEY_COLUMNS, "modality", "task", "run", "image", "report"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    return table[columns + [c for c in table.columns if c not in columns]]


def _key_row(ent: dict, datatype: str, image: str) -> dict:
    return {"participant_id": f"sub-{ent['sub']}",
            "session_id": f"ses-{ent['ses']}" if "ses" in ent else NO_SESSION,
            "modality": datatype, "task": ent.get("task", "n/a"), "run": ent.get("run", "n/a"),
            "image": image, "report": f"sub-{ent['sub']}.html"}


def robust_z(values: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Return modified z-scores of ``values`` against ``reference`` (median, 1.4826 MAD).

    A reference with no spread in its MAD falls back to 1.2533 x the mean absolute
    deviation (Iglewicz & Hoaglin 1993); with no spread at all every z is 0.
    """
    reference = reference[np.isfinite(reference)]
    centre = float(np.median(reference)) if reference.size else math.nan
    spread = 1.4826 * float(np.median(np.abs(reference - centre))) if reference.size else 0.0
    if spread == 0 and reference.size:
        spread = 1.2533 * float(np.mean(np.abs(reference - centre)))
    if not spread or not math.isfinite(spread):
        return np.zeros(len(values)), centre
    return (values - centre) / spread, centre


def metrics_of(table: pd.DataFrame, modality: str) -> dict[str, str]:
    """Return the flagged metrics of ``modality`` present in ``table``, with their bad side."""
    metrics = dict(QC_METRICS.get(modality, {}))
    if modality == "dwi":
        metrics.update({c: LOW for c in table.columns if c.startswith("cnr_b")})
    return {m: side for m, side in metrics.items() if m in table.columns}


def flag_outliers(table: pd.DataFrame, site_col: str = "site") -> tuple[pd.DataFrame,
                                                                         pd.DataFrame, list]:
    """Flag each image's metrics against its site (see the module docstring).

    Returns
    -------
    table : pandas.DataFrame
        ``table`` with ``n_outlier_metrics`` and ``outlier_metrics`` (comma-separated).
    outliers : pandas.DataFrame
        One row per flagged (image, metric).
    notes : list of str
    """
    table = table.copy()
    if site_col not in table.columns:
        table[site_col] = "all"
    sites = table[site_col].fillna("n/a").astype(str)
    flagged: dict[int, list[str]] = {i: [] for i in table.index}
    long_rows, notes = [], []
    for modality, group in table.groupby("modality"):
        for site in sorted(sites[group.index].unique()):
            members = group.index[sites[group.index] == site]
            pooled = len(members) < MIN_SITE_IMAGES
            reference_rows = group.index if pooled else members
            if pooled and len(group) >= MIN_SITE_IMAGES:
                notes.append(f"{modality}, site {site}: {len(members)} image(s), compared "
                             f"with all {len(group)} {modality} images")
            if len(reference_rows) < MIN_SITE_IMAGES:
                notes.append(f"{modality}: {len(group)} image(s), too few for outlier flags "
                             f"(need {MIN_SITE_IMAGES})")
                break
            for metric, side in metrics_of(group, modality).items():
                values = table.loc[members, metric].to_numpy(dtype=float)
                z, centre = robust_z(values, table.loc[reference_rows, metric].to_numpy(float))
                bad = {HIGH: z > OUTLIER_Z, LOW: z < -OUTLIER_Z,
                       BOTH: np.abs(z) > OUTLIER_Z}[side] & np.isfinite(values)
                for row, value, score in zip(members[bad], values[bad], z[bad], strict=True):
                    flagged[row].append(metric)
                    long_rows.append({**table.loc[row, [*KEY_COLUMNS, "modality", "image"]],
                                      "site": site, "metric": metric, "value": value,
                                      "reference_median": centre, "robust_z": float(score),
                                      "reference": "all sites" if pooled else "site"})
    table["n_outlier_metrics"] = [len(flagged[i]) for i in table.index]
    table["outlier_metrics"] = [",".join(flagged[i]) or "n/a" for i in table.index]
    columns = [*KEY_COLUMNS, "modality", "image", "site", "metric", "value",
               "reference_median", "robust_z", "reference"]
    return table, pd.DataFrame(long_rows, columns=columns), list(dict.fromkeys(notes))


def read_exclusion_file(path: Path) -> pd.DataFrame:
    """Read a user's exclusion TSV (``participant_id`` required)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--qc-exclude {path}: not 'auto', 'none' or an existing TSV file")
    table = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a", ""], keep_default_na=False)
    if "participant_id" not in table.columns:
        raise UsageError(f"{path}: an exclusion TSV needs a 'participant_id' column")
    table["participant_id"] = [p if p.startswith("sub-") else f"sub-{p}"
                               for p in table["participant_id"].astype(str)]
    if "modality" in table.columns:
        unknown = set(table["modality"].dropna().str.lower()) - set(_MODALITY_ALIASES)
        if unknown:
            raise UsageError(f"{path}: unknown modality {sorted(unknown)} "
                             "(use anat, func or dwi)")
    return table


def decide_exclusions(table: pd.DataFrame, rule: str | Path) -> pd.DataFrame:
    """Return the excluded images with their reasons under ``rule`` (auto, none, or a TSV)."""
    columns = [*KEY_COLUMNS, "modality", "task", "image", "reason"]
    if str(rule) == "none" or table.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    if str(rule) == "auto":
        for _, row in table.iterrows():
            reasons = []
            if row.get("n_outlier_metrics", 0) >= AUTO_MIN_FLAGS:
                reasons.append(f"outlier on {int(row['n_outlier_metrics'])} metrics "
                               f"({row['outlier_metrics']})")
            if row["modality"] == "func" and row.get("fd_mean", 0) > AUTO_FD_MEAN_MM:
                reasons.append(f"mean FD {row['fd_mean']:.2f} mm > {AUTO_FD_MEAN_MM} mm")
            if row["modality"] == "dwi" and row.get("bad_volumes_frac", 0) > AUTO_BAD_VOLUMES_FRAC:
                reasons.append(f"{100 * row['bad_volumes_frac']:.0f} % bad volumes > "
                               f"{100 * AUTO_BAD_VOLUMES_FRAC:.0f} %")
            if reasons:
                rows.append({**row[[*KEY_COLUMNS, "modality", "task", "image"]],
                             "reason": "; ".join(reasons)})
        return pd.DataFrame(rows, columns=columns)
    user = read_exclusion_file(Path(rule))
    for _, entry in user.iterrows():
        match = table["participant_id"] == entry["participant_id"]
        for column in ("session_id", "task"):
            if column in user.columns and pd.notna(entry[column]):
                match &= table[column] == entry[column]
        if "modality" in user.columns and pd.notna(entry["modality"]):
            match &= table["modality"] == _MODALITY_ALIASES[entry["modality"].lower()]
        reason = entry["reason"] if "reason" in user.columns and pd.notna(
            entry.get("reason")) else f"listed in {Path(rule).name}"
        for _, row in table[match].iterrows():
            rows.append({**row[[*KEY_COLUMNS, "modality", "task", "image"]], "reason": reason})
        if not match.any():  # a participant without IQMs: excluded everywhere
            rows.append({"participant_id": entry["participant_id"],
                         "session_id": entry.get("session_id", NO_SESSION)
                         if pd.notna(entry.get("session_id")) else NO_SESSION,
                         "modality": "all", "task": "n/a", "image": "n/a", "reason": reason})
    return pd.DataFrame(rows, columns=columns)


def _drop_rows(keys: pd.DataFrame, excluded: set) -> np.ndarray:
    return np.array([(p, s) not in excluded and (p, "*") not in excluded
                     for p, s in keys[KEY_COLUMNS].to_numpy()], dtype=bool)


def apply_exclusions(data, exclusions: pd.DataFrame):
    """Return a copy of a :class:`~brainscale.workflows.group.collect.GroupData` less exclusions.

    An excluded T1w removes its participant-session from the ``anat_*`` tables, an
    excluded BOLD run from the functional connectomes of its task, an excluded DWI
    series from the structural connectomes; ``modality == "all"`` from every set.
    """
    if exclusions.empty:
        return data

    def keys_for(modality, task=None):
        chosen = exclusions[exclusions["modality"].isin([modality, "all"])]
        if task is not None:
            chosen = chosen[chosen["task"].isin([task, "n/a"]) | (chosen["modality"] == "all")]
        return {(p, s if s != NO_SESSION or m != "all" else "*")
                for p, s, m in chosen[[*KEY_COLUMNS, "modality"]].to_numpy()}

    tables = {}
    for name, table in data.tables.items():
        excluded = keys_for("anat") if name.startswith("anat") else keys_for("none")
        tables[name] = table[_drop_rows(table, excluded)].reset_index(drop=True)
    connectomes = {}
    for name, conn in data.connectomes.items():
        task = name.split("task-")[1].split("_")[0] if "_task-" in name else None
        keep = _drop_rows(conn.subjects, keys_for(conn.modality, task))
        connectomes[name] = dataclasses.replace(
            conn, subjects=conn.subjects[keep].reset_index(drop=True), edges=conn.edges[keep],
            diagonals=conn.diagonals[keep])
    return dataclasses.replace(data, tables=tables, connectomes=connectomes)


def run_qc(output_dir: Path, participants: pd.DataFrame, *, site_col: str | None,
           rule: str | Path = "auto") -> QCResult:
    """Collect the IQMs, flag per-site outliers and decide the exclusions under ``rule``."""
    notes: list[str] = []
    table = collect_iqms(output_dir)
    if site_col and site_col in participants.columns:
        sites = participants.set_index("participant_id")[site_col]
        table.insert(table.columns.get_loc("image") + 1, "site",
                     table["participant_id"].map(sites).fillna("n/a").astype(str).to_numpy())
    else:
        table.insert(table.columns.get_loc("image") + 1, "site", "all")
        notes.append("QC outlier flags: no site column, every image compared with its modality")
    if table.empty:
        notes.append("QC: no image quality metrics found (participant level run before IQMs?)")
    table, outliers, flag_notes = flag_outliers(table, "site")
    exclusions = decide_exclusions(table, rule)
    excluded = {(r.participant_id, r.session_id, r.image) for r in exclusions.itertuples()}
    table["excluded"] = [(p, s, i) in excluded for p, s, i in
                         table[[*KEY_COLUMNS, "image"]].to_numpy()]
    reasons = {(r.participant_id, r.session_id, r.image): r.reason for r in exclusions.itertuples()}
    table["exclusion_reason"] = [reasons.get((p, s, i), "n/a") for p, s, i in
                                 table[[*KEY_COLUMNS, "image"]].to_numpy()]
    rule_text = (f"auto (flagged on >= {AUTO_MIN_FLAGS} metrics, mean FD > {AUTO_FD_MEAN_MM} "
                 f"mm, DWI bad volumes > {AUTO_BAD_VOLUMES_FRAC:.0%})"
                 if str(rule) == "auto" else str(rule))
    notes.append(f"QC exclusion rule: {rule_text}; {len(exclusions)} image(s) excluded from "
                 "every group analysis")
    return QCResult(table, outliers, exclusions, notes + flag_notes)
