"""The functional methods text is collected from the stages that were built."""

from __future__ import annotations

import pytest

from brainscale.workflows.func import methods
from brainscale.workflows.func.brain_states_wf import METHODS as DECODING
from brainscale.workflows.func.brain_states_wf import DecodingSettings
from brainscale.workflows.func.workflow import init_func_wf
from brainscale.workflows.methods import collect_descriptions

META = {"RepetitionTime": 2.0, "PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.03}


def _text(tmp_path, *, events=False, fieldmap=False, has_anat=True, decoding=None):
    bold = tmp_path / "sub-01_task-loc_bold.nii.gz"
    bold.touch()
    events_file = None
    if events:
        events_file = tmp_path / "sub-01_task-loc_events.tsv"
        events_file.write_text("onset\tduration\ttrial_type\n" + "".join(
            f"{20 * i}\t10\t{'ab'[i % 2]}\n" for i in range(12)))
    fmap = None
    if fieldmap:
        phasediff, magnitude = tmp_path / "phasediff.nii.gz", tmp_path / "magnitude1.nii.gz"
        phasediff.touch()
        magnitude.touch()
        fmap = {"phasediff": str(phasediff), "magnitude": str(magnitude),
                "metadata": {"EchoTime1": 0.00492, "EchoTime2": 0.00738}}
    wf = init_func_wf(bold_file=str(bold), metadata=META, has_anat=has_anat,
                      output_dir=str(tmp_path / "out"), atlases=["DesikanKilliany"],
                      denoise_strategy="24P", events_file=events_file and str(events_file),
                      fieldmap=fmap, decoding=decoding)
    return collect_descriptions(wf)


@pytest.mark.parametrize("events", [False, True])
@pytest.mark.parametrize("fieldmap", [False, True])
def test_glm_and_sdc_are_described_only_when_built(tmp_path, events, fieldmap):
    paragraphs = _text(tmp_path, events=events, fieldmap=fieldmap)
    text = "\n\n".join(paragraphs)
    assert (methods.GLM in paragraphs) == events
    assert ("first-level GLM" in text) == events
    assert (methods.SDC in paragraphs) == fieldmap
    assert ("voxel-shift map" in text) == fieldmap
    assert (methods.NO_SDC in text) == (not fieldmap)
    # the stages every run has, in the order the data flow through them
    expected = [methods.FIT, *([methods.SDC] if fieldmap else []),
                methods.registration_text(has_anat=True, sdc=fieldmap), methods.CONFOUNDS,
                methods.connectivity_text("24P"), *([methods.GLM] if events else [])]
    assert paragraphs == expected
    assert "`24P` strategy" in text and "rigid mutual-information" in text


def test_bold_only_run_and_decoding_are_described_as_built(tmp_path):
    paragraphs = _text(tmp_path, events=True, has_anat=False,
                       decoding=DecodingSettings(models=("svm",)))
    text = "\n\n".join(paragraphs)
    assert "registered to the template directly" in text and "to the T1w" not in text
    assert paragraphs[-1] == DECODING and methods.GLM in paragraphs
    assert DECODING not in _text(tmp_path, events=True, has_anat=False)
