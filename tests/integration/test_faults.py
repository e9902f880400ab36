"""Faults and bad inputs, end to end: exit codes, one-line messages, no half outputs.

A tiny synthetic dataset (two participants, one 20-volume BOLD run and a 6-direction
DWI series each, no T1w) keeps these cheap: every bad input must be caught before the
Nipype graph runs, so most tests never start one. The signal/lock test runs a real
graph for a few seconds and stops it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainscale.bids_app import preflight, publish
from brainscale.bids_app.run import main
from brainscale.bids_app.synth import SynthSpec, generate_dataset
from brainscale.errors import ExitCode, OutputError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "bids"
    generate_dataset(root, SynthSpec(subjects=2, sites=1, modalities=("func", "dwi"),
                                     bold_volumes=20, directions=6))
    return root


@pytest.fixture
def bids_copy(tiny_bids, tmp_path) -> Path:
    copy = tmp_path / "bids"
    shutil.copytree(tiny_bids, copy)
    return copy


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _bold(root: Path, subject: str = "01") -> Path:
    return root / f"sub-{subject}" / "func" / f"sub-{subject}_task-rest_bold.nii.gz"


def _rewrite(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, affine), path)


def _truncate(path, root):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _nan_voxels(path, root):
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[10, 10, 10, 3] = np.nan
    _rewrite(path, data, img.affine)


def _constant(path, root):
    img = nib.load(path)
    _rewrite(path, np.full(img.shape, 7.0, np.float32), img.affine)


def _singular_affine(path, root):
    img = nib.load(path)
    img.header.set_sform(np.diag([2.0, 2.0, 0.0, 1.0]), code=1)
    img.header.set_qform(None, code=0)
    img.header["vox_offset"] = 352
    raw = img.header.binaryblock + b"\0" * 4 + np.asarray(img.dataobj).astype(
        img.header.get_data_dtype()).tobytes(order="F")
    path.write_bytes(gzip.compress(raw))


def _huge_header(path, root):
    """A 104-byte-class .nii.gz whose header declares 20000^3 (or 2000^3) voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000, 2) if "dwi" not in path.name else (20000,) * 3)
    header.set_data_dtype(np.float32)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))


def _bval_mismatch(path, root):
    bval = root / "sub-01" / "dwi" / "sub-01_dwi.bval"
    bval.write_text(" ".join(bval.read_text().split()[:-1]) + "\n")


def _malformed_sidecar(path, root):
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text('{"RepetitionTime": 2.0,')


CORRUPTIONS = {
    "truncated gzip": (_truncate, "bold", "truncated or corrupt"),
    "NaN voxels": (_nan_voxels, "bold", "NaN or infinite"),
    "constant image": (_constant, "bold", "the image is constant"),
    "singular affine": (_singular_affine, "bold", "singular"),
    "header declaring 2000^3 x 2": (_huge_header, "bold", "impossible in a"),
    "header declaring 20000^3": (_huge_header, "dwi", "implausible dimensions"),
    "bval/bvec mismatch": (_bval_mismatch, "dwi", "b-values for 8 volumes"),
    "malformed JSON sidecar": (_malformed_sidecar, "bold", "malformed JSON sidecar"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_bad_input_is_65_in_one_line_before_any_node(bids_copy, tmp_path, capsys, name):
    corrupt, kind, expected = CORRUPTIONS[name]
    target = _bold(bids_copy) if kind == "bold" else bids_copy / "sub-01/dwi/sub-01_dwi.nii.gz"
    corrupt(target, bids_copy)
    if name.startswith("header"):
        assert target.stat().st_size < 200  # the 104-byte file
    out, work = tmp_path / "out", tmp_path / "work"
    code, err = _run(capsys, bids_copy, out, "participant", "--participant-label", "01",
                     "-w", work, "--skip-bids-validation")
    assert code == ExitCode.DATA_ERROR == 65, err
    assert "Traceback" not in err
    problem = [line for line in err.splitlines() if expected in line]
    assert problem and target.name.split(".")[0] in problem[0], err
    assert not (work / "sub-01" / "sub_01_wf").exists()  # no node ever ran
    assert not (out / "sub-01").exists()
    assert "FAILED" in (out / "sub-01.html").read_text()


def test_malformed_sidecar_is_its_participants_problem_only(bids_copy, tmp_path, capsys):
    sidecar = bids_copy / "sub-02" / "dwi" / "sub-02_dwi.json"
    sidecar.write_text("{not json")
    out = tmp_path / "out"
    # another participant: indexing must not abort (pybids raises on the file by default)
    code, err = _run(capsys, bids_copy, out, "participant", "--participant-label", "01",
                     "--reports-only", "-w", tmp_path / "work")
    assert code == ExitCode.OK, err
    assert "sub-02_dwi.json" not in err
    # both: sub-02 is charged with its file, sub-01 (made unusable otherwise) with its own
    _constant(_bold(bids_copy), bids_copy)
    code, err = _run(capsys, bids_copy, out, "participant", "-w", tmp_path / "work")
    assert code == 65 and "Traceback" not in err
    assert "sub-02_dwi.json: malformed JSON sidecar" in err
    assert "sub-02_dwi.json" not in (out / "sub-01.html").read_text()
    assert "sub-02_dwi.json" in (out / "sub-02.html").read_text()


def test_environment_errors_are_73_before_processing(tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "logs").write_text("a file where the logs folder goes")
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "work")
    assert code == ExitCode.CANNOT_CREATE_OUTPUT == 73 and "logs folder" in err, err
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, err = _run(capsys, tiny_bids, tmp_path / "out2", "participant", "-w", blocker / "w")
    assert code == 73 and "work directory" in err, err
    assert "Traceback" not in err


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 MiB tmpfs (a full disk in miniature); skipped where mounting is not allowed."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_is_73_before_processing(tiny_bids, tmp_path, small_tmpfs, capsys):
    code, err = _run(capsys, tiny_bids, small_tmpfs / "out", "participant",
                     "-w", tmp_path / "work")
    assert code == 73 and "MiB free" in err and "Traceback" not in err, err


def test_full_disk_during_publish_keeps_the_previous_folder(tmp_path, small_tmpfs):
    staged = tmp_path / "staging" / "anat"
    (staged / "sub-01" / "anat").mkdir(parents=True)
    (staged / "sub-01" / "anat" / "sub-01_big.nii.gz").write_bytes(os.urandom(24 * 2**20))
    output = small_tmpfs / "out"
    (output / "sub-01" / "anat").mkdir(parents=True)
    (output / "sub-01" / "anat" / "sub-01_old.tsv").write_text("previous run\n")
    with pytest.raises(OutputError, match="No space left|nothing of this run"):
        publish.publish_participant([staged], output, "01", {"ran": []})
    assert sorted(p.name for p in output.iterdir()) == ["sub-01"]  # no leftovers
    assert (output / "sub-01" / "anat" / "sub-01_old.tsv").read_text() == "previous run\n"


def _staged(tmp_path: Path, n_files: int = 6) -> Path:
    staged = tmp_path / "staging" / "func_00_wf"
    for k in range(n_files):
        path = staged / "sub-01" / "func" / f"sub-01_task-rest_desc-x{k}_timeseries.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"new {k}\n")
    return staged


def _killed_publish(output: Path, staged: Path, when: str) -> int:
    """Publish in a forked child that SIGKILLs itself at ``when``; return its status."""
    pid = os.fork()
    if pid == 0:  # child
        placed = []
        original_place, original_rename = publish._place, os.rename

        def place(source, target):
            original_place(source, target)
            placed.append(target)
            if when == "mid-copy" and len(placed) == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        def rename(source, target):
            original_rename(source, target)
            if when == "between renames" and ".brainscale-retired" in str(target):
                os.kill(os.getpid(), signal.SIGKILL)

        publish._place = place
        os.rename = rename
        try:
            publish.publish_participant([staged], output, "01", {"ran": []})
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("when", ["mid-copy", "between renames"])
def test_kill_during_publish_leaves_old_or_new_and_is_cleaned(tmp_path, when):
    output = tmp_path / "out"
    old = output / "sub-01" / "func" / "sub-01_task-rest_desc-old_timeseries.tsv"
    old.parent.mkdir(parents=True)
    old.write_text("old\n")
    publish.write_json(output / "sub-01" / publish.MANIFEST_NAME,
                       {"files": ["func/sub-01_task-rest_desc-old_timeseries.tsv"]})
    status = _killed_publish(output, _staged(tmp_path), when)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    leftovers = [p.name for p in output.iterdir() if p.name.startswith(".brainscale-")]
    assert leftovers  # the kill left hidden work behind
    visible = output / "sub-01"
    # readers never see a mix: the old folder, or (between renames) none at all
    assert not visible.exists() or sorted(p.name for p in (visible / "func").iterdir()) == [
        old.name]
    actions = publish.recover(output, "01")
    assert actions
    assert not [p for p in output.iterdir() if p.name.startswith(".brainscale-")]
    assert old.read_text() == "old\n" and publish.incomplete_participants(output) == []
    # the rerun publishes the new files, and only them
    publish.publish_participant([_staged(tmp_path)], output, "01", {"ran": []})
    assert sorted(p.name for p in (visible / "func").iterdir()) == [
        f"sub-01_task-rest_desc-x{k}_timeseries.tsv" for k in range(6)]
    assert publish.read_manifest(output, "01")["files"][0].startswith("func/")


def test_group_level_refuses_an_incompletely_published_participant(tiny_bids, tmp_path,
                                                                      capsys):
    out = tmp_path / "out"
    publish.publish_participant([_staged(tmp_path)], out, "01", {"ran": []})
    partial = out / "sub-02" / "func"
    partial.mkdir(parents=True)  # as an old non-atomic publish killed halfway left it
    (partial / "sub-02_task-rest_desc-confounds_timeseries.tsv").write_text("a\n1\n")
    code, err = _run(capsys, tiny_bids, out, "group")
    assert code == ExitCode.DATA_ERROR and "sub-02 not completely published" in err, err
    assert "sub-01" not in err


def test_usage_errors_are_64_before_processing(tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    plugin = tmp_path / "plugin.yml"
    cases = {
        "plugin YAML": ("plugin: [MultiProc\n", "invalid YAML"),
        "unknown plugin": ("plugin: Slurmm\n", "unknown Nipype plugin 'Slurmm'"),
    }
    for text, expected in cases.values():
        plugin.write_text(text)
        code, err = _run(capsys, tiny_bids, out, "participant", "--use-plugin", plugin,
                         "-w", tmp_path / "work")
        assert code == ExitCode.USAGE == 64 and expected in err, err
        assert "Traceback" not in err and not (out / "logs").exists()
    config = tmp_path / "config.toml"
    config.write_text('[nipype]\nnprocs = "many"\n')
    code, err = _run(capsys, tiny_bids, out, "participant", "--config-file", config)
    assert code == 64 and "nprocs" in err and "config.toml" in err, err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bids, broken)
    (broken / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\textra\n")
    code, err = _run(capsys, broken, out, "participant", "-w", tmp_path / "work")
    assert code == 64 and "participants.tsv: malformed" in err and "Traceback" not in err, err


def _session_processes(session: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[3]) == session and fields[0] != "Z":  # session id
                found.append(int(entry))
    return found


def test_sigterm_stops_run_and_workers_and_lock_blocks_a_second_run(tiny_bids, tmp_path,
                                                                       capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    first = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), str(tiny_bids), str(out), "participant",
         "--participant-label", "01", "-w", str(work), "--nprocs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True)
    graph = work / "sub-01" / "sub_01_wf"
    deadline = time.monotonic() + 240
    while not (graph.is_dir() and any(graph.rglob("_inputs.pklz"))):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.5)
    time.sleep(3)  # nodes running in MultiProc workers
    assert len(_session_processes(first.pid)) >= 2  # the run and its workers
    # a second run of the same participant in the same work directory stops at once
    code, err = _run(capsys, tiny_bids, tmp_path / "out2", "participant",
                     "--participant-label", "01", "-w", work)
    assert code == ExitCode.TEMPORARY_FAILURE == 75, err
    assert "another BrainScale run (pid" in err and "Traceback" not in err
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert first.returncode == ExitCode.INTERRUPTED_SIGTERM == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    time.sleep(0.5)
    assert _session_processes(first.pid) == []  # no worker left behind
    assert not (out / "sub-01").exists()  # nothing half-published


def test_participants_share_the_machine(monkeypatch):
    from brainscale.bids_app import parallel
    from brainscale.bids_app.parallel import participants_at_once

    monkeypatch.setattr(parallel, "_machine_memory_gb", lambda: 128.0)
    assert participants_at_once(40, 16, 0) == 8  # 2 processes each
    assert participants_at_once(3, 16, 0) == 3  # never more than the participants
    monkeypatch.setattr(parallel, "_machine_memory_gb", lambda: 16.0)
    assert participants_at_once(40, 16, 0) == 2  # 6 GB each of the machine's memory
    assert participants_at_once(40, 16, 24) == 4  # 6 GB each
    assert participants_at_once(3, 16, 0) == 2  # the machine's 16 GB hold two
    assert participants_at_once(40, 2, 0) == 1
    assert participants_at_once(40, 2, 0, requested=2) == 2
    assert participants_at_once(40, 2, 0, requested=5) == 2  # never more than nprocs


def test_signals_map_to_their_documented_exit_codes():
    from brainscale.errors import RunInterrupted

    assert RunInterrupted(signal.SIGTERM).exit_code == ExitCode.INTERRUPTED_SIGTERM == 143
    assert RunInterrupted(signal.SIGINT).exit_code == ExitCode.INTERRUPTED_SIGINT == 130
    assert not issubclass(RunInterrupted, Exception)  # no `except Exception` swallows it


def test_disk_full_errors_are_recognized():
    import errno

    assert preflight.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    wrapped = OutputError("cannot write x")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert preflight.is_disk_full(wrapped)
    assert not preflight.is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_participants_at_once_runs_both_and_reports_each(tiny_bids, tmp_path, capsys,
                                                          monkeypatch):
    """Two participants in forked children: each outcome comes back to the parent."""
    bad = tmp_path / "bids"
    shutil.copytree(tiny_bids, bad)
    for subject in ("01", "02"):
        _constant(_bold(bad, subject), bad)
    code, err = _run(capsys, bad, tmp_path / "out", "participant", "--nprocs", "2",
                     "--participants-at-once", "2", "-w", tmp_path / "work")
    assert code == 65, err
    assert "2 participants at a time, 1 process(es) each" in err
    for subject in ("01", "02"):
        report = (tmp_path / "out" / f"sub-{subject}.html").read_text()
        assert f"sub-{subject}_task-rest_bold.nii.gz: the image is constant" in report
    assert json.loads((tmp_path / "out" / "dataset_description.json").read_text())
