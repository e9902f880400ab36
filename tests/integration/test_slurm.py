"""Slurm paths against a real single-machine Slurm cluster started by the test.

The cluster (munge + slurmctld + slurmd) lives in a temporary folder (configuration
through ``SLURM_CONF``, state, spool, logs, its own ports), so a system-wide Slurm is
neither needed nor touched; every daemon started here is stopped by its process id.

1. ``scripts/slurm/submit.sh``: one array task per participant (``SLURM_ARRAY_TASK_ID``
   -> i-th participant of the sorted list), then the group job with ``afterok``.
2. ``scripts/slurm/nipype_slurm.yml`` through the engine's ``--use-plugin`` path: each
   node of a graph runs as its own Slurm job.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

TOOLS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")

CONF = """\
ClusterName=brainscale-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={port}
SlurmdPort={port_d}
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=900
DefMemPerCPU=1000
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def missing_reason() -> str | None:
    """Say why a test cluster cannot start here (``None`` when it can)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd for the test needs root"
    return None


def _munge_works() -> bool:
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    if encode.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=encode.stdout, capture_output=True).returncode == 0


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    detail = log.read_text()[-2000:] if log is not None and log.is_file() else ""
    raise RuntimeError(f"timed out waiting for {what}\n{detail}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def slurm_cluster(root: Path, cpus: int = 2, memory_mb: int = 8000):
    """Run a one-node Slurm cluster; yield the environment that points clients at it.

    Parameters
    ----------
    root : pathlib.Path
        Empty folder for configuration, state and logs.
    cpus, memory_mb : int
        Resources of the single node.

    Yields
    ------
    dict
        ``os.environ`` plus ``SLURM_CONF``.
    """
    started: list[subprocess.Popen] = []
    try:
        if not _munge_works():
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            started.append(subprocess.Popen(["runuser", "-u", "munge", "--", "munged", "-F"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait(_munge_works, 30, "munged")
        for folder in ("state", "spool"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        with socket.socket() as probe:  # a free port pair near 17000
            probe.bind(("", 0))
            port = 17000 + probe.getsockname()[1] % 2000
        conf = root / "slurm.conf"
        conf.write_text(CONF.format(host=host, port=port, port_d=port + 1, root=root,
                                    cpus=cpus, memory=memory_mb))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        for daemon in ("slurmctld", "slurmd"):
            started.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
            time.sleep(1)

        def node_idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                 text=True)
            return out.returncode == 0 and out.stdout.strip() in ("idle", "idle*") and all(
                p.poll() is None for p in started)

        _wait(node_idle, 90, "the Slurm node to become idle", root / "slurmd.log")
        yield env
    finally:
        if started and (root / "slurm.conf").is_file():
            subprocess.run(["scancel", "--full", "-u", "root"],
                           env={**os.environ, "SLURM_CONF": str(root / "slurm.conf")},
                           capture_output=True, timeout=30)
        for process in reversed(started):
            _stop(process)


def job_records(env: dict, job_id: str) -> list[dict[str, str]]:
    """Return ``scontrol show job`` records (one per array task) as dictionaries.

    Parameters
    ----------
    env : dict
        Environment with ``SLURM_CONF``.
    job_id : str
        Job (or array job) id.

    Returns
    -------
    list of dict
        Key=value fields of each record.
    """
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True,
                         text=True, check=True).stdout
    records = []
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        records.append(fields)
    return records


def wait_for_jobs(env: dict, job_ids: list[str], timeout: float) -> None:
    """Wait until none of the jobs is pending or running.

    Parameters
    ----------
    env : dict
        Environment with ``SLURM_CONF``.
    job_ids : list of str
        Job ids.
    timeout : float
        Seconds.
    """
    def done() -> bool:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i"], env=env,
                             capture_output=True, text=True)
        return out.returncode == 0 and not out.stdout.strip()

    _wait(done, timeout, f"Slurm jobs {', '.join(job_ids)}")


needs_cluster = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))

#: Participant options of the Slurm runs. The default rebuilds each participant's report
#: from its (empty) derivatives, which exercises selection, array mapping and shared
#: writes in seconds; set BRAINSCALE_SLURM_PARTICIPANT_ARGS="--modalities anat" to run
#: the real pipeline (tens of minutes per participant on 2 cores).
PARTICIPANT_ARGS = os.environ.get("BRAINSCALE_SLURM_PARTICIPANT_ARGS", "--reports-only").split()
SUBJECTS = ["01", "02", "03"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    with slurm_cluster(root) as env:
        env = {**env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "MPLBACKEND": "Agg",
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        yield env


@pytest.fixture(scope="module")
def synthetic_bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "bids"
    subprocess.run([Path(sys.executable).parent / "brainscale", "synth", str(root), "--subjects",
                    "3", "--sites", "2", "--modalities", "anat"], check=True, capture_output=True)
    return root


@pytest.mark.slow
@needs_cluster
def test_array_job_maps_task_ids_to_sorted_participants_then_group(cluster, synthetic_bids,
                                                                   tmp_path):
    out = tmp_path / "derivatives"
    env = {**cluster, "SBATCH_ARGS": "--cpus-per-task=1 --mem=1500 --time=00:30:00",
           "BRAINSCALE_CMD": str(Path(sys.executable).parent / "run.py"),
           "BRAINSCALE_WORK_ROOT": str(tmp_path / "work")}
    submitted = subprocess.run(
        [REPO / "scripts/slurm/submit.sh", str(synthetic_bids), str(out), "--skip-bids-validation",
         *PARTICIPANT_ARGS], env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    array_id, group_id = submitted.stdout.split()
    wait_for_jobs(env, [array_id, group_id], timeout=float(os.environ.get(
        "BRAINSCALE_SLURM_TIMEOUT", 600)))

    tasks = sorted(job_records(env, array_id), key=lambda r: int(r["ArrayTaskId"]))
    assert [t["ArrayTaskId"] for t in tasks] == ["0", "1", "2"]
    assert {(t["JobState"], t["ExitCode"]) for t in tasks} == {("COMPLETED", "0:0")}
    # task i processed exactly the i-th participant of the sorted list
    for task, subject in zip(tasks, SUBJECTS, strict=True):
        log = (out / "logs/slurm" / f"participant_{array_id}_{task['ArrayTaskId']}.log").read_text()
        assert re.findall(r"sub-(\w+): (?:done|FAILED)", log) == [subject], log
    configs = [tomllib.loads(p.read_text()) for p in (out / "logs").glob("config-*.toml")]
    assert sorted(c["execution"]["array_index"] for c in configs) == [0, 1, 2]
    for subject in SUBJECTS:
        assert f"sub-{subject}" in (out / f"sub-{subject}.html").read_text()
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert [s["URL"] for s in description["SourceDatasets"]] == [synthetic_bids.as_uri()]

    (group,) = job_records(env, group_id)
    assert group["StartTime"] >= max(t["EndTime"] for t in tasks)  # ISO timestamps sort
    group_log = (out / "logs/slurm" / f"group_{group_id}.log").read_text()
    if "--reports-only" in PARTICIPANT_ARGS:
        # reports only: no participant derivatives for the group level to read (exit 66)
        assert group["ExitCode"] == "66:0", group_log
        assert f"no participant derivatives (sub-*/) in {out}" in group_log
    else:
        assert (group["JobState"], group["ExitCode"]) == ("COMPLETED", "0:0"), group_log
        assert (out / "group" / "group.html").is_file()


def _voxel_sum(in_file):
    import nibabel as nib
    import numpy as np

    return float(np.asarray(nib.load(in_file).dataobj, dtype="float64").sum())


@pytest.mark.slow
@needs_cluster
def test_nipype_slurm_plugin_runs_each_node_as_a_slurm_job(cluster, synthetic_bids, tmp_path,
                                                           monkeypatch):
    """The YAML given to --use-plugin makes the engine submit every node through sbatch."""
    from nipype import Node, Workflow
    from nipype.interfaces.utility import Function

    from workflows.engine import configure_workflow, plan_execution, run_workflow

    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    monkeypatch.setenv("PATH", cluster["PATH"])
    monkeypatch.setenv("LOGNAME", getpass.getuser())  # nipype's SLURM plugin reads it
    plan = plan_execution(plugin_file=REPO / "scripts/slurm/nipype_slurm.yml")
    assert plan.plugin == "SLURM"
    plan.plugin_args["sbatch_args"] = "--cpus-per-task=1 --mem=1000 --time=00:10:00"

    wf = Workflow(name="slurm_plugin_wf")
    t1w = {s: synthetic_bids / f"sub-{s}/anat/sub-{s}_T1w.nii.gz" for s in SUBJECTS}
    for subject, path in t1w.items():
        node = Node(Function(input_names=["in_file"], output_names=["total"],
                             function=_voxel_sum), name=f"voxel_sum_{subject}")
        node.inputs.in_file = str(path)
        wf.add_nodes([node])
    configure_workflow(wf, work_dir=tmp_path / "work", crash_dir=tmp_path / "crash",
                       stop_on_first_crash=True)
    graph = run_workflow(wf, plan, tmp_path / "crash")

    results = {n.name.rsplit("_", 1)[-1]: n.result.outputs.total for n in graph.nodes()}
    truth = {s: float(np.asarray(nib.load(p).dataobj, dtype="float64").sum())
             for s, p in t1w.items()}
    assert results == pytest.approx(truth, rel=1e-12)
    batch_scripts = list((tmp_path / "work" / "slurm_plugin_wf" / "batch").glob("batchscript_*.sh"))
    assert len(batch_scripts) == len(SUBJECTS)
    slurm_outputs = list((tmp_path / "work" / "slurm_plugin_wf" / "batch").glob("slurm-*.out"))
    assert len(slurm_outputs) == len(SUBJECTS)  # written by slurmd, one per node job


# ------------------------------------------------- the scripts alone (fast, no Slurm needed)

FAKE_SBATCH = """#!/bin/bash
printf '%s\\n' "$*" >> "$SBATCH_LOG"
echo "$(( 100 + $(wc -l < "$SBATCH_LOG") ));cluster"
"""


def test_submit_script_sizes_the_array_and_chains_the_group(tmp_path):
    """A recording sbatch: the array spans the participants and the group waits on it."""
    bids_dir = tmp_path / "bids"
    for label in ("10", "02", "07", "x1"):
        (bids_dir / f"sub-{label}").mkdir(parents=True)
    (bids_dir / "sub-file.txt").write_text("not a participant folder")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(FAKE_SBATCH)
    (fake / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch.log"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SBATCH_LOG": str(log),
           "GROUP_ARGS": "--harmonize-by site"}
    out = subprocess.run([REPO / "scripts/slurm/submit.sh", str(bids_dir), str(tmp_path / "out"),
                          "--modalities", "anat"], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["101", "102"]
    participant_call, group_call = log.read_text().splitlines()
    assert "--array=0-3 " in participant_call
    assert participant_call.endswith(f"participant.sbatch {bids_dir} {tmp_path / 'out'} "
                                     "--modalities anat")
    assert "--dependency=afterok:101 " in group_call
    assert group_call.endswith(f"group.sbatch {bids_dir} {tmp_path / 'out'} --harmonize-by site")

    log.unlink()
    env["PARTICIPANTS"] = "07 10"
    subprocess.run([REPO / "scripts/slurm/submit.sh", str(bids_dir), str(tmp_path / "out")],
                   env=env, capture_output=True, text=True, check=True)
    participant_call = log.read_text().splitlines()[0]
    assert "--array=0-1 " in participant_call
    assert participant_call.endswith("--participant-label 07 10")


def test_array_script_passes_the_task_id_as_array_index(tmp_path):
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_JOB_ID": "42",
           "SLURM_CPUS_PER_TASK": "3", "BRAINSCALE_CMD": "echo",
           "BRAINSCALE_WORK_ROOT": str(tmp_path)}
    out = subprocess.run(["bash", REPO / "scripts/slurm/participant.sbatch", "/in", "/out",
                          "--seed", "1"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "/in", "/out", "participant", "--array-index", "5", "--nprocs", "3", "--omp-nthreads",
        "3", "-w", f"{tmp_path}/brainscale-work_42_5", "--seed", "1"]
    missing = subprocess.run(["bash", REPO / "scripts/slurm/participant.sbatch", "/in", "/out"],
                             env={k: v for k, v in env.items() if k != "SLURM_ARRAY_TASK_ID"},
                             capture_output=True, text=True)
    assert missing.returncode == 64
