"""Running Nipype graphs: plugin choice, work directory, crash files, resume.

A graph runs with MultiProc by default, or with any Nipype plugin described in a YAML
file (``--use-plugin``). Nodes cache their results in the work directory, so running the
same graph again with the same work directory resumes where it stopped. Crash files are
written as text and summarised into one readable line per failed node.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brainscale.errors import raise_if_interrupted


class WorkflowFailedError(RuntimeError):
    """A Nipype graph finished with failed nodes.

    Attributes
    ----------
    failures : list of NodeFailure
        One entry per crash file.
    """

    def __init__(self, name: str, failures: list[NodeFailure]):
        self.failures = failures
        lines = [f"{len(failures)} node(s) of {name} failed:"] + [
            f"  - {failure}" for failure in failures
        ]
        super().__init__("\n".join(lines) if failures else f"{name} failed (no crash file)")


@dataclass(frozen=True)
class NodeFailure:
    """What one crash file says, in one readable line."""

    node: str
    error: str
    crash_file: str

    def __str__(self) -> str:
        return f"{self.node}: {self.error} (details: {self.crash_file})"


@dataclass(frozen=True)
class ExecutionPlan:
    """How to execute a graph.

    Attributes
    ----------
    plugin : str
        Nipype plugin name (``MultiProc``, ``Linear``, ``SLURM``, ...).
    plugin_args : dict
        Arguments of the plugin.
    """

    plugin: str = "MultiProc"
    plugin_args: dict[str, Any] | None = None


def available_cpus() -> int:
    """Return the CPUs this process may use (cgroup/affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def plan_execution(
    *, nprocs: int = 0, mem_gb: float = 0.0, plugin_file: Path | None = None
) -> ExecutionPlan:
    """Choose the Nipype plugin and its arguments.

    Parameters
    ----------
    nprocs : int
        Processes for MultiProc (0: every available CPU).
    mem_gb : float
        Memory budget of MultiProc's scheduler (0: no limit given).
    plugin_file : pathlib.Path, optional
        YAML file with ``plugin`` and ``plugin_args`` keys; overrides the default.

    Returns
    -------
    ExecutionPlan
        The plugin and its arguments.

    Raises
    ------
    ValueError
        The YAML file is malformed (the message names the file).
    """
    if plugin_file is not None:
        try:
            content = yaml.safe_load(Path(plugin_file).read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{plugin_file}: invalid YAML ({err})") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{plugin_file}: cannot be read ({err})") from err
        if not isinstance(content, dict) or "plugin" not in content:
            raise ValueError(f"{plugin_file}: expected a mapping with a 'plugin' key")
        from nipype.pipeline import plugins

        if not hasattr(plugins, f"{content['plugin']}Plugin"):
            known = sorted(n[:-6] for n in dir(plugins) if n.endswith("Plugin") and n[0] != "_")
            raise ValueError(f"{plugin_file}: unknown Nipype plugin {content['plugin']!r}; "
                             f"known: {', '.join(known)}")
        if not isinstance(content.get("plugin_args") or {}, dict):
            raise ValueError(f"{plugin_file}: 'plugin_args' must be a mapping")
        args = dict(content.get("plugin_args") or {})
        if content["plugin"] == "MultiProc":
            args.setdefault("n_procs", nprocs or available_cpus())
            if mem_gb:
                args.setdefault("memory_gb", mem_gb)
        return ExecutionPlan(plugin=str(content["plugin"]), plugin_args=args)
    args = {"n_procs": nprocs or available_cpus(), "raise_insufficient": False}
    if mem_gb:
        args["memory_gb"] = mem_gb
    if args["n_procs"] == 1:
        return ExecutionPlan(plugin="Linear", plugin_args={})
    return ExecutionPlan(plugin="MultiProc", plugin_args=args)


def configure_workflow(wf, *, work_dir: Path, crash_dir: Path, stop_on_first_crash: bool) -> None:
    """Point a graph at its work directory and set execution options.

    Parameters
    ----------
    wf : nipype.pipeline.engine.Workflow
        The graph.
    work_dir : pathlib.Path
        Folder where node results are cached (reuse it to resume).
    crash_dir : pathlib.Path
        Folder for text crash files.
    stop_on_first_crash : bool
        Stop the graph at the first failed node.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    crash_dir.mkdir(parents=True, exist_ok=True)
    wf.base_dir = str(work_dir)
    wf.config["execution"].update(
        {
            "crashdump_dir": str(crash_dir),
            "crashfile_format": "txt",
            "stop_on_first_crash": stop_on_first_crash,
            "remove_unnecessary_outputs": False,
            "hash_method": "timestamp",
            "poll_sleep_duration": 0.2,
            "create_report": False,
        }
    )
    wf.config["monitoring"] = {"enabled": False}


def run_workflow(wf, plan: ExecutionPlan, crash_dir: Path):
    """Execute a graph and turn failures into one readable error.

    Parameters
    ----------
    wf : nipype.pipeline.engine.Workflow
        A configured graph (see :func:`configure_workflow`).
    plan : ExecutionPlan
        Plugin and its arguments.
    crash_dir : pathlib.Path
        Where this graph's crash files go.

    Returns
    -------
    networkx.DiGraph
        Nipype's executed graph.

    Raises
    ------
    WorkflowFailedError
        When any node failed; it lists each failed node with its error.
    """
    before = set(crash_dir.glob("crash-*")) if crash_dir.is_dir() else set()
    plugin_args = dict(plan.plugin_args or {})
    plugin_args["status_callback"] = _InterruptionCheckpoint(plugin_args.get("status_callback"))
    try:
        graph = wf.run(plugin=plan.plugin, plugin_args=plugin_args)
    except Exception as err:
        raise_if_interrupted()
        crashes = sorted(set(crash_dir.glob("crash-*")) - before)
        failures = [summarize_crash_file(path) for path in crashes]
        if not failures:
            failures = [NodeFailure(node=wf.name, error=f"{type(err).__name__}: {err}",
                                    crash_file="(none)")]
        raise WorkflowFailedError(wf.name, failures) from err
    raise_if_interrupted()
    return graph


class _InterruptionCheckpoint:
    """A Nipype status callback that re-raises a noted signal at each node start/end.

    A SIGTERM that lands while a node runs in the main process (``run_without_submitting``)
    is swallowed by Nipype as a failure of that node; the scheduler then calls the status
    callback for it, which stops the graph here (see
    :func:`brainscale.errors.note_interruption`). A class, not a closure: Nipype pickles
    the plugin arguments along with the nodes it sends to workers.

    Parameters
    ----------
    callback : callable, optional
        A status callback given in the plugin arguments, called first.
    """

    def __init__(self, callback=None):
        self.callback = callback

    def __call__(self, node, status):
        if self.callback is not None:
            self.callback(node, status)
        raise_if_interrupted()


_NODE_LINE = re.compile(r"^Node: (?P<node>\S+)", re.MULTILINE)


def summarize_crash_file(path: Path) -> NodeFailure:
    """Read a Nipype text crash file and keep the node and its final error line.

    Parameters
    ----------
    path : pathlib.Path
        A ``crash-*.txt`` file.

    Returns
    -------
    NodeFailure
        The failed node's name and its error message.
    """
    text = Path(path).read_text(errors="replace")
    match = _NODE_LINE.search(text)
    node = match.group("node") if match else Path(path).stem
    error_lines = [
        line.strip()
        for line in text.splitlines()
        if re.match(r"^\s*[A-Za-z_.]*(Error|Exception|Interrupt)\b.*:", line)
    ]
    error = error_lines[-1] if error_lines else text.strip().splitlines()[-1]
    return NodeFailure(node=node, error=error[:500], crash_file=str(path))

