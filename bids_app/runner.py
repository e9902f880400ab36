"""Participant and group runners: from a frozen Config to derivatives and an exit code.

Each participant runs as its own Nipype graph with its own work folder. Its derivatives
are first written into a staging folder inside the work directory and published into
``output_dir`` only when the whole graph succeeded, so a failing participant leaves no
partial derivatives behind (only its report, which says what failed) and never stops
the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bids_app import bids
from bids_app.config import Config, write_config
from bids_app.reports.methods import write_citation_files
from bids_app.reports.participant import write_participant_report
from brainscale.derivatives import copy_atomic, write_dataset_description
from brainscale.errors import (
    BrainScaleError,
    ExitCode,
    InputDataError,
    NoInputError,
    NothingSelectedError,
    OutputError,
    UsageError,
)
from brainscale.resources import get_atlas

LOGGER = logging.getLogger("brainscale")


@dataclass
class ParticipantOutcome:
    """How one participant's run ended."""

    subject: str
    ok: bool = False
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK


def new_run_uuid() -> str:
    """Return a run identifier: UTC timestamp plus a random suffix (unique per array task)."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}_{uuid.uuid4().hex[:8]}"


def default_work_dir(output_dir: Path) -> Path:
    """Return the default work directory: stable per output_dir, in the temp folder.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.

    Returns
    -------
    pathlib.Path
        ``$TMPDIR/brainscale-work-<hash of output_dir>``, so a rerun on the same machine
        resumes; pass ``-w`` to choose (and keep) it explicitly.
    """
    digest = hashlib.sha1(str(output_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"brainscale-work-{digest}"


def _setup_logging(logs_dir: Path, run_uuid: str) -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs_dir / f"brainscale-{run_uuid}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    LOGGER.addHandler(handler)


def run_participant_level(config: Config) -> ExitCode:
    """Run the participant level for every selected participant.

    Parameters
    ----------
    config : Config
        The run's configuration.

    Returns
    -------
    ExitCode
        ``OK`` when every participant succeeded; ``DATA_ERROR`` when every failure was
        unusable input data; ``FAILURE`` otherwise.
    """
    ex = config.execution
    bids_dir, output_dir = Path(ex.bids_dir), Path(ex.output_dir)
    work_dir = Path(ex.work_dir) if ex.work_dir else default_work_dir(output_dir)
    bids.check_dataset_paths(bids_dir, output_dir, work_dir)
    for name in config.workflow.atlas:
        get_atlas(name)  # unknown or unavailable atlas: usage error before any work
    layout = bids.load_layout(bids_dir, validate=not ex.skip_bids_validation)
    subjects = bids.select_participants(layout, ex.participant_label)
    subjects = bids.select_array_task(subjects, ex.array_index)
    queries = bids.load_filters(ex.bids_filter_file)

    run_uuid = new_run_uuid()
    logs_dir = output_dir / "logs"
    _setup_logging(logs_dir, run_uuid)
    write_dataset_description(output_dir, bids_dir)
    write_config(config, logs_dir, run_uuid)
    write_citation_files(logs_dir, config)

    data = {
        subject: bids.collect_subject_data(
            layout, subject, sessions=ex.session_label, queries=queries
        )
        for subject in subjects
    }
    if not any(_has_requested_data(d, config.workflow.modalities) for d in data.values()):
        raise NothingSelectedError(
            f"no {'/'.join(config.workflow.modalities)} data for the selected participant(s) "
            f"{', '.join('sub-' + s for s in subjects)} with the given sessions and filters"
        )
    outcomes = []
    for subject in subjects:
        started = time.perf_counter()
        LOGGER.info("sub-%s: starting (%s)", subject, ", ".join(config.workflow.modalities))
        if ex.reports_only:
            outcome = ParticipantOutcome(subject=subject, ok=True,
                                         ran=["reports only: figures of earlier runs"])
        else:
            outcome = run_one_participant(config, data[subject], work_dir, run_uuid)
        write_participant_report(output_dir, subject, outcome, config, run_uuid)
        outcomes.append(outcome)
        LOGGER.info("sub-%s: %s after %.0f s", subject, "done" if outcome.ok else "FAILED",
                    time.perf_counter() - started)
    return summarize_outcomes(outcomes)


def _has_requested_data(data: bids.SubjectData, modalities: tuple[str, ...]) -> bool:
    return bool(
        ("anat" in modalities and data.t1w)
        or ("func" in modalities and data.bold)
        or ("dwi" in modalities and data.dwi)
    )


def summarize_outcomes(outcomes: list[ParticipantOutcome]) -> ExitCode:
    """Turn participants' outcomes into the process exit code and log a summary.

    Parameters
    ----------
    outcomes : list of ParticipantOutcome
        One per participant.

    Returns
    -------
    ExitCode
        See :func:`run_participant_level`.
    """
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        LOGGER.info("all %d participant(s) finished", len(outcomes))
        return ExitCode.OK
    LOGGER.error(
        "%d of %d participant(s) failed: %s", len(failed), len(outcomes),
        ", ".join(f"sub-{o.subject}" for o in failed),
    )
    for outcome in failed:
        for error in outcome.errors:
            LOGGER.error("sub-%s: %s", outcome.subject, error)
    if all(o.exit_code == ExitCode.DATA_ERROR for o in failed):
        return ExitCode.DATA_ERROR
    return ExitCode.FAILURE


def run_one_participant(
    config: Config, data: bids.SubjectData, work_dir: Path, run_uuid: str
) -> ParticipantOutcome:
    """Check, build, run and publish one participant; never raises for its failures.

    Parameters
    ----------
    config : Config
        The run's configuration.
    data : bids.SubjectData
        The participant's inputs.
    work_dir : pathlib.Path
        Work directory of the run (this participant uses ``work_dir/sub-<label>``).
    run_uuid : str
        Identifier of the run (names the crash folder).

    Returns
    -------
    ParticipantOutcome
        Success, or the errors with their exit code.
    """
    from workflows.engine import (
        WorkflowFailedError,
        configure_workflow,
        plan_execution,
        run_workflow,
    )
    from workflows.participant import init_participant_wf

    subject = data.subject
    outcome = ParticipantOutcome(subject=subject)
    output_dir = Path(config.execution.output_dir)
    try:
        bids.raise_for_problems(subject, bids.check_input_files(data, config.workflow.modalities))
        subject_work = work_dir / f"sub-{subject}"
        staging = subject_work / "derivatives"
        nthreads = config.nipype.omp_nthreads or min(config.nipype.nprocs or 8, 8)
        wf, plan = init_participant_wf(
            subject_data=data,
            output_dir=staging,
            modalities=config.workflow.modalities,
            atlases=config.workflow.atlas,
            denoise_strategy=config.workflow.denoise_strategy,
            thickness_method=config.workflow.thickness_method,
            omp_nthreads=nthreads,
            seed=config.workflow.seed,
        )
        outcome.ran, outcome.skipped = plan.ran, plan.skipped
        outcome.errors += plan.errors
        crash_dir = output_dir / "logs" / "crash" / f"sub-{subject}" / run_uuid
        configure_workflow(wf, work_dir=subject_work, crash_dir=crash_dir,
                           stop_on_first_crash=config.nipype.stop_on_first_crash)
        execution = plan_execution(nprocs=config.nipype.nprocs, mem_gb=config.nipype.mem_gb,
                                   plugin_file=config.nipype.use_plugin)
        if wf.list_node_names():
            os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(nthreads))
            run_workflow(wf, execution, crash_dir)
            publish(staging, output_dir, subject)
        _remove_empty(crash_dir)
        outcome.ok = not plan.errors
        if plan.errors:
            outcome.exit_code = ExitCode.DATA_ERROR
    except InputDataError as err:
        outcome.errors.append(str(err))
        outcome.exit_code = ExitCode.DATA_ERROR
    except WorkflowFailedError as err:
        outcome.errors.append(str(err))
        outcome.exit_code = ExitCode.FAILURE
    except BrainScaleError as err:
        outcome.errors.append(str(err))
        outcome.exit_code = err.exit_code
    except Exception as err:  # a bug must not take the other participants down
        LOGGER.exception("sub-%s: unexpected error", subject)
        outcome.errors.append(f"unexpected {type(err).__name__}: {err}")
        outcome.exit_code = ExitCode.FAILURE
    return outcome


def _remove_empty(folder: Path) -> None:
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path.name == "crash":
            return


def publish(staging: Path, output_dir: Path, subject: str) -> list[Path]:
    """Copy a participant's staged derivatives into ``output_dir``, file by file, atomically.

    Files are hard-linked when possible (same file system) and copied otherwise; the
    staging folder is kept so that a resumed run, whose writer nodes are cached, still
    publishes its outputs.

    Parameters
    ----------
    staging : pathlib.Path
        The staging derivatives folder of the participant.
    output_dir : pathlib.Path
        The derivatives folder.
    subject : str
        Participant label (only ``sub-<label>`` content is published).

    Returns
    -------
    list of pathlib.Path
        Published files.
    """
    published = []
    source_root = staging / f"sub-{subject}"
    if not source_root.is_dir():
        return published
    for source in sorted(p for p in source_root.rglob("*") if p.is_file()):
        if source.name.startswith("."):
            continue
        target = output_dir / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            os.link(source, tmp)
            os.replace(tmp, target)
        except OSError:
            if tmp.exists():
                tmp.unlink()
            copy_atomic(source, target)
        published.append(target)
    return published


def run_group_level(config: Config) -> ExitCode:
    """Run the group level on the participants' derivatives in ``output_dir``.

    Parameters
    ----------
    config : Config
        The run's configuration.

    Returns
    -------
    ExitCode
        ``OK`` on success.

    Raises
    ------
    NoInputError
        ``output_dir`` holds no participant derivatives (exit 66).
    """
    from workflows.group.run import run_group

    ex = config.execution
    bids_dir, output_dir = Path(ex.bids_dir), Path(ex.output_dir)
    if not bids_dir.is_dir():
        raise NoInputError(f"BIDS dataset folder not found: {bids_dir}")
    if output_dir.resolve().is_relative_to(bids_dir.resolve()):
        raise UsageError(f"output_dir {output_dir} is inside bids_dir {bids_dir}")
    participants = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir())
    if not participants:
        raise NoInputError(
            f"no participant derivatives (sub-*/) in {output_dir}: run the participant level first"
        )
    participants_tsv = bids_dir / "participants.tsv"
    if not participants_tsv.is_file():
        raise NoInputError(f"{participants_tsv} not found: the group level needs the phenotype")
    run_uuid = new_run_uuid()
    logs_dir = output_dir / "logs"
    _setup_logging(logs_dir, run_uuid)
    try:
        write_config(config, logs_dir, run_uuid)
    except OSError as err:
        raise OutputError(f"cannot write into {logs_dir}: {err}") from err
    group = config.group
    run_group(
        output_dir,
        participants_tsv,
        harmonize_by=None if group.harmonize_by == "none" else group.harmonize_by,
        covariates=list(group.covariates),
        target=None if group.target == "none" else group.target,
        seed=config.workflow.seed,
        n_permutations=group.n_permutations,
        n_random_graphs=group.n_random_graphs,
        n_jobs=config.nipype.nprocs or os.cpu_count() or 1,
    )
    return ExitCode.OK
