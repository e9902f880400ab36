"""The group HTML report: cohort, site effects, graph metrics and classifier results.

Figures are drawn with Matplotlib's Agg backend into ``group/figures/`` as SVG and
referenced from ``group/group.html`` with relative links, so that the folder can be
moved or archived as a whole.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from brainscale.writers import save_figure, write_text  # noqa: E402

GRAPH_METRICS_SHOWN = (
    "density",
    "mean_strength",
    "clustering",
    "characteristic_path_length",
    "global_efficiency",
    "local_efficiency",
    "modularity",
    "small_world_sigma",
)


@dataclass
class SiteEffect:
    """Site effects of one feature set before and after ComBat.

    Attributes
    ----------
    accuracy_before, accuracy_after : float
        Cross-validated balanced accuracy of predicting the site from the features.
    chance : float
        ``1 / n_sites``.
    figure : str
        File name (under ``figures/``) of the PCA-by-site plot.
    """

    name: str
    accuracy_before: float
    accuracy_after: float
    chance: float
    figure: str


@dataclass
class ClassifierSummary:
    """One classifier evaluation as shown in the report."""

    feature_set: str
    model: str
    task: str
    cv: str
    metrics: pd.DataFrame
    p_value: float
    figure: str
    notes: list[str] = field(default_factory=list)
    #: More figures under ``figures/`` (e.g. saliency maps of an image model).
    extra_figures: list[str] = field(default_factory=list)


def _save(fig, path: Path) -> str:
    save_figure(fig, path, format="svg", bbox_inches="tight")
    plt.close(fig)
    return path.name


def _scatter_by_site(ax, scores: np.ndarray, sites: np.ndarray, title: str) -> None:
    for site in np.unique(sites):
        mask = sites == site
        ax.scatter(scores[mask, 0], scores[mask, 1], s=10, alpha=0.7, label=str(site))
    ax.set(title=title, xlabel="PC1", ylabel="PC2")


def plot_pca_by_site(
    before: pd.DataFrame, after: pd.DataFrame, sites: np.ndarray, path: Path
) -> str:
    """Draw the first two principal components coloured by site, before and after ComBat."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, table, title in ((axes[0], before, "before ComBat"), (axes[1], after, "after ComBat")):
        values = StandardScaler().fit_transform(table.to_numpy(dtype=float))
        n_components = min(2, *values.shape)
        scores = PCA(n_components=n_components).fit_transform(values)
        if n_components < 2:
            scores = np.column_stack([scores[:, 0], np.zeros(len(scores))])
        _scatter_by_site(ax, scores, np.asarray(sites), title)
    axes[1].legend(title="site", fontsize="small", loc="best")
    return _save(fig, path)


def plot_graph_metrics(global_table: pd.DataFrame, groups: pd.Series | None, path: Path) -> str:
    """Draw histograms of the main global graph metrics (split by ``groups`` when given)."""
    shown = [m for m in GRAPH_METRICS_SHOWN if m in global_table.columns]
    n_cols = 4
    n_rows = max(1, int(np.ceil(len(shown) / n_cols)))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3 * n_cols, 2.5 * n_rows), squeeze=False)
    for ax, metric in zip(axes.flat, shown, strict=False):
        values = global_table[metric]
        if groups is None:
            ax.hist(values.dropna(), bins=20)
        else:
            for level in pd.unique(groups.dropna()):
                ax.hist(values[groups == level].dropna(), bins=20, alpha=0.6, label=str(level))
            ax.legend(fontsize="x-small")
        ax.set_title(metric, fontsize="small")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_evaluation(
    evaluation_roc: pd.DataFrame | None,
    confusion: pd.DataFrame | None,
    predictions: pd.DataFrame,
    top_features: pd.DataFrame,
    path: Path,
    n_features: int = 15,
) -> str:
    """Draw the ROC curve and confusion matrix (or predicted vs true) and the top features."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    if evaluation_roc is not None:
        axes[0].plot(evaluation_roc["fpr"], evaluation_roc["tpr"])
        axes[0].plot([0, 1], [0, 1], linestyle="--", color="grey")
        axes[0].set(
            title="ROC (out-of-fold)", xlabel="false positive rate", ylabel="true positive rate"
        )
    else:
        axes[0].axis("off")
    if confusion is not None:
        counts = confusion.to_numpy()
        axes[1].imshow(counts, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            colour = "white" if count > counts.max() / 2 else "black"
            axes[1].text(j, i, str(count), ha="center", va="center", color=colour)
        ticks = [str(c) for c in confusion.columns]
        axes[1].set(
            xticks=range(len(ticks)),
            xticklabels=ticks,
            yticks=range(len(ticks)),
            yticklabels=ticks,
            xlabel="predicted",
            ylabel="true",
            title="confusion matrix",
        )
    else:
        axes[1].scatter(predictions["y_true"], predictions["y_pred"], s=8)
        axes[1].set(xlabel="true", ylabel="predicted (out-of-fold)", title="predictions")
    top = top_features.head(n_features).iloc[::-1]
    axes[2].barh(top["feature"].astype(str), top["importance"])
    axes[2].set_title("top features")
    axes[2].tick_params(axis="y", labelsize="x-small")
    fig.tight_layout()
    return _save(fig, path)


def _table(frame: pd.DataFrame, **kwargs) -> str:
    return frame.to_html(float_format=lambda v: f"{v:.4g}", border=0, classes="table", **kwargs)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _img(name: str, alt: str) -> str:
    return f'<img src="figures/{html.escape(name)}" alt="{html.escape(alt)}">'


def render_group_report(
    path: Path,
    *,
    cohort: pd.DataFrame,
    missing: pd.DataFrame,
    site_effects: list[SiteEffect],
    graph_figures: dict[str, str],
    classifiers: list[ClassifierSummary],
    notes: list[str],
    qc_dashboard: str = "",
    brain_states: str = "",
) -> Path:
    """Write ``group.html``.

    Parameters
    ----------
    path : pathlib.Path
        Output file; figures are expected in ``path.parent / "figures"``.
    cohort : pandas.DataFrame
        One row per participant and session: availability of each modality and phenotype.
    missing : pandas.DataFrame
        Participants lacking a modality (``participant_id``, ``session_id``, ``modality``).
    site_effects : list of SiteEffect
        Site prediction and PCA figure per feature set.
    graph_figures : dict of str to str
        Connectome name -> graph-metric figure file name.
    classifiers : list of ClassifierSummary
        Classifier results.
    notes : list of str
        Messages for the reader (skipped steps, dropped participants).
    qc_dashboard : str
        HTML of the quality-control section
        (:func:`brainscale.workflows.group.qc_dashboard.render_qc_dashboard`).
    brain_states : str
        HTML of the decoding and connectivity-states section
        (:func:`brainscale.workflows.group.states.render_brain_states`).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    sections = []
    counts = cohort.drop(columns=["participant_id", "session_id"]).select_dtypes(bool).sum()
    summary = (
        f"<p>{cohort['participant_id'].nunique()} participants, {len(cohort)} "
        f"participant-sessions.</p>" + _table(counts.rename("with data").to_frame())
    )
    sections.append(_section("Cohort", summary + _table(cohort, index=False)))
    missing_body = (
        "<p>Every participant has every modality.</p>"
        if missing.empty
        else _table(missing, index=False)
    )
    sections.append(_section("Missing modalities", missing_body))
    if qc_dashboard:
        sections.append(_section("Quality control", qc_dashboard))
    if site_effects:
        rows = pd.DataFrame(
            [
                {
                    "feature set": s.name,
                    "site prediction before": s.accuracy_before,
                    "site prediction after": s.accuracy_after,
                    "chance": s.chance,
                }
                for s in site_effects
            ]
        )
        body = (
            "<p>Balanced accuracy of a 5-fold logistic regression predicting the site; "
            "ComBat is fitted on the training rows of each fold.</p>" + _table(rows, index=False)
        )
        body += "".join(
            f"<h3>{html.escape(s.name)}</h3>{_img(s.figure, s.name)}" for s in site_effects
        )
        sections.append(_section("Site effects before and after harmonization", body))
    if graph_figures:
        body = "".join(
            f"<h3>{html.escape(name)}</h3>{_img(fig, name)}" for name, fig in graph_figures.items()
        )
        sections.append(_section("Graph metrics", body))
    if classifiers:
        rows = []
        for c in classifiers:
            row = {"feature set": c.feature_set, "model": c.model, "cv": c.cv}
            for _, m in c.metrics.iterrows():
                row[m["metric"]] = f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
            row["permutation p"] = c.p_value
            rows.append(row)
        body = (
            "<p>Nested cross-validation (inner: hyperparameters); ComBat, scaling and the "
            "model fitted on training folds only; 95 % bootstrap intervals.</p>"
            + _table(pd.DataFrame(rows), index=False)
        )
        for c in classifiers:
            body += f"<h3>{html.escape(c.feature_set)} - {html.escape(c.model)}</h3>"
            body += "".join(f"<p>{html.escape(n)}</p>" for n in c.notes)
            body += _img(c.figure, f"{c.feature_set} {c.model}")
            body += "".join(_img(f, f"{c.feature_set} {c.model} maps") for f in c.extra_figures)
        sections.append(_section("Prediction", body))
    if brain_states:
        sections.append(_section("Brain states", brain_states))
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        sections.append(_section("Notes", f"<ul>{items}</ul>"))
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>BrainScale group report"
        "</title><style>body{font-family:sans-serif;margin:2em} table{border-collapse:"
        "collapse;font-size:small} td,th{padding:2px 6px;border-bottom:1px solid #ddd}"
        " img{max-width:100%} .qc-plot svg{max-width:100%;height:auto}</style></head>"
        "<body><h1>BrainScale group report</h1>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    return write_text(page, path)
