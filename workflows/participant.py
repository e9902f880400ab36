"""Compose one participant's anatomical, functional and diffusion workflows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nipype.pipeline import engine as pe

from brainscale.errors import InputDataError
from brainscale.workflows.func.glm import read_events

ANAT_FIELDS = ("t1w_preproc", "t1w_mask", "t1w_dseg", "t1w_tpms", "anat2std_xfm", "std2anat_xfm")


@dataclass(frozen=True)
class GraphPart:
    """One independently published piece of a participant's graph.

    Attributes
    ----------
    name : str
        Name of the sub-workflow (the second component of its nodes' full names).
    label : str
        Human-readable description for the report and the log.
    staging : pathlib.Path
        Folder its ``ds_*`` writers write into (published only when the part succeeded).
    needs_anat : bool
        Whether it takes inputs from the anatomical part (so fails with it).
    """

    name: str
    label: str
    staging: Path
    needs_anat: bool = False


@dataclass(frozen=True)
class ParticipantPlan:
    """What will run for one participant, and what will not (with the reason).

    Attributes
    ----------
    subject : str
        Participant label.
    ran : list of str
        Human-readable names of the workflows in the graph.
    skipped : list of str
        Parts that were requested but have no input, each with its reason, and steps
        that the data cannot support (e.g. a task GLM without events).
    errors : list of str
        Runs left out of the graph because their input is unusable; the rest of the
        participant still runs.
    parts : list of GraphPart
        The sub-workflows, each published on its own once all its nodes succeeded.
    """

    subject: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    parts: list[GraphPart] = field(default_factory=list)


def init_participant_wf(
    *,
    subject_data,
    output_dir: Path,
    modalities: tuple[str, ...],
    atlases: tuple[str, ...],
    denoise_strategy: str = "36P",
    thickness_method: str = "surface",
    omp_nthreads: int = 1,
    seed: int = 0,
    decoding=None,
    name: str | None = None,
):
    """Build the graph of one participant from its inputs.

    Parameters
    ----------
    subject_data : brainscale.bids_app.subject_data.SubjectData
        The participant's selected inputs with their metadata.
    output_dir : pathlib.Path
        Staging root: each sub-workflow's ``DerivativesDataSink`` nodes write into their
        own folder below it (see :class:`GraphPart`), so that the parts that succeeded can
        be published even when another one failed.
    modalities : tuple of str
        Requested parts among ``anat``, ``func``, ``dwi``.
    atlases : tuple of str
        Atlas names for regional measures and connectomes.
    denoise_strategy : str
        BOLD denoising strategy.
    thickness_method : {"surface", "laplace", "direct"}
        Cortical thickness method.
    omp_nthreads : int
        Threads per node.
    seed : int
        Random seed.
    decoding : brainscale.workflows.func.brain_states_wf.DecodingSettings, optional
        Decode the task conditions of every run with events (``--decode-*``).
    name : str, optional
        Workflow name (default ``sub_<label>_wf``).

    Returns
    -------
    workflow : nipype.pipeline.engine.Workflow
        The participant graph (possibly with no nodes when nothing can run).
    plan : ParticipantPlan
        What runs and what was skipped, for the report.
    """
    from brainscale.workflows.anat.workflow import init_anat_wf
    from brainscale.workflows.dwi.workflow import init_dwi_wf
    from brainscale.workflows.func.workflow import init_func_wf

    label = subject_data.subject
    wf = pe.Workflow(name=name or f"sub_{label}_wf")
    plan = ParticipantPlan(subject=label)
    staging_root = Path(output_dir)
    atlases = list(atlases)
    has_anat = bool(subject_data.t1w)
    anat_wf = None
    if has_anat and (set(modalities) & {"anat", "func", "dwi"}):
        anat_staging = staging_root / "anat"
        anat_wf = init_anat_wf(
            t1w_files=list(subject_data.t1w),
            output_dir=str(anat_staging),
            atlases=atlases,
            omp_nthreads=omp_nthreads,
            seed=seed,
            thickness_method=thickness_method,
        )
        wf.add_nodes([anat_wf])
        plan.ran.append(f"anatomical ({len(subject_data.t1w)} T1w)")
        if "anat" not in modalities:
            plan.ran[-1] += ", needed by func/dwi"
        plan.parts.append(GraphPart(anat_wf.name, plan.ran[-1], anat_staging))
    elif "anat" in modalities:
        plan.skipped.append("anatomical: no T1w image")

    if "func" in modalities:
        if not subject_data.bold:
            plan.skipped.append("functional: no BOLD run")
        for index, run in enumerate(subject_data.bold):
            part_name = f"func_{index:02d}_{_run_name(run.path)}_wf"
            events = _usable_events(run, plan)
            try:
                func_wf = init_func_wf(
                    bold_file=run.path,
                    metadata=dict(run.metadata),
                    has_anat=has_anat,
                    output_dir=str(staging_root / part_name),
                    atlases=atlases,
                    denoise_strategy=denoise_strategy,
                    events_file=events,
                    fieldmap=run.fieldmap,
                    decoding=decoding,
                    omp_nthreads=omp_nthreads,
                    seed=seed,
                    name=part_name,
                )
            except InputDataError as err:
                plan.errors.append(f"functional run not processed: {err}")
                continue
            _connect_anat(wf, anat_wf, func_wf)
            plan.ran.append(f"functional: {Path(run.path).name}"
                            + ("" if has_anat else " (no T1w: BOLD-only path)"))
            plan.parts.append(GraphPart(part_name, plan.ran[-1], staging_root / part_name,
                                        needs_anat=anat_wf is not None))

    if "dwi" in modalities:
        if not subject_data.dwi:
            plan.skipped.append("diffusion: no DWI series")
        for session, series in sorted(subject_data.dwi.items()):
            part_name = f"dwi_ses_{session or 'none'}_wf"
            try:
                dwi_wf = init_dwi_wf(
                    dwi_files=[s.path for s in series],
                    bval_files=[s.bval for s in series],
                    bvec_files=[s.bvec for s in series],
                    metadata=[dict(s.metadata) for s in series],
                    has_anat=has_anat,
                    output_dir=str(staging_root / part_name),
                    atlases=atlases,
                    omp_nthreads=omp_nthreads,
                    seed=seed,
                    name=part_name,
                )
            except InputDataError as err:
                plan.errors.append(f"diffusion series not processed: {err}")
                continue
            _connect_anat(wf, anat_wf, dwi_wf)
            plan.ran.append(
                f"diffusion: {', '.join(Path(s.path).name for s in series)}"
                + ("" if has_anat else " (no T1w: registered to the template directly)")
            )
            plan.parts.append(GraphPart(part_name, plan.ran[-1], staging_root / part_name,
                                        needs_anat=anat_wf is not None))
    return wf, plan


def _usable_events(run, plan: ParticipantPlan) -> str | None:
    """Return the run's ``events.tsv`` when a GLM can use it; note why not otherwise."""
    name = Path(run.path).name
    if not run.events:
        if "task-rest" not in name:
            plan.skipped.append(f"first-level GLM of {name}: no events.tsv (skipped)")
        return None
    try:
        read_events(run.events)
    except (InputDataError, OSError, ValueError) as err:
        plan.skipped.append(f"first-level GLM of {name}: {err} (skipped)")
        return None
    return run.events


def _run_name(path: str) -> str:
    stem = Path(path).name.split(".")[0]
    return "".join(c if c.isalnum() else "_" for c in stem.split("_", 1)[-1])


def _connect_anat(wf, anat_wf, modality_wf) -> None:
    if anat_wf is None:
        wf.add_nodes([modality_wf])
        return
    wf.connect(
        [(anat_wf, modality_wf, [(f"outputnode.{name}", f"inputnode.{name}")
                                 for name in ANAT_FIELDS])]
    )
