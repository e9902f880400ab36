"""Methods boilerplate with citations, assembled from the workflows that ran.

Each science package ``workflows.<part>.methods`` describes its own workflow next to its
code: a ``describe(**settings) -> str`` function returning a Markdown paragraph with
``[@key]`` citations, and a ``REFERENCES`` mapping of those keys to full references.
The dataset-level text (``logs/CITATION.md``, written before any graph is built) comes from
the configuration; a participant's report uses the paragraphs collected from the graph
built for that participant (:func:`brainscale.workflows.methods.collect_descriptions`), so
a stage that was not built is not described.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from brainscale import __version__
from brainscale.bids_app.config import Config
from brainscale.derivatives import atomic_write
from brainscale.resources import TEMPLATE_CITATION, get_atlas

CORE_REFERENCES = {
    "nipype": "Gorgolewski K et al. Nipype: a flexible, lightweight and extensible neuroimaging "
    "data processing framework in Python. Front Neuroinform 5:13, 2011.",
    "pybids": "Yarkoni T et al. PyBIDS: Python tools for BIDS datasets. J Open Source Softw "
    "4(40):1294, 2019.",
    "bids": "Gorgolewski KJ et al. The brain imaging data structure. Sci Data 3:160044, 2016.",
    "mni2009": TEMPLATE_CITATION,
}


def _part_methods(part: str, config: Config) -> tuple[str, dict[str, str]]:
    try:
        module = importlib.import_module(f"brainscale.workflows.{part}.methods")
    except ModuleNotFoundError:
        return "", {}
    text = module.describe(
        atlases=list(config.workflow.atlas),
        denoise_strategy=config.workflow.denoise_strategy,
        thickness_method=config.workflow.thickness_method,
        seed=config.workflow.seed,
    )
    return text, dict(module.REFERENCES)


def _all_references() -> dict[str, str]:
    """Every reference a workflow's methods paragraph may cite."""
    from brainscale.workflows.func import brain_states_wf

    references = dict(CORE_REFERENCES)
    for part in ("anat", "func", "dwi"):
        references.update(importlib.import_module(f"brainscale.workflows.{part}.methods")
                          .REFERENCES)
    references.update(brain_states_wf.REFERENCES)
    return references


def methods_text(config: Config,
                 described: list[str] | None = None) -> tuple[str, dict[str, str]]:
    """Return the methods boilerplate of a run and the references it cites.

    Parameters
    ----------
    config : Config
        The run's configuration (which parts ran, atlases, options).
    described : list of str, optional
        The paragraphs collected from the graph that was built
        (:func:`brainscale.workflows.methods.collect_descriptions`); they replace the
        configuration's description of each part. ``None`` or empty: from the configuration.

    Returns
    -------
    text : str
        Markdown paragraphs with ``[@key]`` citations.
    references : dict
        ``key -> full reference`` for every cited key.
    """
    references = dict(CORE_REFERENCES)
    paragraphs = [
        f"Results were generated with BrainScale {__version__}, a BIDS-App built on Nipype "
        "[@nipype] that reads its input with PyBIDS [@pybids] from a dataset in the Brain "
        "Imaging Data Structure [@bids]. Spatial normalization targets the MNI152 ICBM 2009a "
        "nonlinear symmetric template [@mni2009] (space `MNI152NLin2009aSym`)."
    ]
    if described:  # the stages built for this participant
        paragraphs += list(described)
        references = _all_references()
    else:
        for part in config.workflow.modalities:
            text, refs = _part_methods(part, config)
            if text:
                paragraphs.append(text)
                references.update(refs)
        if "func" in config.workflow.modalities and config.workflow.decode_conditions:
            from brainscale.workflows.func import brain_states_wf

            paragraphs.append(brain_states_wf.METHODS)
            references.update(brain_states_wf.REFERENCES)
    for name in config.workflow.atlas:
        atlas = get_atlas(name)
        key = f"atlas{atlas.name}"
        references[key] = atlas.citation
        paragraphs.append(f"Regional measures use the {atlas.name} atlas [@{key}].")
    text = "\n\n".join(paragraphs)
    cited = set(re.findall(r"@([A-Za-z0-9_]+)", text))
    return text, {k: v for k, v in references.items() if k in cited}


def write_citation_files(logs_dir: Path, config: Config) -> Path:
    """Write ``logs/CITATION.md`` (methods text and references).

    Parameters
    ----------
    logs_dir : pathlib.Path
        ``output_dir/logs``.
    config : Config
        The run's configuration.

    Returns
    -------
    pathlib.Path
        The written Markdown file.
    """
    text, references = methods_text(config)
    lines = ["# Methods", "", text, "", "## References", ""]
    lines += [f"- [{key}] {ref}" for key, ref in sorted(references.items())]
    path = Path(logs_dir) / "CITATION.md"
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path
