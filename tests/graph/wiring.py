"""Read a built workflow's wiring across the faces of its sub-workflows."""

from __future__ import annotations


def flat_connections(wf) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Return ``(source, destination) -> [(source field, destination field)]`` of ``wf``.

    A sub-workflow's ``inputnode`` and ``outputnode`` only pass fields on, so a connection
    through them is reported between the nodes that really produce and consume the field;
    the faces of ``wf`` itself are nodes like the others. Node names are short (without
    the sub-workflow they sit in).
    """
    graph = wf._create_flat_graph()

    def face(node):
        return node.name in ("inputnode", "outputnode") and node._hierarchy != wf.name

    def targets(node, field):
        for _, dest, data in graph.out_edges(node, data=True):
            for src, dst in data["connect"]:
                if src == field:
                    yield from (targets(dest, dst) if face(dest) else [(dest, dst)])

    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for node in graph.nodes():
        if face(node):
            continue
        fields = {src for _, _, data in graph.out_edges(node, data=True)
                  for src, _ in data["connect"]}
        for field in sorted(fields):
            for dest, dst in targets(node, field):
                found.setdefault((node.name, dest.name), []).append((field, dst))
    return found
