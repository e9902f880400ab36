"""Build the participant workflow for every participant of every bids-examples layout."""

from __future__ import annotations

import pytest

from brainscale.bids_app import bids_index, bids_selection, subject_data
from brainscale.workflows.participant import init_participant_wf

LAYOUTS = ("ds001", "ds005", "ds114", "ds000117", "7t_trt", "synthetic")


@pytest.mark.parametrize("name", LAYOUTS)
def test_participant_graph_builds_for_every_participant(bids_examples, tmp_path, name):
    layout = bids_index.load_layout(bids_examples / name, validate=False)
    for subject in bids_selection.select_participants(layout, []):
        data = subject_data.collect_subject_data(layout, subject)
        wf, plan = init_participant_wf(
            subject_data=data, output_dir=tmp_path, modalities=("anat", "func", "dwi"),
            atlases=("DesikanKilliany",), denoise_strategy="36P",
        )
        top = {node.name for node in wf._graph.nodes()}
        func = [n for n in top if n.startswith("func_")]
        dwi = [n for n in top if n.startswith("dwi_")]
        assert len(func) == len(data.bold), (name, subject)
        assert len(dwi) == len(data.dwi), (name, subject)
        assert ("anat_wf" in top) == bool(data.t1w), (name, subject)
        if data.bold or data.dwi or data.t1w:
            assert top, (name, subject)
            flat = wf._create_flat_graph()  # checks every connection of the graph
            assert flat.number_of_nodes() > 0
        else:  # e.g. ds000117's empty-room MEG "participant"
            assert plan.skipped and not plan.ran
        if not data.t1w and (data.bold or data.dwi):
            assert any("no T1w" in line for line in plan.ran)
