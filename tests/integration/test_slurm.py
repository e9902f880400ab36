"""Slurm paths against a real single-machine Slurm cluster started by the test.

The cluster (munge + slurmctld + slurmd) lives in a temporary folder (configuration
through ``SLURM_CONF``, state, spool, logs, its own ports), so a system-wide Slurm is
neither needed nor touched; every daemon started here is stopped by its process id.

1. ``scripts/slurm/submit.sh``: one array task per participant (``SLURM_ARRAY_TASK_ID``
   -> i-th participant of the sorted list), then the group job with ``afterok``.
2. ``run.py --use-plugin scripts/slurm/nipype_slurm.yml``: each node of one participant's
   graph runs as its own Slurm job.

Both run the real anatomical pipeline on synthetic participants (T1w at 2 mm) and check
the derivatives against the generator's ground truth, and the group level against the
participant tables.
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

import pytest
import yaml

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

#: Participant options of the Slurm runs: the real anatomical pipeline by default (about
#: 5 minutes per participant on one core); BRAINSCALE_SLURM_PARTICIPANT_ARGS=--reports-only
#: exercises only selection, array mapping and the shared writes, in seconds.
PARTICIPANT_ARGS = os.environ.get("BRAINSCALE_SLURM_PARTICIPANT_ARGS",
                                  "--modalities anat").split()
REPORTS_ONLY = "--reports-only" in PARTICIPANT_ARGS
TIMEOUT = float(os.environ.get("BRAINSCALE_SLURM_TIMEOUT", 1800))
SUBJECTS = ["01", "02", "03"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    with slurm_cluster(root) as env:
        env = {**env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "MPLBACKEND": "Agg",
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               "LOGNAME": getpass.getuser()}  # nipype's SLURM plugin polls squeue -u $LOGNAME
        yield env


@pytest.fixture(scope="module")
def synthetic_bids(tmp_path_factory, synthesize_anat):
    return synthesize_anat(tmp_path_factory.mktemp("synth") / "bids", subjects=len(SUBJECTS))


@pytest.mark.slow
@needs_cluster
def test_array_job_maps_task_ids_to_sorted_participants_then_group(
        cluster, synthetic_bids, tmp_path, check_anat_outputs, check_group_outputs):
    out = tmp_path / "derivatives"
    env = {**cluster, "SBATCH_ARGS": "--cpus-per-task=1 --mem=1500 --time=01:00:00",
           "BRAINSCALE_CMD": str(Path(sys.executable).parent / "run.py"),
           "BRAINSCALE_WORK_ROOT": str(tmp_path / "work")}
    started = time.monotonic()
    submitted = subprocess.run(
        [REPO / "scripts/slurm/submit.sh", str(synthetic_bids), str(out), "--skip-bids-validation",
         *PARTICIPANT_ARGS], env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    array_id, group_id = submitted.stdout.split()
    wait_for_jobs(env, [array_id, group_id], timeout=TIMEOUT)
    print(f"array of {len(SUBJECTS)} + group job: {time.monotonic() - started:.0f} s")

    tasks = sorted(job_records(env, array_id), key=lambda r: int(r["ArrayTaskId"]))
    assert [t["ArrayTaskId"] for t in tasks] == ["0", "1", "2"]
    logs = {t["ArrayTaskId"]: (out / "logs/slurm" / f"participant_{array_id}_{t['ArrayTaskId']}.log")
            .read_text() for t in tasks}
    assert {(t["JobState"], t["ExitCode"]) for t in tasks} == {("COMPLETED", "0:0")}, logs
    # task i processed exactly the i-th participant of the sorted list
    for task, subject in zip(tasks, SUBJECTS, strict=True):
        log = logs[task["ArrayTaskId"]]
        assert re.findall(r"sub-(\w+): (?:completed|partial|failed)\b", log) == [subject], log
    configs = [tomllib.loads(p.read_text())["execution"] for p in (out / "logs").glob("config-*.toml")]
    assert sorted(c["array_index"] for c in configs if c["analysis_level"] == "participant") == [
        0, 1, 2]
    for subject in SUBJECTS:
        assert f"sub-{subject}" in (out / f"sub-{subject}.html").read_text()
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert [s["URL"] for s in description["SourceDatasets"]] == [synthetic_bids.as_uri()]

    (group,) = job_records(env, group_id)
    assert group["StartTime"] >= max(t["EndTime"] for t in tasks)  # ISO timestamps sort
    group_log = (out / "logs/slurm" / f"group_{group_id}.log").read_text()
    if REPORTS_ONLY:
        # reports only: no participant derivatives for the group level to read (exit 66)
        assert group["ExitCode"] == "66:0", group_log
        assert f"no participant derivatives (sub-*/) in {out}" in group_log
        return
    assert (group["JobState"], group["ExitCode"]) == ("COMPLETED", "0:0"), group_log
    labels = [f"sub-{s}" for s in SUBJECTS]
    check_anat_outputs(out, synthetic_bids, labels)
    check_group_outputs(out, labels)


@pytest.mark.slow
@needs_cluster
@pytest.mark.skipif(REPORTS_ONLY, reason="reports only: no graph for the plugin to run")
def test_nipype_slurm_plugin_runs_each_node_as_a_slurm_job(cluster, synthetic_bids, tmp_path,
                                                           check_anat_outputs):
    """run.py --use-plugin scripts/slurm/nipype_slurm.yml: every node is its own Slurm job."""
    plugin = yaml.safe_load((REPO / "scripts/slurm/nipype_slurm.yml").read_text())
    assert plugin["plugin"] == "SLURM"
    # the test node has 2 CPUs and 8 GB: smaller requests than the documented ones
    plugin["plugin_args"]["sbatch_args"] = "--cpus-per-task=1 --mem=1500 --time=00:30:00"
    plugin_file = tmp_path / "nipype_slurm.yml"
    plugin_file.write_text(yaml.safe_dump(plugin))
    out, work = tmp_path / "derivatives", tmp_path / "work"
    started = time.monotonic()
    run = subprocess.run(
        [Path(sys.executable).parent / "run.py", str(synthetic_bids), str(out), "participant",
         "--participant-label", SUBJECTS[0], "--skip-bids-validation", "-w", str(work),
         "--use-plugin", str(plugin_file), *PARTICIPANT_ARGS],
        env=cluster, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    print(f"one participant through the SLURM plugin: {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check_anat_outputs(out, synthetic_bids, [f"sub-{SUBJECTS[0]}"])

    batch_scripts = list(work.rglob("batchscript_*.sh"))
    slurm_outputs = list(work.rglob("slurm-*.out"))  # written by slurmd, one per node job
    assert len(batch_scripts) >= 10 and len(slurm_outputs) == len(batch_scripts)
    submitted = {re.search(r"batchscript_(.+)\.sh", p.name).group(1) for p in batch_scripts}
    assert any("thickness" in name for name in submitted), sorted(submitted)


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
