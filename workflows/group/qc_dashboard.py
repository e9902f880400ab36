"""The QC dashboard of the group report: per-metric plots by site, outliers marked and linked.

Each modality gets one SVG (``group/figures/qc_<modality>.svg``) with a strip plot per
metric of :data:`brainscale.workflows.group.qc.QC_METRICS`, one column of points per site; flagged
values are red crosses, excluded images are circled. Every point links to its
participant's report (``../sub-<label>.html``); the SVG is inlined in ``group.html`` so
that the links work.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from brainscale.workflows.group.qc import QC_METRICS, QCResult, metrics_of  # noqa: E402
from brainscale.writers import save_figure  # noqa: E402

TITLES = {"anat": "T1w", "func": "BOLD", "dwi": "DWI"}


def plot_modality(table: pd.DataFrame, outliers: pd.DataFrame, modality: str,
                  path: Path) -> Path | None:
    """Draw the strip plots of one modality (None when it has no metric to show)."""
    rows = table[table["modality"] == modality]
    metrics = [m for m in metrics_of(rows, modality) if rows[m].notna().any()]
    if rows.empty or not metrics:
        return None
    sites = sorted(rows["site"].astype(str).unique())
    n_cols = min(4, len(metrics))
    n_rows = int(np.ceil(len(metrics) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.4 * n_rows),
                             squeeze=False)
    flagged = {(r.image, r.metric) for r in outliers.itertuples()}
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        for x, site in enumerate(sites):
            members = rows[(rows["site"].astype(str) == site) & rows[metric].notna()]
            if members.empty:
                continue
            jitter = x + rng.uniform(-0.15, 0.15, len(members))
            bad = np.array([(img, metric) in flagged for img in members["image"]])
            urls = [f"../{r}" for r in members["report"]]
            for mask, style in ((~bad, {"c": "tab:blue", "marker": "o", "s": 14}),
                                (bad, {"c": "tab:red", "marker": "X", "s": 40})):
                if mask.any():
                    points = ax.scatter(jitter[mask], members[metric].to_numpy()[mask],
                                        alpha=0.8, **style)
                    points.set_urls([u for u, m in zip(urls, mask, strict=True) if m])
            excluded = members["excluded"].to_numpy(bool)
            if excluded.any():
                ax.scatter(jitter[excluded], members[metric].to_numpy()[excluded], s=120,
                           facecolors="none", edgecolors="k", linewidths=1)
        ax.set_xticks(range(len(sites)), sites, fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{TITLES.get(modality, modality)} IQMs by site (red: outlier within the "
                 "site; circled: excluded; click a point for its report)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, format="svg")
    plt.close(fig)
    return path


def _inline_svg(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return re.sub(r"^.*?(<svg)", r"\1", text, count=1, flags=re.S)


def _links(frame: pd.DataFrame) -> str:
    cells = []
    for _, row in frame.iterrows():
        link = (f'<a href="../{html.escape(row["participant_id"])}.html">'
                f'{html.escape(row["participant_id"])}</a>')
        rest = "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in frame.columns
                       if c != "participant_id")
        cells.append(f"<tr><td>{link}</td>{rest}</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    return f"<table><tr>{head}</tr>{''.join(cells)}</table>"


def render_qc_dashboard(result: QCResult, figures_dir: Path) -> str:
    """Return the HTML body of the report's QC section (figures written to ``figures_dir``)."""
    table = result.table
    if table.empty:
        return "<p>No image quality metrics were found.</p>"
    parts = [f"<p>{len(table)} images; {int(table['excluded'].sum())} excluded from the group "
             "analyses (<code>qc_exclusions.tsv</code>); every IQM in <code>qc.tsv</code>, "
             "every flag in <code>qc_outliers.tsv</code>.</p>"]
    if not result.exclusions.empty:
        parts.append("<h3>Excluded images</h3>" + _links(result.exclusions))
    flagged = table[table["n_outlier_metrics"] > 0]
    if not flagged.empty:
        parts.append("<h3>Images with outlier metrics</h3>" + _links(
            flagged[["participant_id", "session_id", "image", "site", "n_outlier_metrics",
                     "outlier_metrics"]]))
    for modality in QC_METRICS:
        path = plot_modality(table, result.outliers, modality,
                             figures_dir / f"qc_{modality}.svg")
        if path is not None:
            parts.append(f"<h3>{TITLES[modality]}</h3><div class='qc-plot'>"
                         f"{_inline_svg(path)}</div>")
    return "\n".join(parts)
