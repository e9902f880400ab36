"""The floors of the code base: imports point down, and no module import cycle exists.

Floors, bottom up (README, Development): ``brainscale`` (foundation: errors, templates
and atlases, BIDS paths, atomic I/O; no Nipype), ``brainscale.workflows`` (science and
Nipype graphs, folder ``workflows/``), ``brainscale.bids_app`` (the application, folder
``bids_app/``). Every import counts, including those placed inside functions, which is
where cycles hide.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: source folder -> installed package name (pyproject.toml's ``package-dir``), bottom up
PACKAGES = {"brainscale": "brainscale", "workflows": "brainscale.workflows",
            "bids_app": "brainscale.bids_app"}
FLOORS = tuple(PACKAGES.values())


def _floor(module: str) -> int | None:
    """Floor of a BrainScale module (the longest package prefix), None for others."""
    levels = [level for level, package in enumerate(FLOORS)
              if module == package or module.startswith(package + ".")]
    return max(levels) if levels else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[parts[0]], *parts[1:]])


def _imports(path: Path, module: str) -> set[str]:
    """Every module name imported anywhere in ``path`` (absolute or relative)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from package import module`` imports the submodule
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _project_graph() -> dict[str, set[str]]:
    modules = {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target in _imports(path, name) if target in modules
                       and target != name}
    return graph


def _raw_imports() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path, _module_name(path))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }


def test_imports_point_down():
    upward = [
        f"{module} -> {target}"
        for module, targets in _raw_imports().items()
        for target in targets
        if _floor(target) is not None and _floor(target) > _floor(module)
    ]
    assert upward == [], "imports pointing up a floor:\n" + "\n".join(sorted(upward))


def test_foundation_does_not_import_nipype():
    offenders = [
        f"{module} -> {target}"
        for module, targets in _raw_imports().items()
        if _floor(module) == 0
        for target in targets
        if target.split(".")[0] in ("nipype", "niworkflows")
    ]
    assert offenders == []


def test_every_module_imports_brainscale_by_its_installed_name():
    """``workflows`` and ``bids_app`` are folders, not import names (other wheels ship them)."""
    bare = [
        f"{module} -> {target}"
        for module, targets in _raw_imports().items()
        for target in targets
        if target.split(".")[0] in ("workflows", "bids_app")
    ]
    assert bare == []


def test_pyproject_installs_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed_as = {folder: package for package, folder in config["package-dir"].items()}
    assert {"brainscale": "brainscale", **installed_as} == PACKAGES
    folders = {_module_name(init) for folder in PACKAGES for init in
               (ROOT / folder).rglob("__init__.py")}
    assert set(config["packages"]) == folders


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph[node]):
            # a package's __init__ importing its own submodules is not a cycle
            if child.startswith(node + "."):
                continue
            if state.get(child) == 1:
                return stack[stack.index(child):] + [child]
            if child not in state:
                found = visit(child)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_import_cycle():
    cycle = _find_cycle(_project_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("graph, cyclic", [
    ({"a": {"b"}, "b": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"p": {"p.x"}, "p.x": set()}, False),
])
def test_cycle_finder_finds_cycles(graph, cyclic):
    assert (_find_cycle(graph) is not None) == cyclic
