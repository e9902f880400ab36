"""One participant from checked inputs to published derivatives, and how it ended.

Each participant runs as its own Nipype graph in its own work folder, under an
exclusive lock on that folder. Its sub-workflows (anatomical, each BOLD run, each DWI
session) write into their own staging folders; after the graph ran, every part whose
nodes all finished (and whose anatomical input did) is published, all parts of the
participant in one rename (:mod:`brainscale.bids_app.publish`). A part the data could not support
is reported and the others are still published.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from brainscale.bids_app.config import Config
from brainscale.bids_app.input_checks import check_input_files, raise_for_problems
from brainscale.bids_app.preflight import is_disk_full
from brainscale.bids_app.publish import publish_participant, recover
from brainscale.bids_app.subject_data import SubjectData
from brainscale.errors import (
    BrainScaleError,
    ExitCode,
    InputDataError,
    LockedError,
)

LOGGER = logging.getLogger("brainscale")
LOCK_NAME = ".brainscale.lock"


@dataclass
class ParticipantOutcome:
    """How one participant's run ended.

    ``status`` is ``"completed"`` (every requested part published), ``"partial"`` (some
    parts published, others failed) or ``"failed"`` (nothing published).
    """

    subject: str
    ok: bool = False
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    failed_parts: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK

    @property
    def status(self) -> str:
        """``completed``, ``partial`` or ``failed``."""
        if self.ok:
            return "completed"
        return "partial" if self.published else "failed"


@contextlib.contextmanager
def participant_lock(folder: Path, subject: str):
    """Hold an exclusive, non-blocking lock on a participant's work folder.

    The lock is an ``flock`` on ``<folder>/.brainscale.lock`` (released by the kernel when
    the process dies, so a killed run never leaves a stale lock); the file says who holds it.

    Parameters
    ----------
    folder : pathlib.Path
        ``work_dir/sub-<label>``.
    subject : str
        Participant label (for the message).

    Raises
    ------
    brainscale.errors.LockedError
        Another run holds it (exit 75).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockedError(
                f"sub-{subject}: another BrainScale run ({holder}) is processing it in the work "
                f"directory {folder.parent}; wait for it to finish, or use another "
                "-w/--work-dir (lock file: " + str(path) + ")"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        yield
    finally:
        handle.close()


def run_one_participant(
    config: Config, data: SubjectData, work_dir: Path, run_uuid: str,
    input_problems: list[str] | None = None,
) -> ParticipantOutcome:
    """Check, build, run and publish one participant; never raises for its failures.

    Parameters
    ----------
    config : Config
        The run's configuration (``nipype`` settings are this participant's share).
    data : SubjectData
        The participant's inputs.
    work_dir : pathlib.Path
        Work directory of the run (this participant uses ``work_dir/sub-<label>``).
    run_uuid : str
        Identifier of the run (names the crash folder).
    input_problems : list of str, optional
        Problems found before (malformed sidecars of this participant).

    Returns
    -------
    ParticipantOutcome
        What was published, what failed and with which exit code.
    """
    subject = data.subject
    outcome = ParticipantOutcome(subject=subject)
    output_dir = Path(config.execution.output_dir)
    subject_work = work_dir / f"sub-{subject}"
    try:
        with participant_lock(subject_work, subject):
            for action in recover(output_dir, subject):
                LOGGER.info("sub-%s: %s (left by an interrupted run)", subject, action)
            problems = list(input_problems or [])
            problems += check_input_files(data, config.workflow.modalities)
            raise_for_problems(subject, problems)
            _build_run_publish(config, data, subject_work, run_uuid, outcome)
    except InputDataError as err:
        outcome.errors.append(str(err))
        outcome.exit_code = ExitCode.DATA_ERROR
    except BrainScaleError as err:
        outcome.errors.append(str(err))
        outcome.exit_code = err.exit_code
    except OSError as err:
        outcome.errors.append(f"{type(err).__name__}: {err}")
        outcome.exit_code = (ExitCode.CANNOT_CREATE_OUTPUT if is_disk_full(err)
                             else ExitCode.FAILURE)
    except Exception as err:  # a bug must not take the other participants down
        crash = _save_traceback(output_dir, subject, run_uuid)
        outcome.errors.append(f"unexpected {type(err).__name__}: {err} (traceback: {crash})")
        outcome.exit_code = ExitCode.FAILURE
    return outcome


def _save_traceback(output_dir: Path, subject: str, run_uuid: str) -> str:
    """Keep an unexpected error's traceback in the crash folder, not on the console."""
    path = output_dir / "logs" / "crash" / f"sub-{subject}" / run_uuid / "unexpected-error.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
    except OSError:
        return "(could not be written)"
    LOGGER.debug("sub-%s: %s", subject, traceback.format_exc())
    return str(path)


def _decoding_settings(config: Config):
    """Return the ``--decode-*`` options as the func workflow's settings (None: no decoding)."""
    wf = config.workflow
    if not wf.decode_conditions:
        return None
    from brainscale.workflows.func.brain_states_wf import DecodingSettings

    conditions = () if tuple(wf.decode_conditions) == ("all",) else tuple(wf.decode_conditions)
    return DecodingSettings(space=wf.decode_space, regions=tuple(wf.decode_regions),
                            conditions=conditions, models=tuple(wf.decode_models),
                            pattern_kind=wf.decode_patterns,
                            n_permutations=wf.decode_permutations)


def _build_run_publish(config: Config, data, subject_work: Path, run_uuid: str,
                       outcome: ParticipantOutcome) -> None:
    from brainscale.workflows.engine import (
        WorkflowFailedError,
        configure_workflow,
        plan_execution,
        run_workflow,
    )
    from brainscale.workflows.methods import collect_descriptions
    from brainscale.workflows.participant import init_participant_wf

    subject = data.subject
    output_dir = Path(config.execution.output_dir)
    staging = subject_work / "derivatives"
    nipype = config.nipype
    nthreads = nipype.omp_nthreads or min(nipype.nprocs or 8, 8)
    wf, plan = init_participant_wf(
        subject_data=data,
        output_dir=staging,
        modalities=config.workflow.modalities,
        atlases=config.workflow.atlas,
        denoise_strategy=config.workflow.denoise_strategy,
        thickness_method=config.workflow.thickness_method,
        omp_nthreads=nthreads,
        seed=config.workflow.seed,
        decoding=_decoding_settings(config),
    )
    outcome.ran, outcome.skipped = list(plan.ran), list(plan.skipped)
    outcome.methods = collect_descriptions(wf)  # what this participant's graph does
    outcome.errors += plan.errors
    crash_dir = output_dir / "logs" / "crash" / f"sub-{subject}" / run_uuid
    configure_workflow(wf, work_dir=subject_work, crash_dir=crash_dir,
                       stop_on_first_crash=nipype.stop_on_first_crash)
    execution = plan_execution(nprocs=nipype.nprocs, mem_gb=nipype.mem_gb,
                               plugin_file=nipype.use_plugin)
    failure = None
    if wf.list_node_names():
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(nthreads)
        try:
            run_workflow(wf, execution, crash_dir)
        except WorkflowFailedError as err:
            failure = err
    failed_names = _failed_parts(plan.parts, failure, nipype.stop_on_first_crash)
    succeeded = [p for p in plan.parts if p.name not in failed_names]
    outcome.failed_parts = [p.label for p in plan.parts if p.name in failed_names]
    if failure is not None:
        outcome.errors.append(str(failure))
    if succeeded:
        record = {"ran": outcome.ran, "failed": outcome.failed_parts,
                  "skipped": outcome.skipped, "run": run_uuid}
        publish_participant([p.staging for p in succeeded], output_dir, subject, record)
        outcome.published = [p.label for p in succeeded]
        outcome.notes += _denoising_notes(output_dir, subject)
    _remove_empty(crash_dir)
    outcome.ok = bool(plan.parts) and not failed_names and not plan.errors
    if not plan.parts and not plan.errors:
        outcome.ok = True  # nothing requested exists: skipped with notes
    if not outcome.ok:
        disk_full = failure is not None and any(
            "No space left on device" in f.error for f in failure.failures)
        data_only = failure is None and bool(plan.errors)
        outcome.exit_code = (ExitCode.CANNOT_CREATE_OUTPUT if disk_full
                             else ExitCode.DATA_ERROR if data_only else ExitCode.FAILURE)


def _failed_parts(parts, failure, stopped_early: bool) -> set[str]:
    """Names of the parts that cannot be published: failed, or fed by a failed part.

    Without ``--stop-on-first-crash`` Nipype runs every node it can, so a part without a
    crashed node finished unless its anatomical input crashed; with it, nothing of a
    failed graph is trusted.
    """
    names = {p.name for p in parts}
    if failure is None:
        return set()
    if stopped_early:
        return names
    failed = set()
    for node_failure in failure.failures:
        pieces = node_failure.node.split(".")
        part = pieces[1] if len(pieces) > 1 else None
        if part not in names:
            return names  # a failure outside any part (plugin, graph): nothing is safe
        failed.add(part)
    anat = [p.name for p in parts if p.staging.name == "anat"]
    if anat and anat[0] in failed:
        failed |= {p.name for p in parts if p.needs_anat}
    return failed


def _denoising_notes(output_dir: Path, subject: str) -> list[str]:
    """Collect the denoising fallbacks recorded in the published timeseries sidecars."""
    notes = []
    for sidecar in sorted((output_dir / f"sub-{subject}").rglob("*_timeseries.json")):
        with contextlib.suppress(OSError, ValueError):
            note = json.loads(sidecar.read_text()).get("DenoisingNote")
            if note and note not in notes:
                notes.append(f"{sidecar.name.split('_atlas-')[0]}: {note}")
    return sorted(set(notes))


def _remove_empty(folder: Path) -> None:
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path.name == "crash":
            return


def summarize_outcomes(outcomes: list[ParticipantOutcome]) -> ExitCode:
    """Turn participants' outcomes into the process exit code and log a summary.

    Parameters
    ----------
    outcomes : list of ParticipantOutcome
        One per participant.

    Returns
    -------
    ExitCode
        0 when every participant completed; 3 (``PARTIAL``) when every participant
        published but some parts failed; otherwise the failed participants' code when
        they share one (65 bad input, 73 disk/permissions, 75 locked by another run),
        else 1.
    """
    failed = [o for o in outcomes if o.status == "failed"]
    partial = [o for o in outcomes if o.status == "partial"]
    for outcome in (*partial, *failed):
        for error in outcome.errors:
            LOGGER.error("sub-%s: %s", outcome.subject, error)
    if not failed and not partial:
        LOGGER.info("all %d participant(s) completed", len(outcomes))
        return ExitCode.OK
    LOGGER.error(
        "%d participant(s) completed, %d partial (%s), %d failed (%s)",
        len(outcomes) - len(failed) - len(partial), len(partial),
        ", ".join(f"sub-{o.subject}" for o in partial) or "none", len(failed),
        ", ".join(f"sub-{o.subject}" for o in failed) or "none",
    )
    if not failed:
        return ExitCode.PARTIAL
    codes = {o.exit_code for o in failed}
    return codes.pop() if len(codes) == 1 else ExitCode.FAILURE

