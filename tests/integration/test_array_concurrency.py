"""Array tasks writing into one shared output_dir at the same time.

Truth: after N concurrent writers, ``dataset_description.json`` is valid, complete JSON
that lists every source, was never observed half-written, and every participant's
outputs and run logs are present exactly once. The eight tasks run the real anatomical
pipeline (slow), so their derivatives are also checked against the generator's truth and
read back by the group level.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from brainscale.derivatives import write_dataset_description

TASKS = 8
REQUIRED = {"Name", "BIDSVersion", "DatasetType", "GeneratedBy"}


def _write_many(output_dir: str, bids_dir: str, start, repeats: int) -> None:
    start.wait()
    for _ in range(repeats):
        write_dataset_description(output_dir, bids_dir)


def _watch(path: str, stop, seen) -> None:
    """Read the file as fast as possible; record every read that is not valid JSON."""
    bad = reads = 0
    while not stop.is_set():
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            json.loads(text)
        except ValueError:
            bad += 1
    seen["bad"], seen["reads"] = bad, reads


def test_concurrent_description_writers_merge_every_source(tmp_path):
    """Eight processes with eight different source datasets race on one description."""
    output_dir = tmp_path / "derivatives"
    sources = []
    for index in range(TASKS):
        source = tmp_path / f"raw{index}"
        source.mkdir()
        (source / "dataset_description.json").write_text(json.dumps({"Name": f"raw {index}"}))
        sources.append(source)
    context = multiprocessing.get_context("fork")
    start, stop = context.Barrier(TASKS), context.Event()
    manager = context.Manager()
    seen = manager.dict()
    watcher = context.Process(target=_watch, args=(str(output_dir / "dataset_description.json"),
                                                   stop, seen))
    watcher.start()
    writers = [context.Process(target=_write_many, args=(str(output_dir), str(s), start, 15))
               for s in sources]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    stop.set()
    watcher.join(timeout=30)
    assert [w.exitcode for w in writers] == [0] * TASKS

    description = json.loads((output_dir / "dataset_description.json").read_text())
    assert REQUIRED <= description.keys()
    assert sorted(s["URL"] for s in description["SourceDatasets"]) == sorted(
        s.resolve().as_uri() for s in sources)
    assert sorted(s["Name"] for s in description["SourceDatasets"]) == sorted(
        f"raw {i}" for i in range(TASKS))
    assert seen["reads"] > 0 and seen["bad"] == 0
    assert not [p.name for p in output_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def demo_bids(tmp_path_factory, synthesize_anat):
    return synthesize_anat(tmp_path_factory.mktemp("demo") / "bids", subjects=TASKS)


#: Participant options of the array tasks: the real anatomical pipeline by default;
#: BRAINSCALE_ARRAY_PARTICIPANT_ARGS=--reports-only rebuilds only the reports (selection,
#: array mapping and every shared write, in seconds).
PARTICIPANT_ARGS = os.environ.get("BRAINSCALE_ARRAY_PARTICIPANT_ARGS",
                                  "--modalities anat").split()


@pytest.mark.slow
def test_eight_array_tasks_share_one_output_dir(demo_bids, tmp_path, check_anat_outputs,
                                                check_group_outputs):
    """Eight array tasks (Slurm and AWS Batch variables) start together on the demo data."""
    out = tmp_path / "derivatives"
    run_py = Path(sys.executable).parent / "run.py"
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX")}
    base_env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg",
                    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    processes = []
    started = time.monotonic()
    for index in range(TASKS):
        variable = "SLURM_ARRAY_TASK_ID" if index % 2 else "AWS_BATCH_JOB_ARRAY_INDEX"
        env = {**base_env, variable: str(index)}
        processes.append(subprocess.Popen(
            [str(run_py), str(demo_bids), str(out), "participant", "--skip-bids-validation",
             "--nprocs", "1", "-w", str(tmp_path / f"work{index}"), *PARTICIPANT_ARGS],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=float(os.environ.get("BRAINSCALE_ARRAY_TIMEOUT", 1800)))[0]
            for p in processes]
    print(f"{TASKS} concurrent array tasks took {time.monotonic() - started:.1f} s")
    assert [p.returncode for p in processes] == [0] * TASKS, "\n".join(logs)

    labels = [f"sub-{i:02d}" for i in range(1, TASKS + 1)]
    for index, (log, label) in enumerate(zip(logs, labels, strict=True)):
        # task i processed the i-th participant of the sorted list, and only it
        assert re.findall(r"(sub-\w+): (?:completed|partial|failed)\b", log) == [label], (index, log)
        assert label in (out / f"{label}.html").read_text()
    description = json.loads((out / "dataset_description.json").read_text())
    assert REQUIRED <= description.keys()
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "BrainScale"
    assert [s["URL"] for s in description["SourceDatasets"]] == [demo_bids.as_uri()]
    configs = [tomllib.loads(p.read_text()) for p in (out / "logs").glob("config-*.toml")]
    assert sorted(c["execution"]["array_index"] for c in configs) == list(range(TASKS))
    assert len(list((out / "logs").glob("brainscale-*.log"))) == TASKS
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers
    if "--reports-only" in PARTICIPANT_ARGS:
        return
    # every participant's derivatives are complete, readable and right; the group level
    # (run once all tasks are done) reads all eight
    check_anat_outputs(out, demo_bids, labels)
    group = subprocess.run([str(run_py), str(demo_bids), str(out), "group"], env=base_env,
                           capture_output=True, text=True)
    assert group.returncode == 0, group.stdout[-3000:] + group.stderr[-3000:]
    check_group_outputs(out, labels)
