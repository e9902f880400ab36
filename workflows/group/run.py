"""The group level: collect, harmonize, graph metrics, prediction and the group report.

:func:`run_group` reads the participant derivatives of ``output_dir`` and the
phenotype of ``participants.tsv`` and writes under ``output_dir/group/``::

    cohort.tsv, missing.tsv, qc.tsv          who has what, head-motion QC
    site_effects.tsv                         site-prediction accuracy before/after ComBat
    features/<set>.tsv                       tidy feature tables (one row per
    features/<set>_harmonized.tsv            participant and session), raw and ComBat
    models/combat_<set>.npz                  fitted ComBat models (ComBat.load)
    graph/<connectome>_global.tsv            global graph metrics per participant
    graph/<connectome>_nodal.tsv             nodal graph metrics (participant x node)
    prediction/, models/<set>_model-<m>.*    prediction of the target
                                             (:mod:`brainscale.workflows.group.prediction`)
    figures/*.svg, group.html                the group report
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import pandas as pd

from brainscale.errors import InputDataError
from brainscale.workflows.group.classify import infer_task, site_predictability
from brainscale.workflows.group.collect import KEY_COLUMNS
from brainscale.workflows.group.decoding import group_decoding, sites_of
from brainscale.workflows.group.graph import graph_metrics_table
from brainscale.workflows.group.harmonize import ComBat
from brainscale.workflows.group.image_evaluation import run_image_models
from brainscale.workflows.group.inputs import (
    add_head_size,
    check_models,
    collect_inputs,
    finite_rows,
    read_participants,
    row_labels,
    split_covariates,
    with_head_size,
)
from brainscale.workflows.group.phenotype import (
    read_participants_json,
    resolve_columns,
)
from brainscale.workflows.group.prediction import predict_target
from brainscale.workflows.group.qc import apply_exclusions, run_qc
from brainscale.workflows.group.qc_dashboard import render_qc_dashboard
from brainscale.workflows.group.report import (
    SiteEffect,
    plot_graph_metrics,
    plot_pca_by_site,
    render_group_report,
)
from brainscale.workflows.group.states import dynamic_state_features, render_brain_states
from brainscale.writers import write_tsv

#: The default phenotype columns: roles found through aliases, skipped with a note if absent.
DEFAULT_COLUMNS = {"harmonize_by": "site", "covariates": ("age", "sex"), "target": "diagnosis"}


def _feature_sets(data) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Return ``{name: (keys, features)}`` with features indexed by row label."""
    sets = {}
    for name, table in data.tables.items():
        sets[name] = (table[KEY_COLUMNS], table.drop(columns=KEY_COLUMNS))
    for name, conn in data.connectomes.items():
        edges = conn.edge_table()
        sets[f"{name}_edges"] = (edges[KEY_COLUMNS], edges.drop(columns=KEY_COLUMNS))
    for keys, features in sets.values():
        features.index = row_labels(keys)
    return sets


def _harmonize(name, features, covars, site_col, protected, types, group_dir, notes):
    """Fit ComBat on a feature set, save the model and return the harmonized rows (or None)."""
    usable = covars.loc[features.index, [site_col, *protected]].notna().all(axis=1)
    usable &= finite_rows(features)
    if (~usable).any():
        notes.append(
            f"{name}: {int((~usable).sum())} row(s) not harmonized "
            "(missing site, covariate or feature value)"
        )
    rows = features.loc[usable[usable].index]
    subset = covars.loc[rows.index, [site_col, *protected]]
    if subset[site_col].nunique() < 2:
        notes.append(f"{name}: fewer than two sites, ComBat skipped")
        return None
    categorical, continuous = split_covariates(covars, protected, types, notes)
    combat = ComBat(site_col, categorical_cols=categorical, continuous_cols=continuous)
    try:
        harmonized = combat.fit_transform(rows, subset)
    except InputDataError as err:  # e.g. more covariates than a small cohort supports
        notes.append(f"{name}: ComBat skipped: {err}")
        return None
    (group_dir / "models").mkdir(parents=True, exist_ok=True)
    combat.save(group_dir / "models" / f"combat_{name}.npz")
    return harmonized


def _site_effect(name, features, harmonized, covars, site_col, protected, types, seed, figures):
    """Site predictability before/after ComBat (fitted inside folds) and the PCA figure."""
    rows = features.loc[harmonized.index]
    varying = rows.std() > 0
    sites = covars.loc[rows.index, site_col]
    categorical, continuous = split_covariates(covars, protected, types, [])
    kwargs = {
        "site_col": site_col,
        "categorical": list(categorical),
        "continuous": list(continuous),
        "seed": seed,
    }
    before = site_predictability(rows.loc[:, varying], covars, harmonize=False, **kwargs)
    after = site_predictability(rows.loc[:, varying], covars, harmonize=True, **kwargs)
    figure = plot_pca_by_site(
        rows.loc[:, varying],
        harmonized.loc[:, varying],
        sites.to_numpy(),
        figures / f"sites_{name}.svg",
    )
    return SiteEffect(name, before, after, 1 / sites.nunique(), figure)


def _graph_metrics(data, group_dir, phenotype, target, threshold, n_random, seed, notes,
                   n_jobs=1):
    figures = {}
    for name, conn in data.connectomes.items():
        labels = row_labels(conn.subjects)
        global_table, nodal = graph_metrics_table(
            {label: conn.matrix(row) for row, label in enumerate(labels)},
            node_names=conn.regions,
            threshold=threshold,
            n_random=n_random,
            seed=seed,
            n_jobs=n_jobs,
        )
        keys = conn.subjects[KEY_COLUMNS].set_index(labels)
        write_tsv(keys.join(global_table), group_dir / "graph" / f"{name}_global.tsv")
        write_tsv(nodal.reset_index(), group_dir / "graph" / f"{name}_nodal.tsv")
        groups = None
        if target and infer_task(phenotype[target]) == "classification":
            groups = phenotype.reindex(conn.subjects["participant_id"])[target]
            groups.index = global_table.index
        figures[name] = plot_graph_metrics(
            global_table, groups, group_dir / "figures" / f"graph_{name}.svg"
        )
    if data.connectomes:
        notes.append(
            f"Graph metrics: weighted, proportional threshold {threshold}, negative weights "
            f"set to zero, {n_random} degree-preserving random networks for small-worldness."
        )
    return figures


def run_group(
    output_dir: Path,
    participants_tsv: Path,
    *,
    harmonize_by: str | None = "site",
    covariates: list[str],
    target: str | None,
    seed: int,
    n_permutations: int,
    device: str = "auto",
    models: Sequence[str] | None = None,
    graph_threshold: float = 0.15,
    n_random_graphs: int = 10,
    n_jobs: int = 1,
    qc_exclude: str | Path = "auto",
    explicit: Collection[str] = (),
    derivatives: Mapping[str, Path] | None = None,
    progress: bool | None = None,
    voxel_inputs: Sequence[str] = (),
    image_models: Sequence[str] = ("sfcn", "vit"),
    voxel_downsample: int = 1,
    dfc_states: int = 4,
    dfc_window: float = 44.0,
    dfc_step: float = 2.0,
) -> Path:
    """Run the group level on the participant derivatives in ``output_dir``.

    Parameters
    ----------
    output_dir : pathlib.Path
        Derivatives folder of the participant level; results go to ``output_dir/group``.
    participants_tsv : pathlib.Path
        The dataset's participants.tsv (phenotype, site).
    harmonize_by : str or None
        participants.tsv column with the batch for ComBat; None (or a column absent
        from participants.tsv) skips harmonization, with a note in the report.
    covariates : list of str
        participants.tsv columns whose effects ComBat protects (numeric: continuous).
    target : str or None
        participants.tsv column to predict (None: no prediction). Classification for
        categorical columns, regression for numeric ones with more than 10 values.
    seed : int
        Seed of every random step.
    n_permutations : int
        Label permutations of the nested CV for the p-value (scikit-learn models).
    device : str
        Torch device (``"auto"``: CUDA when available).
    models : sequence of str, optional
        Model names (default: all baselines and torch models for the task).
    graph_threshold : float
        Proportion of strongest edges kept for the graph metrics.
    n_random_graphs : int
        Random networks for small-worldness (0 to skip).
    n_jobs : int
        Processes for the graph metrics (one connectome per task) and the outer folds
        of the classifiers and their permutation tests.
    explicit : collection of str
        Which of ``"harmonize_by"``, ``"covariates"``, ``"target"`` the user gave (a value
        other than :data:`DEFAULT_COLUMNS`' always counts as given). The others are
        defaults, found through column aliases and participants.json
        (:func:`~brainscale.workflows.group.phenotype.resolve_columns`) and skipped with a note when
        absent; an explicit column that is absent raises ``UsageError`` (exit 64).
    derivatives : mapping of str to pathlib.Path, optional
        Other pipelines' derivatives (``--derivatives NAME=PATH``), read by
        :func:`~brainscale.workflows.group.external.read_external_derivatives`.
    progress : bool or None
        Progress bars of the permutation tests (``None``: on a terminal only).
    voxel_inputs : sequence of str
        Kinds of MNI-space maps for the image models (``--voxel-inputs``, e.g. ``gm``,
        ``zmap:desc=faces``; see :data:`~brainscale.workflows.group.voxel_inputs.VOXEL_KINDS`);
        empty: no image model is trained.
    image_models : sequence of {"sfcn", "vit"}
        Image models trained on each kind of map (``--image-models``).
    voxel_downsample : int
        Block-average factor of the maps (2: 2 mm -> 4 mm).
    dfc_states, dfc_window, dfc_step : int, float, float
        Dynamic connectivity states (k; 0 skips), sliding-window length and step (s)
        (:mod:`brainscale.workflows.group.states`).

    qc_exclude : str or pathlib.Path
        ``--qc-exclude``: ``auto``, ``none`` or a TSV of exclusions
        (:func:`~brainscale.workflows.group.qc.decide_exclusions`); every group analysis runs on the
        images it keeps.

    Returns
    -------
    pathlib.Path
        The group report ``output_dir/group/group.html``.
    """
    output_dir = Path(output_dir)
    group_dir = output_dir / "group"
    notes: list[str] = []
    participants = read_participants(participants_tsv)
    meta, meta_notes = read_participants_json(Path(participants_tsv).with_suffix(".json"))
    given = {"harmonize_by": harmonize_by, "covariates": tuple(covariates), "target": target}
    explicit = set(explicit) | {k for k, v in given.items() if v and v != DEFAULT_COLUMNS[k]}
    columns = resolve_columns(
        participants,
        meta,
        harmonize_by=harmonize_by,
        covariates=covariates,
        target=target,
        explicit=explicit,
    )
    notes += meta_notes + columns.notes
    site_col, covariates, target = columns.site, columns.covariates, columns.target
    if harmonize_by and site_col is None:
        notes.append("no site column: ComBat and the site-effect estimates skipped")
    check_models(models)
    data = collect_inputs(output_dir, participants, derivatives or {}, notes)
    phenotype = participants.set_index("participant_id")
    cohort = data.subjects.merge(participants, on="participant_id", how="left")
    write_tsv(cohort, group_dir / "cohort.tsv")
    write_tsv(data.missing, group_dir / "missing.tsv")
    quality = run_qc(output_dir, participants, site_col=site_col, rule=qc_exclude)
    notes += quality.notes
    write_tsv(quality.table, group_dir / "qc.tsv")  # one row per image, every IQM
    write_tsv(quality.outliers, group_dir / "qc_outliers.tsv")
    write_tsv(quality.exclusions, group_dir / "qc_exclusions.tsv")
    data = apply_exclusions(data, quality.exclusions)
    if columns.descriptions:
        notes.append(
            "participants.json: "
            + "; ".join(f"{c}: {d}" for c, d in columns.descriptions.items())
        )

    sets = _feature_sets(data)
    state_tables, state_figures = ({}, []) if not dfc_states else dynamic_state_features(
        output_dir, group_dir, n_states=dfc_states, window_s=dfc_window, step_s=dfc_step,
        seed=seed, notes=notes)
    for name, table in state_tables.items():
        sets[name] = (table[KEY_COLUMNS],
                      table.drop(columns=KEY_COLUMNS).set_index(row_labels(table)))
    decoded = group_decoding(output_dir, group_dir, sites=sites_of(cohort, harmonize_by),
                             n_permutations=n_permutations, seed=seed, notes=notes)
    states_html = render_brain_states(state_tables, state_figures, decoded)
    covars = cohort.set_index(row_labels(cohort))
    head_size = add_head_size(data, covars, notes)
    types = {"categorical": columns.categorical, "continuous": columns.continuous}
    if head_size:
        types["continuous"] = [*types["continuous"], head_size]
    protected = [c for c in dict.fromkeys([*covariates, *([target] if target else [])])]
    site_effects = []
    for name, (keys, features) in sets.items():
        write_tsv(
            keys.join(features.reset_index(drop=True)), group_dir / "features" / f"{name}.tsv"
        )
        if site_col is None:
            continue
        these = with_head_size(name, protected, head_size)
        harmonized = _harmonize(name, features, covars, site_col, these, types, group_dir, notes)
        if harmonized is not None:
            table = keys.set_index(features.index).loc[harmonized.index].join(harmonized)
            write_tsv(table, group_dir / "features" / f"{name}_harmonized.tsv")
            try:
                site_effects.append(
                    _site_effect(
                        name,
                        features,
                        harmonized,
                        covars,
                        site_col,
                        these,
                        types,
                        seed,
                        group_dir / "figures",
                    )
                )
            except ValueError as err:  # cross-validation needs more participants
                notes.append(f"{name}: site predictability not estimated: {err}")
    if site_effects:
        table = pd.DataFrame([vars(effect) for effect in site_effects]).drop(columns="figure")
        write_tsv(table.rename(columns={"name": "feature_set"}), group_dir / "site_effects.tsv")
    graph_figures = _graph_metrics(
        data, group_dir, phenotype, target, graph_threshold, n_random_graphs, seed, notes,
        n_jobs,
    )
    summaries = []
    if target:
        summaries = predict_target(
            sets,
            covars,
            target=target,
            site_col=site_col,
            protected=[c for c in covariates if c != target],
            models=models,
            types=types,
            head_size=head_size,
            seed=seed,
            n_permutations=n_permutations,
            device=device,
            group_dir=group_dir,
            notes=notes,
            n_jobs=n_jobs,
            progress=progress,
        )
    if target and voxel_inputs:
        summaries += run_image_models(
            output_dir, covars, target, voxel_inputs=voxel_inputs, models=image_models,
            site_col=site_col, covariates=[c for c in covariates if c != target],
            harmonize="combat" if site_col else "none", downsample=voxel_downsample,
            seed=seed, device=device, notes=notes)
    return render_group_report(
        group_dir / "group.html",
        cohort=cohort,
        missing=data.missing,
        site_effects=site_effects,
        graph_figures=graph_figures,
        classifiers=summaries,
        notes=notes,
        qc_dashboard=render_qc_dashboard(quality, group_dir / "figures"),
        brain_states=states_html,
    )
