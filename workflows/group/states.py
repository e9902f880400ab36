"""Dynamic connectivity states across the cohort (Allen et al. 2014) and their metrics.

Reads every participant's denoised parcel time series
(``func/*_atlas-<A>_timeseries.tsv``; censored volumes are ``n/a``), computes tapered
sliding-window correlations (:mod:`brainscale.workflows.func.dynamic_connectivity`), clusters the
windows of the whole cohort into k states per task and atlas, and writes under
``group/states/``::

    task-<T>_atlas-<A>_meas-PearsonCorrelation_desc-state<k>_relmat.tsv   centroids (r)
    task-<T>_atlas-<A>_states.tsv (+ .json)     one row per participant and session:
                                                fractional occupancy, mean dwell time (s),
                                                transition probabilities, transitions
    sub-<S>[_ses-<X>]_task-<T>[_run-<R>]_atlas-<A>_desc-states_timeseries.tsv
                                                the state of every window
    ../figures/task-<T>_atlas-<A>_states.svg    the centroids

The per-participant table is a group feature set (``func_task-<T>_atlas-<A>_states``),
so it is harmonized, compared and classified like the connectomes.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainscale.errors import InputDataError
from brainscale.workflows.func import dynamic_connectivity as dfc
from brainscale.workflows.group.collect import KEY_COLUMNS, NO_SESSION, parse_entities
from brainscale.writers import write_text, write_tsv

_PREFIX = re.compile(r"^(.*?)_atlas-")


@dataclass
class StateRun:
    """One run's parcel time series and where it comes from."""

    key: tuple[str, str]
    task: str
    atlas: str
    path: Path
    tr: float


def _repetition_time(path: Path) -> float | None:
    """RepetitionTime of a time-series file: its sidecar, else the run's preproc BOLD sidecar."""
    candidates = [path.with_name(path.name.replace(".tsv", ".json"))]
    match = _PREFIX.match(path.name)
    if match:
        candidates += sorted(path.parent.glob(f"{match.group(1)}_*desc-preproc_bold.json"))
    for candidate in candidates:
        if candidate.is_file():
            tr = json.loads(candidate.read_text()).get("RepetitionTime")
            if tr:
                return float(tr)
    return None


def find_state_runs(output_dir: Path, notes: list[str]) -> dict[tuple[str, str], list[StateRun]]:
    """Denoised parcel time series of every participant, by (task, atlas)."""
    found: dict[tuple[str, str], list[StateRun]] = defaultdict(list)
    for pattern in ("sub-*/func/*_timeseries.tsv", "sub-*/ses-*/func/*_timeseries.tsv"):
        for path in sorted(Path(output_dir).glob(pattern)):
            ent = parse_entities(path.name)
            if "atlas" not in ent or "desc" in ent or "meas" in ent:
                continue
            tr = _repetition_time(path)
            if tr is None:
                notes.append(f"{path.name}: no RepetitionTime found, left out of the states")
                continue
            key = (f"sub-{ent['sub']}", f"ses-{ent['ses']}" if "ses" in ent else NO_SESSION)
            found[(ent.get("task", "rest"), ent["atlas"])].append(
                StateRun(key, ent.get("task", "rest"), ent["atlas"], path, tr))
    return found


def _metrics_row(sequences: list[np.ndarray], n_states: int, step_s: float) -> dict[str, float]:
    """State metrics of a participant, averaged over its runs (weighted by windows)."""
    weights = np.array([len(s) for s in sequences], dtype=float)
    per_run = [dfc.state_metrics(s, n_states, step_s) for s in sequences]
    mean = {name: np.average([m[name] for m in per_run], axis=0, weights=weights)
            for name in ("fractional_occupancy", "mean_dwell_time_s", "transition_probability")}
    row = {"n_windows": float(weights.sum()),
           "n_transitions": float(sum(m["n_transitions"] for m in per_run))}
    for k in range(n_states):
        row[f"fractional_occupancy_state{k + 1}"] = mean["fractional_occupancy"][k]
    for k in range(n_states):
        row[f"mean_dwell_time_s_state{k + 1}"] = mean["mean_dwell_time_s"][k]
    for i in range(n_states):
        for j in range(n_states):
            row[f"transition_state{i + 1}_to_state{j + 1}"] = mean["transition_probability"][i, j]
    return row


def _write_states_tsv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a state table (6 significant digits) atomically."""
    return write_tsv(frame, path, float_format="%.6g")


def cohort_states(
    runs: list[StateRun], *, n_states: int = dfc.N_STATES, window_s: float = dfc.WINDOW_S,
    step_s: float = dfc.STEP_S, taper_sigma_s: float = dfc.TAPER_SIGMA_S, seed: int = 0,
    notes: list[str] | None = None,
) -> tuple[list[str], dfc.StateModel, list[StateRun], list[np.ndarray], pd.DataFrame]:
    """Windowed connectivity of every run, cohort k-means, per-participant metrics.

    Parameters
    ----------
    runs : list of StateRun
        One task and atlas.
    n_states, window_s, step_s, taper_sigma_s, seed
        See :mod:`brainscale.workflows.func.dynamic_connectivity`.
    notes : list of str, optional
        Receives a line per run left out (too short).

    Returns
    -------
    regions, model, used_runs, centres, table
        Region names, the fitted states, the runs clustered, their window centres (s)
        and the metrics table (key columns first).

    Raises
    ------
    InputDataError
        When the runs have different regions or no run is long enough.
    """
    notes = notes if notes is not None else []
    regions, edges, used, centres = None, [], [], []
    for run in runs:
        table = pd.read_csv(run.path, sep="\t", na_values=["n/a"])
        if regions is None:
            regions = list(table.columns)
        elif list(table.columns) != regions:
            raise InputDataError(f"{run.path}: regions differ from the other participants'")
        try:
            times, matrices = dfc.sliding_window_connectivity(
                table.to_numpy(dtype=float), run.tr, window_s=window_s, step_s=step_s,
                taper_sigma_s=taper_sigma_s)
        except ValueError as err:
            notes.append(f"{run.path.name}: {err}; left out of the states")
            continue
        edges.append(dfc.window_edges(matrices))
        used.append(run)
        centres.append(times)
    if not used:
        raise InputDataError("no run is long enough for one sliding window")
    model = dfc.cluster_states(edges, n_states=n_states, seed=seed)
    by_key: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for run, sequence in zip(used, model.sequences, strict=True):
        by_key[run.key].append(sequence)
    actual_step = max(int(round(step_s / used[0].tr)), 1) * used[0].tr
    rows = [{**dict(zip(KEY_COLUMNS, key, strict=True)),
             **_metrics_row(by_key[key], n_states, actual_step)} for key in sorted(by_key)]
    return regions, model, used, centres, pd.DataFrame(rows)


def write_states(group_dir: Path, *, task: str, atlas: str, regions: list[str],
                 model: dfc.StateModel, runs: list[StateRun], centres: list[np.ndarray],
                 table: pd.DataFrame, parameters: dict) -> dict[str, Path]:
    """Write the centroids, the metrics table, the state sequences and the figure."""
    from brainscale.workflows.func.connectivity import relmat_frame
    from brainscale.workflows.func.figures_decoding import plot_state_centroids

    states_dir = Path(group_dir) / "states"
    stem = f"task-{task}_atlas-{atlas}"
    written = {}
    matrices = []
    for k, centroid in enumerate(model.centroids):
        matrix = np.tanh(dfc.edges_to_matrix(centroid, len(regions), diagonal=np.inf))
        matrices.append(matrix)
        written[f"state{k + 1}"] = _write_states_tsv(
            relmat_frame(matrix, regions),
            states_dir / f"{stem}_meas-PearsonCorrelation_desc-state{k + 1}_relmat.tsv")
    written["table"] = _write_states_tsv(table, states_dir / f"{stem}_states.tsv")
    write_text(json.dumps(parameters, indent=2), states_dir / f"{stem}_states.json")
    for run, sequence, times in zip(runs, model.sequences, centres, strict=True):
        name = run.path.name.replace(f"_atlas-{atlas}_timeseries.tsv",
                                     f"_atlas-{atlas}_desc-states_timeseries.tsv")
        _write_states_tsv(pd.DataFrame({"window_center_s": times, "state": sequence + 1}),
                   states_dir / name)
    occupancy = np.bincount(np.concatenate(model.sequences), minlength=model.n_states)
    (Path(group_dir) / "figures").mkdir(parents=True, exist_ok=True)
    written["figure"] = Path(plot_state_centroids(
        matrices, occupancy / occupancy.sum(), Path(group_dir) / "figures" / f"{stem}_states.svg"))
    return written


def dynamic_state_features(
    output_dir: Path, group_dir: Path, *, n_states: int = dfc.N_STATES,
    window_s: float = dfc.WINDOW_S, step_s: float = dfc.STEP_S,
    taper_sigma_s: float = dfc.TAPER_SIGMA_S, seed: int = 0, notes: list[str] | None = None,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Run the cohort states for every task and atlas; return the metrics feature tables.

    Returns
    -------
    dict, list
        ``{"func_task-<T>_atlas-<A>_states": table}`` (key columns, then metrics) and the
        state figures.
    """
    notes = notes if notes is not None else []
    tables, figures = {}, []
    for (task, atlas), runs in sorted(find_state_runs(output_dir, notes).items()):
        try:
            regions, model, used, centres, table = cohort_states(
                runs, n_states=n_states, window_s=window_s, step_s=step_s,
                taper_sigma_s=taper_sigma_s, seed=seed, notes=notes)
        except (InputDataError, ValueError) as err:
            notes.append(f"task-{task} atlas-{atlas}: no connectivity states ({err})")
            continue
        parameters = {
            "Method": "tapered sliding-window Pearson correlation, k-means of Fisher-z "
                      "windows across the cohort, exemplar initialisation (Allen et al. 2014)",
            "WindowLength": window_s, "WindowStep": step_s, "TaperSigma": taper_sigma_s,
            "Units": {"WindowLength": "s", "WindowStep": "s", "TaperSigma": "s",
                      "mean_dwell_time_s": "s"},
            "NumberOfStates": n_states, "NumberOfRuns": len(used),
            "StateOrder": "by decreasing occupancy over the cohort",
            "Sources": [str(r.path.relative_to(output_dir)) for r in used],
        }
        written = write_states(group_dir, task=task, atlas=atlas, regions=regions,
                               model=model, runs=used, centres=centres, table=table,
                               parameters=parameters)
        figures.append(str(written["figure"]))
        tables[f"func_task-{task}_atlas-{atlas}_states"] = table
    return tables, figures


def render_brain_states(state_tables: dict[str, pd.DataFrame], figures: list[str],
                        decoded: pd.DataFrame) -> str:
    """HTML of the group report's brain-states section (empty when there is nothing)."""
    import html

    parts = []
    if not decoded.empty:
        columns = ["task", "atlas", "patterns", "cv", "scope", "model", "balanced_accuracy",
                   "chance", "permutation_p", "n_folds", "n_samples"]
        parts.append("<h3>Decoding task conditions</h3><p>lopo/loso: leave one participant/"
                     "site out (features z-scored within participant); loro: leave one run "
                     "out within a participant. Permutations shuffle block labels within "
                     "participants.</p>" + decoded[columns].to_html(index=False,
                                                                  float_format="%.3f"))
    for (name, table), figure in zip(state_tables.items(), figures, strict=True):
        occupancy = table.filter(like="fractional_occupancy").mean().rename("mean")
        parts.append(f"<h3>{html.escape(name)}</h3><p>Connectivity states (k-means of tapered "
                     f"sliding-window correlations across {len(table)} participant-sessions, "
                     "Allen et al. 2014); centroids in group/states/.</p>"
                     f"<img src='figures/{html.escape(Path(figure).name)}' alt='{name}'>"
                     + occupancy.to_frame().to_html(float_format="%.3f"))
    return "".join(parts)
