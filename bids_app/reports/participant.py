"""The per-participant HTML report: ``output_dir/sub-<label>.html``.

Workflows save their figures with ``DerivativesDataSink(datatype="figures", ...)`` into
``sub-<label>/figures/``; this module gathers them by section (from the BIDS suffix of
their name), adds their captions (``Caption`` in the figure's JSON sidecar), what ran
and what was skipped, errors, the methods boilerplate and the configuration.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

from brainscale import __version__
from brainscale.bids_app.reports.decoding import decoding_html
from brainscale.bids_app.reports.qc_summary import qc_summary_html
from brainscale.derivatives import atomic_write, parse_entities

SECTIONS = (
    ("Anatomical", ("T1w", "dseg", "mask", "probseg")),
    ("Functional", ("bold", "boldref", "timeseries", "regressors")),
    ("Diffusion", ("dwi", "dwimap", "tractography", "streamlines")),
    ("Connectivity", ("relmat",)),
)
FIGURE_EXTENSIONS = (".svg", ".png", ".jpg", ".gif")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:auto;padding:1em 2em;color:#222}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{color:#335;margin-top:2em}
.error{background:#fde8e8;border-left:5px solid #c33;padding:.5em 1em;white-space:pre-wrap;
font-family:monospace;font-size:.9em}
.skip{color:#8a5a00}figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
nav a{margin-right:1em}table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left}
"""


def _section_of(figure: Path) -> str:
    suffix = parse_entities(figure)["suffix"]
    for section, suffixes in SECTIONS:
        if suffix in suffixes:
            return section
    return "Other"


def _caption(figure: Path) -> str:
    sidecar = figure.with_name(figure.name.rsplit(".", 1)[0] + ".json")
    if sidecar.is_file():
        try:
            return str(json.loads(sidecar.read_text()).get("Caption", ""))
        except ValueError:
            return ""
    return ""


def collect_figures(output_dir: Path, subject: str) -> dict[str, list[Path]]:
    """Find a participant's figures, grouped by report section.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.
    subject : str
        Participant label.

    Returns
    -------
    dict
        ``section -> sorted figure paths``, sections in report order.
    """
    folder = output_dir / f"sub-{subject}" / "figures"
    figures = sorted(p for p in folder.glob("*") if p.suffix in FIGURE_EXTENSIONS) \
        if folder.is_dir() else []
    grouped: dict[str, list[Path]] = {name: [] for name, _ in SECTIONS}
    grouped["Other"] = []
    for figure in figures:
        grouped[_section_of(figure)].append(figure)
    return {k: v for k, v in grouped.items() if v}


def _status(outcome) -> str:
    status = getattr(outcome, "status", "completed" if outcome.ok else "failed")
    return {"completed": "completed", "partial": "PARTIAL (some parts failed)"}.get(
        status, "FAILED")


def render_participant_report(
    output_dir: Path, subject: str, outcome, config, run_uuid: str
) -> str:
    """Render the HTML of a participant's report.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder (figure links are relative to it).
    subject : str
        Participant label.
    outcome : brainscale.bids_app.runner.ParticipantOutcome
        What ran, what was skipped, errors.
    config : brainscale.bids_app.config.Config
        The run's configuration.
    run_uuid : str
        Run identifier.

    Returns
    -------
    str
        A standalone HTML document.
    """
    from brainscale.bids_app.reports.methods import methods_text

    figures = collect_figures(output_dir, subject)
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>sub-{esc(subject)} - BrainScale report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>BrainScale report: sub-{esc(subject)}</h1>",
        "<nav><a href='#qc'>Quality</a><a href='#summary'>Summary</a>"
        + "".join(f"<a href='#{esc(s.lower())}'>{esc(s)}</a>" for s in figures)
        + "<a href='#methods'>Methods</a><a href='#about'>About</a></nav>",
        qc_summary_html(output_dir, subject),  # the report opens with its QC summary
        "<h2 id='summary'>Summary</h2>",
        f"<p>Status: <b>{_status(outcome)}</b></p>",
    ]
    if getattr(outcome, "failed_parts", None):
        parts.append("<p>Failed, not published (the other parts were):</p><ul>" + "".join(
            f"<li class='skip'>{esc(p)}</li>" for p in outcome.failed_parts) + "</ul>")
    if getattr(outcome, "notes", None):
        parts.append("<p>Adapted to the data:</p><ul>" + "".join(
            f"<li>{esc(n)}</li>" for n in outcome.notes) + "</ul>")
    if outcome.ran:
        parts.append("<p>Processed:</p><ul>" + "".join(f"<li>{esc(r)}</li>" for r in outcome.ran)
                     + "</ul>")
    if outcome.skipped:
        parts.append("<p>Not processed:</p><ul>" + "".join(
            f"<li class='skip'>{esc(s)}</li>" for s in outcome.skipped) + "</ul>")
    for error in outcome.errors:
        parts.append(f"<h3>Error</h3><div class='error'>{esc(error)}</div>")
    for section, paths in figures.items():
        parts.append(f"<h2 id='{esc(section.lower())}'>{esc(section)}</h2>")
        for path in paths:
            rel = path.relative_to(output_dir).as_posix()
            caption = _caption(path) or path.name
            parts.append(f"<figure><img src='{esc(rel)}' alt='{esc(path.name)}' loading='lazy'>"
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append(decoding_html(output_dir, subject))
    text, references = methods_text(config, getattr(outcome, "methods", None))
    parts.append("<h2 id='methods'>Methods</h2>")
    parts += [f"<p>{esc(p)}</p>" for p in text.split("\n\n")]
    parts.append("<h3>References</h3><ul>" + "".join(
        f"<li>[{esc(k)}] {esc(v)}</li>" for k, v in sorted(references.items())) + "</ul>")
    parts.append("<h2 id='about'>About</h2><table>")
    parts.append(f"<tr><th>BrainScale</th><td>{esc(__version__)}</td></tr>")
    parts.append(f"<tr><th>Run</th><td>{esc(run_uuid)}</td></tr>")
    parts.append(f"<tr><th>Date (UTC)</th><td>{datetime.now(UTC):%Y-%m-%d %H:%M}</td></tr>")
    parts.append(f"</table><pre>{esc(config.to_toml())}</pre></body></html>")
    return "\n".join(parts)


def write_participant_report(
    output_dir: Path, subject: str, outcome, config, run_uuid: str
) -> Path:
    """Write ``output_dir/sub-<label>.html`` atomically.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.
    subject : str
        Participant label.
    outcome : brainscale.bids_app.runner.ParticipantOutcome
        What ran, what was skipped, errors.
    config : brainscale.bids_app.config.Config
        The run's configuration.
    run_uuid : str
        Run identifier.

    Returns
    -------
    pathlib.Path
        The report file.
    """
    path = Path(output_dir) / f"sub-{subject}.html"
    with atomic_write(path) as handle:
        handle.write(render_participant_report(Path(output_dir), subject, outcome, config,
                                               run_uuid))
    return path
