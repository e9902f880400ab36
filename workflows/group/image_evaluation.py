"""Nested, site-aware cross-validation of the image models, and their group outputs.

:func:`evaluate_image_model` scores an SFCN or ViT (:mod:`brainscale.workflows.group.image_models`)
with the outer splits, inner search and metrics of :mod:`brainscale.workflows.group.classify`
(leave-one-site-out with 3 or more sites). Harmonization is fitted on the training rows
of each fold only: ``"combat"`` runs :class:`~brainscale.workflows.group.classify_combat.FoldComBat`
on the voxels (the values must fit in RAM); ``"intensity"`` z-scores each image inside
the mask (nothing is learnt, so nothing can leak) and reads mini-batches straight from
the memory map. The final model, refitted on every row, gives the saliency maps
(:mod:`brainscale.workflows.group.saliency`).

:func:`run_image_models` is the group level's hook: it gathers each requested kind of
MNI-space map (:mod:`brainscale.workflows.group.voxel_inputs`) and writes, under ``group/``::

    voxels/<kind>.npy (+ _mask.nii.gz, _rows.tsv, .json)     the memory-mapped inputs
    image_models/<kind>_model-<m>_{metrics,predictions,confusion,roc}.tsv
    image_models/<kind>_model-<m>_space-MNI152NLin2009aSym_stat-<map>_statmap.nii.gz
    models/<kind>_model-<m>.pt                               the final network
    figures/image_<kind>_model-<m>.svg                       shown in group.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from brainscale.errors import InputDataError
from brainscale.resources import TEMPLATE_SPACE
from brainscale.workflows.group.classify import infer_task
from brainscale.workflows.group.classify_combat import FoldComBat
from brainscale.workflows.group.classify_cv import nested_predictions, outer_splits
from brainscale.workflows.group.classify_metrics import classification_metrics, regression_metrics
from brainscale.workflows.group.classify_search import InnerSplits, NestedGridSearch, routing
from brainscale.workflows.group.image_models import IMAGE_MODELS, save_image_model
from brainscale.workflows.group.report import ClassifierSummary, plot_evaluation
from brainscale.workflows.group.saliency import (
    attention_rollout,
    gradient_x_input,
    plot_maps,
    write_stat_map,
)
from brainscale.workflows.group.voxel_inputs import (
    VoxelData,
    find_voxel_maps,
    gather_voxel_maps,
    parse_voxel_kind,
)
from brainscale.writers import write_tsv

HARMONIZATIONS = ("combat", "intensity", "none")
#: Largest voxel matrix (GB of float32) that ``harmonize="combat"`` loads into RAM.
MAX_IN_MEMORY_GB = 4.0


@dataclass
class ImageModelEvaluation:
    """What :func:`evaluate_image_model` found (tables as in :class:`ModelEvaluation`)."""

    model: str
    task: str
    cv: str
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    confusion: pd.DataFrame | None
    roc: pd.DataFrame | None
    final_model: Pipeline
    maps: dict[str, nib.Nifti1Image]
    notes: list[str] = field(default_factory=list)


def evaluate_image_model(
    data: VoxelData,
    target: pd.Series,
    *,
    covars: pd.DataFrame,
    model: str = "sfcn",
    task: str | None = None,
    site_col: str | None = None,
    covariates=(),
    harmonize: str = "combat",
    leave_site_out: bool = True,
    seed: int = 0,
    device: str = "auto",
    params: dict | None = None,
    param_grid: dict | None = None,
    n_bootstrap: int = 1000,
    max_in_memory_gb: float = MAX_IN_MEMORY_GB,
) -> ImageModelEvaluation:
    """Score an image model that predicts ``target`` with nested cross-validation.

    Parameters
    ----------
    data : VoxelData
        The maps (rows labelled by :attr:`VoxelData.labels`).
    target : pandas.Series
        What to predict, indexed by row label; missing values drop the row.
    covars : pandas.DataFrame
        Site and covariates, indexed by row label.
    model : {"sfcn", "vit"}
        The architecture.
    task : {"classification", "regression"}, optional
        Inferred from ``target`` when omitted.
    site_col : str, optional
        Column of ``covars`` with the site (ComBat batch, outer CV groups).
    covariates : sequence of str
        Effects ComBat protects (never the target).
    harmonize : {"combat", "intensity", "none"}
        Harmonization inside each training fold (see the module docstring).
    leave_site_out : bool
        Outer CV leaves one site out (with 3 or more sites).
    seed : int
        Seed of the splits, the networks and the bootstrap.
    device : str
        Torch device (``"auto"``: CUDA when available).
    params : dict, optional
        Estimator parameters (e.g. ``{"epochs": 30, "channels": (4, 8, 16)}``).
    param_grid : dict, optional
        Grid searched by the inner CV (default: none, one candidate).
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals.
    max_in_memory_gb : float
        Largest voxel matrix ``"combat"`` copies into RAM.

    Returns
    -------
    ImageModelEvaluation
    """
    if harmonize not in HARMONIZATIONS:
        raise ValueError(f"harmonize must be one of {HARMONIZATIONS}, not {harmonize!r}")
    notes: list[str] = []
    labels = data.labels
    keep = target.reindex(labels).notna().to_numpy().copy()
    needed = [c for c in [site_col, *covariates] if c]
    if needed:
        keep &= covars.reindex(labels)[needed].notna().all(axis=1).to_numpy()
    if not keep.all():
        notes.append(f"{int((~keep).sum())} map(s) dropped for a missing target or covariate")
    task = task or infer_task(target)
    estimator = IMAGE_MODELS[task][model](mask=data.mask, source=data, seed=seed, device=device,
                                          **(params or {}))
    steps, routed = [], {}
    use_combat = harmonize == "combat" and site_col is not None
    if use_combat:
        size_gb = keep.sum() * data.values.shape[1] * 4 / 1024**3
        if size_gb > max_in_memory_gb:
            raise InputDataError(
                f"ComBat on {size_gb:.1f} GB of voxels exceeds {max_in_memory_gb} GB of RAM: "
                "use intensity harmonization (reads batches from the memory map)")
        X = pd.DataFrame(np.asarray(data.values[np.flatnonzero(keep)]), index=labels[keep])
        protected = [c for c in covariates if c != target.name]
        numeric = [c for c in protected if pd.api.types.is_numeric_dtype(covars[c])]
        steps.append(("combat", FoldComBat(
            batch_col=site_col, categorical_cols=tuple(c for c in protected if c not in numeric),
            continuous_cols=tuple(numeric))))
        routed = {"covars": covars.loc[X.index, [site_col, *protected]]}
        notes.append("voxel-wise ComBat fitted on the training rows of each fold")
    else:
        X = data.row_pointers().loc[labels[keep]]
        if harmonize == "intensity":
            estimator.set_params(intensity="zscore")
            notes.append("each map z-scored inside the mask (intensity harmonization)")
    steps.append(("model", estimator))
    y = target.loc[X.index].to_numpy()
    groups = covars.loc[X.index, site_col].to_numpy() if site_col else None
    scoring = "balanced_accuracy" if task == "classification" else "neg_mean_absolute_error"
    search = NestedGridSearch(Pipeline(steps), param_grid or {"seed": [seed]},
                              cv=InnerSplits(3, task=task, seed=seed), scoring=scoring)
    cv_name, splits = outer_splits("auto" if leave_site_out else 5, y,
                                   groups if leave_site_out else None, task, seed)
    y_pred, scores, folds = nested_predictions(search, X, y, splits, task, groups=groups,
                                               params=routed)
    rng = np.random.default_rng(seed)
    if task == "classification":
        metrics, confusion, roc = classification_metrics(y, y_pred, scores, n_bootstrap, rng)
    else:
        metrics, confusion, roc = regression_metrics(y, y_pred, n_bootstrap, rng), None, None
    final = clone(search).fit(X, y, groups=groups, **routed).best_estimator_
    with routing():
        inputs = final[:-1].transform(X, **routed) if len(final) > 1 else X
    fitted = final[-1]
    contrast, magnitude = gradient_x_input(fitted, inputs, y)
    maps = {"saliency": data.to_image(contrast), "absaliency": data.to_image(magnitude)}
    if model == "vit":
        maps["rollout"] = data.to_image(attention_rollout(fitted, inputs))
    notes.append(f"final model: {fitted.n_epochs_} epoch(s), best validation epoch "
                 f"{fitted.best_epoch_ + 1}; maps from the final model on every row")
    predictions = pd.DataFrame({"fold": folds, "y_true": y, "y_pred": y_pred}, index=X.index)
    if scores is not None and scores.ndim == 1:
        predictions["score"] = scores
    return ImageModelEvaluation(model, task, cv_name, metrics, predictions, confusion, roc,
                                final, maps, notes)


MAP_METHODS = {
    "saliency": "gradient x input of the decision (Shrikumar et al. 2017), last class minus "
                "the others (classification) or covariance with the z-scored target",
    "absaliency": "mean absolute gradient x input of the decision",
    "rollout": "class-token attention rollout (Abnar & Zuidema 2020), per patch",
}


def save_image_evaluation(evaluation: ImageModelEvaluation, stem: str, group_dir: Path,
                          sources) -> str:
    """Write an evaluation's tables, stat maps, model and figure; return the figure name."""
    out = group_dir / "image_models"
    write_tsv(evaluation.metrics.assign(cv=evaluation.cv), out / f"{stem}_metrics.tsv")
    write_tsv(evaluation.predictions, out / f"{stem}_predictions.tsv", index=True)
    if evaluation.confusion is not None:
        write_tsv(evaluation.confusion, out / f"{stem}_confusion.tsv", index=True)
    if evaluation.roc is not None:
        write_tsv(evaluation.roc, out / f"{stem}_roc.tsv")
    for name, img in evaluation.maps.items():
        write_stat_map(img, out / f"{stem}_space-{TEMPLATE_SPACE}_stat-{name}_statmap.nii.gz",
                       description=f"{evaluation.model} {name} map", sources=sources,
                       method=MAP_METHODS[name])
    (group_dir / "models").mkdir(parents=True, exist_ok=True)
    save_image_model(evaluation.final_model[-1], group_dir / "models" / f"{stem}.pt")
    figures = group_dir / "figures"
    plot_maps(evaluation.maps, figures / f"image_{stem}_maps.svg")
    empty = pd.DataFrame(columns=["feature", "importance"])
    plot_evaluation(evaluation.roc, evaluation.confusion, evaluation.predictions, empty,
                    figures / f"image_{stem}.svg")
    return f"image_{stem}.svg"


def run_image_models(output_dir: Path, covars: pd.DataFrame, target: str, *,
                     voxel_inputs, models=("sfcn", "vit"), site_col: str | None,
                     covariates=(), harmonize: str = "combat", downsample: int = 1,
                     mask="template", seed: int = 0, device: str = "auto",
                     params: dict | None = None, notes: list[str]) -> list[ClassifierSummary]:
    """Gather each kind of map, evaluate each image model, write outputs (group hook).

    Parameters
    ----------
    output_dir : pathlib.Path
        Derivatives folder; outputs go to ``output_dir/group``.
    covars : pandas.DataFrame
        Phenotype indexed by row label (``sub-X`` or ``sub-X_ses-Y``).
    target : str
        Column of ``covars`` to predict.
    voxel_inputs : sequence of str
        Kinds of maps (:func:`~brainscale.workflows.group.voxel_inputs.parse_voxel_kind`).
    models : sequence of {"sfcn", "vit"}
        Architectures.
    site_col, covariates, harmonize, seed, device
        As in :func:`evaluate_image_model`.
    downsample, mask
        As in :func:`~brainscale.workflows.group.voxel_inputs.gather_voxel_maps`.
    params : dict, optional
        Estimator parameters per model name (``{"sfcn": {"epochs": 30}}``).
    notes : list of str
        Messages for the report (appended to).

    Returns
    -------
    list of ClassifierSummary
        For the report's Prediction section; the saliency figure is named in the notes.
    """
    group_dir = Path(output_dir) / "group"
    summaries = []
    for spec in voxel_inputs:
        maps = find_voxel_maps(output_dir, spec)
        kind = parse_voxel_kind(spec)[0]
        if len(maps) < 10:
            notes.append(f"voxel input {spec!r}: {len(maps)} map(s) found, fewer than 10: "
                         "image models skipped")
            continue
        first_session = ~maps["participant_id"].duplicated()
        if not first_session.all():
            notes.append(f"voxel input {spec!r}: first session of each participant used")
        maps = maps.loc[first_session]
        data = gather_voxel_maps(maps, group_dir / "voxels" / kind, downsample=downsample,
                                 mask=mask)
        notes.extend(f"voxel input {spec!r}: {n}" for n in data.notes)
        sources = [p for paths in maps["paths"] for p in paths]
        harmonization = harmonize
        if harmonize == "combat" and data.values.nbytes / 1024**3 > MAX_IN_MEMORY_GB:
            harmonization = "intensity"
            notes.append(f"voxel input {spec!r}: {data.values.nbytes / 1024**3:.1f} GB of "
                         f"voxels is over {MAX_IN_MEMORY_GB} GB for in-RAM ComBat: each map "
                         "z-scored inside the mask instead (read from the memory map)")
        for model in models:
            try:
                evaluation = evaluate_image_model(
                    data, covars[target], covars=covars, model=model, site_col=site_col,
                    covariates=covariates, harmonize=harmonization, seed=seed, device=device,
                    params=(params or {}).get(model))
            except (InputDataError, ValueError) as err:  # too few rows, volume too small
                notes.append(f"voxel input {spec!r}, model {model}: skipped: {err}")
                continue
            stem = f"{kind}_model-{model}"
            figure = save_image_evaluation(evaluation, stem, group_dir, sources)
            summaries.append(ClassifierSummary(
                f"voxels:{kind}", model, evaluation.task, evaluation.cv, evaluation.metrics,
                float("nan"), figure,
                [*evaluation.notes, f"maps (MNI152NLin2009aSym): image_models/{stem}_space-"
                 f"{TEMPLATE_SPACE}_stat-<map>_statmap.nii.gz"],
                extra_figures=[f"image_{stem}_maps.svg"]))
    return summaries


__all__ = [
    "HARMONIZATIONS",
    "ImageModelEvaluation",
    "evaluate_image_model",
    "run_image_models",
    "save_image_evaluation",
]
