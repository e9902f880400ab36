"""Participant and group runners: from a frozen Config to derivatives and an exit code.

Before any processing the environment and the options are checked
(:mod:`brainscale.bids_app.preflight`): exit 73 for an unwritable or full output, logs or work
folder, 64 for a bad plugin file, config value or participants.tsv. Each participant
then runs under a lock on its work folder and publishes atomically
(:mod:`brainscale.bids_app.participant_run`, :mod:`brainscale.bids_app.publish`); several
participants run
at once when ``--nprocs`` and ``--mem-gb`` allow (:mod:`brainscale.bids_app.parallel`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from brainscale.bids_app import parallel, preflight
from brainscale.bids_app.bids_index import check_dataset_paths, load_layout
from brainscale.bids_app.bids_selection import (
    load_filters,
    select_array_task,
    select_participants,
)
from brainscale.bids_app.config import Config, write_config
from brainscale.bids_app.input_checks import find_malformed_sidecars, sidecar_problems
from brainscale.bids_app.participant_run import (
    ParticipantOutcome,
    run_one_participant,
    summarize_outcomes,
)
from brainscale.bids_app.publish import incomplete_participants
from brainscale.bids_app.reports.methods import write_citation_files
from brainscale.bids_app.reports.participant import write_participant_report
from brainscale.bids_app.subject_data import SubjectData, collect_subject_data
from brainscale.derivatives import write_dataset_description
from brainscale.errors import (
    ExitCode,
    InputDataError,
    NoInputError,
    NothingSelectedError,
    OutputError,
    UsageError,
)
from brainscale.resources import get_atlas

LOGGER = logging.getLogger("brainscale")

__all__ = ["ParticipantOutcome", "run_group_level", "run_participant_level",
           "summarize_outcomes"]


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
    preflight.check_writable_folder(logs_dir, "logs folder")
    try:
        handler = logging.FileHandler(logs_dir / f"brainscale-{run_uuid}.log")
    except OSError as err:
        raise OutputError(f"cannot write the log into {logs_dir}: {err.strerror}") from err
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    LOGGER.addHandler(handler)


def _write_run_records(config: Config, output_dir: Path, bids_dir: Path | None,
                       run_uuid: str) -> None:
    logs_dir = output_dir / "logs"
    try:
        if bids_dir is not None:
            write_dataset_description(output_dir, bids_dir)
        write_config(config, logs_dir, run_uuid)
        if bids_dir is not None:
            write_citation_files(logs_dir, config)
    except OSError as err:
        raise OutputError(f"cannot write into {output_dir}: {err.strerror or err}") from err


def run_participant_level(config: Config) -> ExitCode:
    """Run the participant level for every selected participant.

    Parameters
    ----------
    config : Config
        The run's configuration.

    Returns
    -------
    ExitCode
        See :func:`brainscale.bids_app.participant_run.summarize_outcomes` (0 complete, 3 partial,
        65/73/75/1 failed).
    """
    ex = config.execution
    bids_dir, output_dir = Path(ex.bids_dir), Path(ex.output_dir)
    work_dir = Path(ex.work_dir) if ex.work_dir else default_work_dir(output_dir)
    check_dataset_paths(bids_dir, output_dir, work_dir)
    preflight.check_writable_folder(output_dir, "output_dir")
    preflight.check_writable_folder(work_dir, "work directory")
    preflight.check_plugin_file(config.nipype.use_plugin, config.nipype.nprocs,
                                config.nipype.mem_gb)
    preflight.check_participants_tsv(bids_dir / "participants.tsv")
    for name in config.workflow.atlas:
        get_atlas(name)  # unknown or unavailable atlas: usage error before any work
    malformed = find_malformed_sidecars(bids_dir)
    layout = load_layout(bids_dir, validate=not ex.skip_bids_validation,
                              ignore=list(malformed))
    subjects = select_participants(layout, ex.participant_label)
    subjects = select_array_task(subjects, ex.array_index)
    queries = load_filters(ex.bids_filter_file)

    run_uuid = new_run_uuid()
    _setup_logging(output_dir / "logs", run_uuid)
    _write_run_records(config, output_dir, bids_dir, run_uuid)
    if config.group.derivatives:
        LOGGER.warning("--derivatives is read by the group level only; the participant level "
                       "does not reuse other pipelines' outputs yet (ignored)")

    data, problems = {}, {}
    for subject in subjects:
        problems[subject] = sidecar_problems(malformed, bids_dir, subject)
        try:
            data[subject] = collect_subject_data(
                layout, subject, sessions=ex.session_label, queries=queries)
        except (ValueError, KeyError, OSError) as err:  # pybids on odd metadata
            data[subject] = SubjectData(subject=subject)
            problems[subject].append(f"sub-{subject}: pybids cannot read its metadata ({err})")
    if not any(_has_requested_data(d, config.workflow.modalities) or problems[s]
               for s, d in data.items()):
        raise NothingSelectedError(
            f"no {'/'.join(config.workflow.modalities)} data for the selected participant(s) "
            f"{', '.join('sub-' + s for s in subjects)} with the given sessions and filters"
        )
    nprocs = config.nipype.nprocs or _available_cpus()
    at_once = parallel.participants_at_once(len(subjects), nprocs, config.nipype.mem_gb,
                                            config.nipype.participants_at_once)
    share = _participant_share(config, nprocs, at_once)
    if at_once > 1:
        LOGGER.info("%d participants at a time, %d process(es) each", at_once,
                    share.nipype.nprocs)
    started: dict[str, float] = {}

    def task(subject: str) -> ParticipantOutcome:
        started[subject] = time.perf_counter()
        LOGGER.info("sub-%s: starting (%s)", subject, ", ".join(config.workflow.modalities))
        if ex.reports_only:
            return ParticipantOutcome(subject=subject, ok=True,
                                      ran=["reports only: figures of earlier runs"])
        return run_one_participant(share, data[subject], work_dir, run_uuid, problems[subject])

    outcomes = []

    def finished(subject: str, outcome: ParticipantOutcome | None) -> None:
        if outcome is None:
            outcome = ParticipantOutcome(subject=subject, exit_code=ExitCode.FAILURE,
                                         errors=["its process ended without a result"])
        write_participant_report(output_dir, subject, outcome, config, run_uuid)
        outcomes.append(outcome)
        for note in outcome.notes:
            LOGGER.warning("sub-%s: %s", subject, note)
        elapsed = time.perf_counter() - started.get(subject, time.perf_counter())
        LOGGER.info("sub-%s: %s%s", subject, outcome.status,
                    f" after {elapsed:.0f} s" if subject in started else "")

    parallel.run_at_once(subjects, task, at_once, finished)
    return summarize_outcomes(outcomes)


def _available_cpus() -> int:
    from brainscale.workflows.engine import available_cpus

    return available_cpus()


def _participant_share(config: Config, nprocs: int, at_once: int) -> Config:
    """Return the configuration one of ``at_once`` simultaneous participants runs with."""
    if at_once <= 1:
        return config
    procs = max(1, nprocs // at_once)
    omp = min(config.nipype.omp_nthreads or procs, procs)
    nipype = replace(config.nipype, nprocs=procs, omp_nthreads=omp,
                     mem_gb=config.nipype.mem_gb / at_once if config.nipype.mem_gb else 0.0)
    return replace(config, nipype=nipype)


def _has_requested_data(data: SubjectData, modalities: tuple[str, ...]) -> bool:
    return bool(
        ("anat" in modalities and data.t1w)
        or ("func" in modalities and data.bold)
        or ("dwi" in modalities and data.dwi)
    )


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
    from brainscale.workflows.group.external import parse_derivatives_option
    from brainscale.workflows.group.run import run_group

    ex = config.execution
    bids_dir, output_dir = Path(ex.bids_dir), Path(ex.output_dir)
    if not bids_dir.is_dir():
        raise NoInputError(f"BIDS dataset folder not found: {bids_dir}")
    if output_dir.resolve().is_relative_to(bids_dir.resolve()):
        raise UsageError(f"output_dir {output_dir} is inside bids_dir {bids_dir}")
    try:
        external = parse_derivatives_option(config.group.derivatives)
    except ValueError as err:
        raise UsageError(str(err)) from err
    participants = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir())
    if not participants and not external:
        raise NoInputError(
            f"no participant derivatives (sub-*/) in {output_dir}: run the participant level first"
        )
    participants_tsv = bids_dir / "participants.tsv"
    if not participants_tsv.is_file():
        raise NoInputError(f"{participants_tsv} not found: the group level needs the phenotype")
    preflight.check_participants_tsv(participants_tsv)
    incomplete = incomplete_participants(output_dir)
    if incomplete:
        raise InputDataError(
            f"{output_dir}: {', '.join(incomplete)} not completely published (no completion "
            "manifest, or files missing: an interrupted publish or another tool); rerun the "
            "participant level for them, or move them out of output_dir"
        )
    preflight.check_writable_folder(output_dir / "group", "group folder")
    run_uuid = new_run_uuid()
    _setup_logging(output_dir / "logs", run_uuid)
    _write_run_records(config, output_dir, None, run_uuid)
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
        voxel_inputs=list(group.voxel_inputs),
        image_models=list(group.image_models),
        voxel_downsample=group.voxel_downsample,
        dfc_states=group.dfc_states,
        dfc_window=group.dfc_window,
        dfc_step=group.dfc_step,
        models=list(group.models) or None,
        derivatives=external,
        qc_exclude=group.qc_exclude,
    )
    return ExitCode.OK
