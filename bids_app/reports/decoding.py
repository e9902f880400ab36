"""The participant report's decoding section: the metrics tables of every decoded run."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

COLUMNS = ["model", "balanced_accuracy", "chance", "permutation_p", "n_permutations",
           "n_folds", "n_samples", "n_classes"]


def decoding_html(output_dir: Path, subject: str) -> str:
    """HTML of the decoding results of ``sub-<subject>`` (empty when nothing was decoded).

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.
    subject : str
        Participant label.

    Returns
    -------
    str
        A ``Decoding`` section with one table per ``*_desc-decoding_metrics.tsv``.
    """
    folder = Path(output_dir) / f"sub-{subject}"
    files = sorted(folder.glob("func/*_desc-decoding_metrics.tsv")) + sorted(
        folder.glob("ses-*/func/*_desc-decoding_metrics.tsv"))
    if not files:
        return ""
    parts = ["<h2 id='decoding'>Decoding</h2><p>Task conditions decoded from activity "
             "patterns with contiguous cross-validation folds separated by a haemodynamic "
             "gap; balanced accuracy against chance, block-permutation p-values. Weight "
             "maps: <code>*_statmap.nii.gz</code> beside these tables.</p>"]
    for path in files:
        table = pd.read_csv(path, sep="\t")
        shown = table[[c for c in COLUMNS if c in table.columns]]
        parts.append(f"<h3>{html.escape(path.name)}</h3>"
                     + shown.to_html(index=False, float_format="%.3f", border=0))
    return "".join(parts)
