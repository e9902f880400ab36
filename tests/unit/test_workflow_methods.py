"""Methods paragraphs collected from a built graph (brainscale.workflows.methods)."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.methods import collect_descriptions


def _stage(name, desc=None, postdesc=None):
    wf = pe.Workflow(name=name)
    wf.add_nodes([pe.Node(IdentityInterface(fields=["x"]), name="inputnode"),
                  pe.Node(IdentityInterface(fields=["x"]), name="outputnode")])
    wf.connect(wf.get_node("inputnode"), "x", wf.get_node("outputnode"), "x")
    if desc:
        wf.__desc__ = desc
    if postdesc:
        wf.__postdesc__ = postdesc
    return wf


def test_descriptions_follow_the_data_not_the_order_of_addition():
    top = _stage("top", "Top.", "Top after.")
    late, early = _stage("late", "Late."), _stage("early", "Early.", "Early after.")
    inner = _stage("inner", "Inner.")
    early.add_nodes([inner])
    top.add_nodes([late, early])  # late is added first but consumes early's output
    top.connect(early, "outputnode.x", late, "inputnode.x")
    top.add_nodes([_stage("silent")])  # a stage with nothing to say adds nothing
    assert collect_descriptions(top) == [
        "Top.", "Early.", "Inner.", "Early after.", "Late.", "Top after."]


def test_repeated_paragraph_is_kept_once_where_it_first_appears():
    top = _stage("top")
    for index in range(2):  # two runs processed alike
        top.add_nodes([_stage(f"run{index}", "Same run text.", f"Run {index}.")])
    assert collect_descriptions(top) == ["Same run text.", "Run 0.", "Run 1."]
    assert collect_descriptions(_stage("bare")) == []
