"""The quality-control summary that opens each participant report.

It reads the participant's ``*_desc-iqms_<suffix>.json`` files (MRIQC names, see
:mod:`brainscale.workflows.anat.iqms`, :mod:`brainscale.workflows.func.iqms`,
:mod:`brainscale.workflows.dwi.iqms`) and
shows, per image, the metrics that the group level flags, the artifacts found (BOLD
outlier volumes, DWI dropout slices and bad volumes) and the notes of the computation.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from brainscale.workflows.group.qc import QC_METRICS

_DATATYPE = {"T1w": "anat", "bold": "func", "dwi": "dwi"}


def find_iqm_files(output_dir: Path, subject: str) -> list[Path]:
    """Return the participant's IQM JSON files, sorted."""
    root = Path(output_dir) / f"sub-{subject}"
    return sorted(p for pattern in ("*/*_desc-iqms_*.json", "ses-*/*/*_desc-iqms_*.json")
                  for p in root.glob(pattern))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def _artifacts(iqms: dict) -> list[str]:
    found = []
    if iqms.get("outlier_volumes"):
        found.append(f"{len(iqms['outlier_volumes'])} BOLD outlier volume(s) (more than 10 % "
                     f"outlier voxels): {iqms['outlier_volumes'][:20]}")
    if iqms.get("dropout_slices"):
        pairs = [tuple(p) for p in iqms["dropout_slices"][:20]]
        found.append(f"{len(iqms['dropout_slices'])} DWI slice dropout(s) [volume, slice]: "
                     f"{pairs}")
    if iqms.get("dropout_volumes"):
        found.append(f"DWI volume dropout(s): {iqms['dropout_volumes']}")
    return found


def qc_summary_html(output_dir: Path, subject: str) -> str:
    """Return the HTML section ``<h2 id='qc'>`` for the participant (empty without IQMs)."""
    files = find_iqm_files(output_dir, subject)
    if not files:
        return ""
    esc = html.escape
    parts = ["<h2 id='qc'>Quality control</h2>",
             "<p>Image quality metrics with MRIQC's names (definitions in the README); the "
             "group report flags outliers within each site.</p>"]
    for path in files:
        try:
            iqms = json.loads(path.read_text())
        except ValueError:
            parts.append(f"<p class='skip'>{esc(path.name)}: unreadable</p>")
            continue
        suffix = path.name.rsplit("_", 1)[-1].removesuffix(".json")
        metrics = QC_METRICS.get(_DATATYPE.get(suffix, ""), {})
        names = [m for m in metrics if m in iqms]
        if suffix == "dwi":
            names += sorted(k for k in iqms if k.startswith("cnr_b"))
        parts.append(f"<h3>{esc(path.name.replace('_desc-iqms', '')[:-5])}</h3><table><tr>"
                     + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr><tr>"
                     + "".join(f"<td>{esc(_fmt(iqms[n]))}</td>" for n in names)
                     + "</tr></table>")
        artifacts = _artifacts(iqms)
        parts.append("<ul>" + "".join(f"<li class='skip'>{esc(a)}</li>" for a in artifacts)
                     + "</ul>" if artifacts else "<p>No artifact detected.</p>")
        notes = iqms.get("provenance", {}).get("notes", [])
        if notes:
            parts.append("<p>" + "; ".join(esc(n) for n in notes) + "</p>")
    return "\n".join(parts)
