"""Nipype execution: crash summaries, resume from the work directory, plugin files."""

from __future__ import annotations

from pathlib import Path

import pytest
from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from brainscale.workflows.engine import (
    ExecutionPlan,
    WorkflowFailedError,
    configure_workflow,
    plan_execution,
    run_workflow,
)


def _append_line(counter_dir, value):
    import os

    with open(os.path.join(counter_dir, "count.txt"), "a") as handle:
        handle.write(f"{value}\n")
    return value * 2


def _fail_on_negative(value):
    if value < 0:
        raise ValueError(f"value must be positive, got {value}")
    return value


def _graph(counter_dir: Path, value: int) -> pe.Workflow:
    wf = pe.Workflow(name="toy_wf")
    inputnode = pe.Node(IdentityInterface(fields=["value"]), name="inputnode")
    inputnode.inputs.value = value
    double = pe.Node(Function(input_names=["counter_dir", "value"], output_names=["out"],
                              function=_append_line), name="double")
    double.inputs.counter_dir = str(counter_dir)
    check = pe.Node(Function(input_names=["value"], output_names=["out"],
                             function=_fail_on_negative), name="check")
    wf.connect([(inputnode, double, [("value", "value")]), (double, check, [("out", "value")])])
    return wf


@pytest.mark.parametrize("plan", [ExecutionPlan("Linear", {}),
                                  ExecutionPlan("MultiProc", {"n_procs": 2})])
def test_failed_node_is_summarized_in_one_readable_line(tmp_path, plan):
    wf = _graph(tmp_path, -3)
    crash_dir = tmp_path / "crash"
    configure_workflow(wf, work_dir=tmp_path / "work", crash_dir=crash_dir,
                       stop_on_first_crash=False)
    with pytest.raises(WorkflowFailedError) as info:
        run_workflow(wf, plan, crash_dir)
    (failure,) = info.value.failures
    assert failure.node.endswith("check")
    assert failure.error == "ValueError: value must be positive, got -6"
    assert "1 node(s) of toy_wf failed" in str(info.value)
    assert Path(failure.crash_file).is_file()


def test_rerun_with_same_work_dir_resumes_from_cache(tmp_path):
    counter = tmp_path / "count.txt"
    for _ in range(2):
        wf = _graph(tmp_path, 4)
        configure_workflow(wf, work_dir=tmp_path / "work", crash_dir=tmp_path / "crash",
                           stop_on_first_crash=False)
        run_workflow(wf, ExecutionPlan("Linear", {}), tmp_path / "crash")
    assert counter.read_text().splitlines() == ["4"]  # the node ran once


def test_plugin_file_overrides_default(tmp_path):
    plugin = tmp_path / "slurm.yml"
    plugin.write_text("plugin: SLURM\nplugin_args:\n  sbatch_args: '--mem=4G'\n")
    plan = plan_execution(nprocs=2, plugin_file=plugin)
    assert plan == ExecutionPlan("SLURM", {"sbatch_args": "--mem=4G"})
    assert plan_execution(nprocs=2).plugin == "MultiProc"
    assert plan_execution(nprocs=1).plugin == "Linear"
    (tmp_path / "bad.yml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yml"):
        plan_execution(plugin_file=tmp_path / "bad.yml")


def _signal_self(counter_dir, value):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)  # lands inside the node, in the main process
    with open(os.path.join(counter_dir, "after_signal.txt"), "w") as handle:
        handle.write("the node went on\n")
    return value


@pytest.mark.parametrize("plan", [ExecutionPlan("Linear", {}),
                                  ExecutionPlan("MultiProc", {"n_procs": 2})])
def test_sigterm_inside_a_main_process_node_stops_the_graph(tmp_path, plan):
    """Nipype swallows any exception of a node; the noted signal must still stop the graph."""
    import signal

    from brainscale.bids_app.parallel import install_signal_handlers
    from brainscale.errors import RunInterrupted, forget_interruption

    wf = _graph(tmp_path, 4)
    stop = pe.Node(Function(input_names=["counter_dir", "value"], output_names=["out"],
                            function=_signal_self), name="stop", run_without_submitting=True)
    stop.inputs.counter_dir = str(tmp_path)
    later = pe.Node(Function(input_names=["counter_dir", "value"], output_names=["out"],
                             function=_append_line), name="later")
    later.inputs.counter_dir = str(tmp_path / "later")
    (tmp_path / "later").mkdir()
    wf.connect([(wf.get_node("check"), stop, [("out", "value")]),
                (stop, later, [("out", "value")])])
    crash_dir = tmp_path / "crash"
    configure_workflow(wf, work_dir=tmp_path / "work", crash_dir=crash_dir,
                       stop_on_first_crash=False)
    previous = install_signal_handlers()
    try:
        with pytest.raises(RunInterrupted) as info:
            run_workflow(wf, plan, crash_dir)
    finally:
        forget_interruption()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert info.value.signum == signal.SIGTERM
    assert not (tmp_path / "after_signal.txt").exists()
    assert not (tmp_path / "later" / "count.txt").exists()  # nothing ran after the signal
