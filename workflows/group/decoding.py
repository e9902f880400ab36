"""Decoding task conditions across participants, and across runs within participants.

Reads the participant-level patterns (``func/*_atlas-<A>_desc-<lss|block>_patterns.tsv``,
one row per trial or block) and writes under ``group/decoding/``::

    task-<T>_atlas-<A>_desc-<kind>_cv-<scheme>_metrics.tsv    one row per model
    task-<T>_atlas-<A>_desc-<kind>_cv-<scheme>_model-<m>_confusion.tsv
    sub-<S>_task-<T>_atlas-<A>_desc-<kind>_cv-loro_metrics.tsv  participants with runs >= 2

Across participants the schemes are leave-one-participant-out (``lopo``) and, when
participants.tsv has several sites, leave-one-site-out (``loso``); beyond 10 participants
(sites) they are left out in 10 folds. Every feature is
z-scored within participant first (patterns are compared across brains by their
relative, not absolute, amplitudes; Haxby et al. 2011 align them further). The
permutation test shuffles block labels within participants. Within a participant with
several runs of a task, the runs are left out one at a time (``loro``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.workflows.func import decoding_models
from brainscale.workflows.func.decoding import Patterns, concat_patterns, time_respecting_folds
from brainscale.workflows.group.collect import parse_entities
from brainscale.writers import write_tsv

MAX_GROUP_FOLDS = 10
"""Cohorts of more participants (or sites) leave groups out 10-fold, not one at a time."""
RUN_BLOCK_OFFSET = 100000
"""Block numbers of run k are offset by k times this (blocks stay unique per participant)."""


def find_patterns(output_dir: Path) -> dict[tuple[str, str, str], dict[str, list[Path]]]:
    """Pattern tables by (task, atlas, kind), then by participant (one path per run)."""
    found: dict = defaultdict(lambda: defaultdict(list))
    for pattern in ("sub-*/func/*_patterns.tsv", "sub-*/ses-*/func/*_patterns.tsv"):
        for path in sorted(Path(output_dir).glob(pattern)):
            ent = parse_entities(path.name)
            if "atlas" in ent and "desc" in ent:
                found[(ent.get("task", "task"), ent["atlas"], ent["desc"])][
                    f"sub-{ent['sub']}"].append(path)
    return found


def _zscore(values: np.ndarray) -> np.ndarray:
    spread = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def cohort_patterns(paths: dict[str, list[Path]]) -> tuple[Patterns, np.ndarray]:
    """Stack participants' patterns on their shared features and conditions.

    Returns
    -------
    Patterns, numpy.ndarray
        ``runs`` holds the participant index (so permutations stay within participants),
        and the participant label of every row.
    """
    tables = {sub: pd.concat([pd.read_csv(p, sep="\t").assign(run=k)
                              for k, p in enumerate(files)], ignore_index=True)
              for sub, files in sorted(paths.items())}
    features = None
    conditions = None
    for table in tables.values():
        names = [c for c in table.columns if c not in ("run", "onset", "block", "trial_type")]
        features = names if features is None else [f for f in features if f in set(names)]
        present = set(table["trial_type"].astype(str))
        conditions = present if conditions is None else conditions & present
    parts, subjects = [], []
    for index, (sub, table) in enumerate(tables.items()):
        table = table[table["trial_type"].astype(str).isin(conditions)]
        blocks = table["block"].to_numpy() + RUN_BLOCK_OFFSET * table["run"].to_numpy()
        parts.append(Patterns(_zscore(table[features].to_numpy(dtype=float)),
                              table["trial_type"].astype(str).to_numpy(),
                              table["onset"].to_numpy(dtype=float),
                              np.full(len(table), index), blocks, list(features)))
        subjects += [sub] * len(table)
    return concat_patterns(parts), np.asarray(subjects)


def group_folds(groups: np.ndarray, max_folds: int = MAX_GROUP_FOLDS
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Leave-one-group-out folds; beyond ``max_folds`` groups, groups left out ``max_folds``-fold.

    Groups are assigned to folds in sorted order, round robin, so that the folds are
    deterministic and balanced in size (scikit-learn's ``GroupKFold`` idea).
    """
    unique = np.unique(groups)
    fold_of = {g: k % max_folds for k, g in enumerate(unique)}
    codes = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(codes != k), np.flatnonzero(codes == k))
            for k in range(min(len(unique), max_folds))]


def _write(frame: pd.DataFrame, path: Path) -> None:
    """Write a decoding table (6 significant digits) atomically."""
    write_tsv(frame, path, float_format="%.6g")


def _evaluate(patterns, folds, models, n_permutations, seed, stem, out_dir) -> pd.DataFrame:
    results = [decoding_models.evaluate_decoder(
        patterns, decoding_models.build_classifier(m, seed), folds, model=m,
        n_permutations=n_permutations, seed=seed) for m in models]
    for result in results:
        _write(decoding_models.confusion_frame(result),
               out_dir / f"{stem}_model-{result.model}_confusion.tsv")
    metrics = pd.DataFrame([r.summary() for r in results])
    _write(metrics, out_dir / f"{stem}_metrics.tsv")
    return metrics


def group_decoding(output_dir: Path, group_dir: Path, *, sites: pd.Series | None = None,
                   models=decoding_models.MODELS, n_permutations: int = 100, seed: int = 0,
                   notes: list[str] | None = None) -> pd.DataFrame:
    """Decode conditions across participants (and across runs within participants).

    Parameters
    ----------
    output_dir : pathlib.Path
        Participant derivatives.
    group_dir : pathlib.Path
        Where ``decoding/`` is written.
    sites : pandas.Series, optional
        Site per ``participant_id`` (index); several sites add leave-one-site-out.
    models : sequence of str
        Among ``linsvm``, ``logreg``, ``rf``.
    n_permutations : int
        Block permutations within participants.
    seed : int
        Seed of the permutations and forests.
    notes : list of str, optional
        Receives what could not be decoded and why.

    Returns
    -------
    pandas.DataFrame
        Every metrics row with ``task``, ``atlas``, ``patterns``, ``cv`` and ``scope``.
    """
    notes = notes if notes is not None else []
    out_dir = Path(group_dir) / "decoding"
    rows = []
    for (task, atlas, kind), paths in sorted(find_patterns(output_dir).items()):
        stem = f"task-{task}_atlas-{atlas}_desc-{kind}"
        for sub, files in paths.items():
            if len(files) < 2:
                continue
            patterns, _ = cohort_patterns({sub: files})
            patterns.runs = patterns.blocks // RUN_BLOCK_OFFSET
            metrics = _evaluate(patterns, time_respecting_folds(patterns), models,
                                n_permutations, seed, f"{sub}_{stem}_cv-loro", out_dir)
            rows.append(metrics.assign(task=task, atlas=atlas, patterns=kind, cv="loro",
                                       scope=sub))
        if len(paths) < 2:
            notes.append(f"{stem}: decoding across participants needs two participants")
            continue
        patterns, subjects = cohort_patterns(paths)
        if len(np.unique(patterns.labels)) < 2:
            notes.append(f"{stem}: fewer than two conditions shared by every participant")
            continue
        schemes = {"lopo": subjects}
        if sites is not None:
            site_of = sites.reindex(subjects).to_numpy()
            if pd.notna(site_of).all() and len(set(site_of)) >= 2:
                schemes["loso"] = site_of.astype(str)
        for cv, groups in schemes.items():
            metrics = _evaluate(patterns, group_folds(groups), models, n_permutations, seed,
                                f"{stem}_cv-{cv}", out_dir)
            rows.append(metrics.assign(task=task, atlas=atlas, patterns=kind, cv=cv,
                                       scope="group"))
    if not rows:
        return pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    _write(table, out_dir / "summary.tsv")
    return table


def sites_of(cohort: pd.DataFrame, column: str | None) -> pd.Series | None:
    """Site of every ``participant_id`` from the cohort table (None without the column)."""
    if not column or column not in cohort.columns:
        return None
    return cohort.drop_duplicates("participant_id").set_index("participant_id")[column]
