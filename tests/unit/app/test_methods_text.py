"""The participant methods text comes from the graph built; the dataset text from the config."""

from __future__ import annotations

from brainscale.bids_app.config import Config
from brainscale.bids_app.reports.methods import methods_text
from brainscale.workflows.func import methods as func_methods


def test_described_paragraphs_replace_the_configured_ones():
    config = Config().replace(workflow={"modalities": ("func",), "atlas": ("AAL",)})
    configured, _ = methods_text(config)
    assert "first-level GLM" in configured  # the dataset text covers every optional stage
    text, references = methods_text(config, [func_methods.FIT, func_methods.CONFOUNDS])
    assert func_methods.CONFOUNDS in text and "first-level GLM" not in text
    assert "voxel-shift map" not in text and "Regional measures use the AAL atlas" in text
    # every key cited by the collected paragraphs has its reference, and only those
    assert {"power2012", "nichols2017", "behzadi2007", "nipype", "atlasAAL"} <= set(references)
    assert "ledoit2004" not in references and "tustison2010" not in references
    assert methods_text(config, []) == (configured, methods_text(config)[1])
