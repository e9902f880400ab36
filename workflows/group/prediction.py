"""Prediction of a phenotype column from every feature set (the group level's last step).

:func:`predict_target` runs the nested cross-validation of every model on every
feature set (:func:`~brainscale.workflows.group.classify.evaluate_model`) and writes under
``group/``::

    prediction/<set>_model-<m>_*.tsv         metrics, predictions, confusion, ROC,
                                             top features; summary.tsv for all
    models/<set>_model-<m>.joblib (+ .pt)    final models refitted on every row
    figures/prediction_<set>_model-<m>.svg   the evaluation figure
"""

from __future__ import annotations

from pathlib import Path

import joblib
import pandas as pd

from brainscale.derivatives import atomic_write
from brainscale.workflows.group.classify import (
    CLASSIFIERS,
    REGRESSORS,
    ModelEvaluation,
    evaluate_model,
    infer_task,
)
from brainscale.workflows.group.inputs import finite_rows, split_covariates, with_head_size
from brainscale.workflows.group.models import save_torch_model
from brainscale.workflows.group.report import ClassifierSummary, plot_evaluation
from brainscale.writers import write_tsv

TORCH_MODELS = ("mlp", "brainnetcnn")
"""Models written with torch (``.pt`` beside the ``.joblib``); no permutation test."""
DEFAULT_MODELS = {
    "classification": ("logreg", "linsvm", "rf", "mlp", "brainnetcnn"),
    "regression": ("ridge", "linsvr", "rf", "mlp", "brainnetcnn"),
}
"""Models evaluated per task when ``--models`` is not given."""


def save_evaluation(evaluation: ModelEvaluation, stem: str, group_dir: Path) -> str:
    """Write an evaluation's tables, final model and figure; return the figure name."""
    out = group_dir / "prediction"
    metrics = evaluation.metrics.assign(permutation_p=evaluation.p_value, cv=evaluation.cv)
    write_tsv(metrics, out / f"{stem}_metrics.tsv")
    write_tsv(evaluation.predictions, out / f"{stem}_predictions.tsv", index=True)
    write_tsv(evaluation.top_features, out / f"{stem}_features.tsv")
    if evaluation.confusion is not None:
        write_tsv(evaluation.confusion, out / f"{stem}_confusion.tsv", index=True)
    if evaluation.roc is not None:
        write_tsv(evaluation.roc, out / f"{stem}_roc.tsv")
    models = group_dir / "models"
    with atomic_write(models / f"{stem}.joblib", "wb") as handle:
        joblib.dump(evaluation.final_model, handle)
    if evaluation.model in TORCH_MODELS:
        save_torch_model(evaluation.final_model.named_steps["model"], models / f"{stem}.pt")
    return plot_evaluation(
        evaluation.roc,
        evaluation.confusion,
        evaluation.predictions,
        evaluation.top_features,
        group_dir / "figures" / f"prediction_{stem}.svg",
    )


MIN_PARTICIPANTS_FOR_PREDICTION = 10
"""Below this cohort size, cross-validated prediction is not attempted (noted in the report)."""


def predict_target(
    sets,
    covars,
    *,
    target,
    site_col,
    protected,
    models,
    types,
    head_size,
    seed,
    n_permutations,
    device,
    group_dir,
    notes,
    n_jobs: int = 1,
    progress: bool | None = None,
):
    """Evaluate every model on every feature set; write the tables, models and figures.

    Parameters
    ----------
    sets : dict
        ``{name: (keys, features)}``, features indexed by row label.
    covars : pandas.DataFrame
        Phenotype and covariates by row label.
    target, site_col : str
        Column to predict; batch column of the in-fold ComBat (None: no harmonization).
    protected : list of str
        Covariates protected by the in-fold ComBat.
    models : sequence of str or None
        ``--models`` (None: :data:`DEFAULT_MODELS` of the task).
    types : dict
        Covariate types, ``{"categorical": [...], "continuous": [...]}``.
    head_size : str or None
        Head-size covariate added to the protected covariates of anatomical feature sets.
    seed, n_permutations, device
        As in :func:`~brainscale.workflows.group.classify.evaluate_model`.
    group_dir : pathlib.Path
        ``output_dir/group``.
    notes : list of str
        Report notes, appended to.
    n_jobs, progress
        As in :func:`~brainscale.workflows.group.classify.evaluate_model`.

    Returns
    -------
    list of ClassifierSummary
        One per model and feature set evaluated (empty when prediction is skipped).
    """
    task = infer_task(covars[target])
    valid = CLASSIFIERS if task == "classification" else REGRESSORS
    if models and not set(models) & set(valid):
        notes.append(f"--models {list(models)}: none is a {task} model; prediction skipped")
        return []
    if models and set(models) - set(valid):
        notes.append(f"--models: {sorted(set(models) - set(valid))} skipped (not {task} models)")
    summaries, rows = [], []
    labelled = int(covars[target].notna().sum())
    if labelled < MIN_PARTICIPANTS_FOR_PREDICTION:
        notes.append(
            f"prediction of {target!r} skipped: {labelled} participant(s) with a value, "
            f"fewer than {MIN_PARTICIPANTS_FOR_PREDICTION} (nested cross-validation needs more)"
        )
        return summaries
    for set_name, (keys, features) in sets.items():
        first_session = ~keys["participant_id"].duplicated().to_numpy()
        if not first_session.all():
            notes.append(f"{set_name}: first session of each participant used for prediction")
        finite = finite_rows(features).to_numpy()
        if not finite.all():
            notes.append(f"{set_name}: {int((~finite).sum())} row(s) with missing values dropped")
        X = features.loc[first_session & finite]
        X = X.loc[:, X.std() > 0]
        these = with_head_size(set_name, protected, head_size)
        categorical, continuous = split_covariates(covars, these, types, notes)
        for model in [m for m in models if m in valid] if models else DEFAULT_MODELS[task]:
            if model == "brainnetcnn" and not set_name.endswith("_edges"):
                continue
            is_torch = model in TORCH_MODELS
            evaluation = evaluate_model(
                X,
                covars.loc[X.index, target],
                covars=covars,
                model=model,
                task=task,
                site_col=site_col,
                categorical=list(categorical),
                continuous=list(continuous),
                harmonize=site_col is not None,
                seed=seed,
                n_permutations=0 if is_torch else n_permutations,
                device=device,
                n_jobs=n_jobs,
                progress=progress,
            )
            if is_torch and n_permutations:
                evaluation.notes.append("permutation test not run for torch models (cost)")
            stem = f"{set_name}_model-{model}"
            figure = save_evaluation(evaluation, stem, group_dir)
            summaries.append(
                ClassifierSummary(
                    set_name,
                    model,
                    task,
                    evaluation.cv,
                    evaluation.metrics,
                    evaluation.p_value,
                    figure,
                    evaluation.notes,
                )
            )
            for _, m in evaluation.metrics.iterrows():
                rows.append(
                    {
                        "feature_set": set_name,
                        "model": model,
                        "cv": evaluation.cv,
                        **m.to_dict(),
                        "permutation_p": evaluation.p_value,
                    }
                )
    write_tsv(pd.DataFrame(rows), group_dir / "prediction" / "summary.tsv")
    return summaries
