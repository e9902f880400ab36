"""Methods text collected from the graph that was built.

Each workflow factory attaches what its stage does, with ``[@key]`` citations, to the
workflow it returns: ``workflow.__desc__`` (said before its sub-workflows) and, optionally,
``workflow.__postdesc__`` (said after them), as niworkflows' ``LiterateWorkflow`` does. A
stage that was not built (no GLM without events, no distortion correction without a field
map) is therefore not described.
"""

from __future__ import annotations


def _sub_workflows(workflow) -> list:
    """Return the workflows nested directly in ``workflow``, in execution (topological) order.

    Among the nodes whose inputs are all placed, the one added first comes first, so the
    order is the same on every build.
    """
    graph = workflow._graph
    pending = list(graph.nodes())
    placed: list = []
    while pending:
        ready = next(node for node in pending
                     if all(pred in placed for pred in graph.predecessors(node)))
        pending.remove(ready)
        placed.append(ready)
    return [node for node in placed if hasattr(node, "_graph")]


def collect_descriptions(workflow) -> list[str]:
    """Collect the methods paragraphs of a workflow and of its sub-workflows, in order.

    Parameters
    ----------
    workflow : nipype.pipeline.engine.Workflow
        A built graph (not run). Its ``__desc__``, then those of the sub-workflows (each
        walked the same way, in topological order, ties in the order they were added),
        then its ``__postdesc__``.

    Returns
    -------
    list of str
        Non-empty paragraphs; one repeated word for word (two BOLD runs processed alike) is
        kept once, where it first appears.
    """
    found: list[str] = []

    def visit(node) -> None:
        found.append(getattr(node, "__desc__", None) or "")
        for child in _sub_workflows(node):
            visit(child)
        found.append(getattr(node, "__postdesc__", None) or "")

    visit(workflow)
    return list(dict.fromkeys(text.strip() for text in found if text and text.strip()))
