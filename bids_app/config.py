"""The settings of one run: frozen dataclasses with a TOML round trip.

A run's configuration is assembled once (defaults < ``--config-file`` < command line),
frozen, and written to ``output_dir/logs/`` so that any result can be traced back to the
exact settings that produced it. Workflow factories never read it: the runner passes
the values they need as explicit arguments.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from brainscale.errors import UsageError

MODALITIES = ("anat", "func", "dwi")
OUTPUT_SPACES = ("MNI152NLin2009aSym", "T1w")
DENOISE_STRATEGIES = ("6P", "24P", "36P", "acompcor", "acompcor_gsr", "36P_scrub", "none")
THICKNESS_METHODS = ("surface", "laplace", "direct")
IMAGE_MODELS = ("sfcn", "vit")


@dataclass(frozen=True)
class ExecutionConfig:
    """Where data come from and go to, and what is selected."""

    bids_dir: Path | None = None
    output_dir: Path | None = None
    analysis_level: str = "participant"
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filter_file: Path | None = None
    skip_bids_validation: bool = False
    work_dir: Path | None = None
    reports_only: bool = False
    array_index: int | None = None


@dataclass(frozen=True)
class NipypeConfig:
    """How Nipype executes the graphs."""

    nprocs: int = 0
    omp_nthreads: int = 0
    mem_gb: float = 0.0
    use_plugin: Path | None = None
    stop_on_first_crash: bool = False
    participants_at_once: int = 0


@dataclass(frozen=True)
class WorkflowConfig:
    """What the participant workflows compute."""

    modalities: tuple[str, ...] = MODALITIES
    atlas: tuple[str, ...] = ("DesikanKilliany",)
    output_spaces: tuple[str, ...] = ("MNI152NLin2009aSym",)
    denoise_strategy: str = "36P"
    thickness_method: str = "surface"
    seed: int = 0
    decode_conditions: tuple[str, ...] = ()
    decode_space: str = "parcels"
    decode_regions: tuple[str, ...] = ()
    decode_models: tuple[str, ...] = ("linsvm", "logreg", "rf")
    decode_patterns: str = "lss"
    decode_permutations: int = 100


@dataclass(frozen=True)
class GroupConfig:
    """What the group level computes (``"none"`` switches harmonization or prediction off)."""

    harmonize_by: str = "site"
    covariates: tuple[str, ...] = ("age", "sex")
    target: str = "diagnosis"
    n_permutations: int = 100
    n_random_graphs: int = 10
    voxel_inputs: tuple[str, ...] = ()
    image_models: tuple[str, ...] = ("sfcn", "vit")
    voxel_downsample: int = 1
    models: tuple[str, ...] = ()
    derivatives: tuple[str, ...] = ()
    qc_exclude: str = "auto"
    dfc_window: float = 44.0
    dfc_step: float = 2.0
    dfc_states: int = 4


@dataclass(frozen=True)
class Config:
    """The complete, frozen configuration of a run."""

    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    nipype: NipypeConfig = field(default_factory=NipypeConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    group: GroupConfig = field(default_factory=GroupConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the configuration as TOML-ready nested dicts (``None`` left out).

        Returns
        -------
        dict
            One table per section.
        """
        out: dict[str, dict[str, Any]] = {}
        for section in fields(self):
            values = {}
            for item in fields(getattr(self, section.name)):
                value = getattr(getattr(self, section.name), item.name)
                if value is None:
                    continue
                if isinstance(value, Path):
                    value = str(value)
                elif isinstance(value, tuple):
                    value = list(value)
                values[item.name] = value
            out[section.name] = values
        return out

    def to_toml(self) -> str:
        """Serialise to TOML text.

        Returns
        -------
        str
            A document that :meth:`from_toml` reads back to an equal ``Config``.
        """
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> Config:
        """Build a configuration from nested dicts, converting types.

        Parameters
        ----------
        data : dict
            ``{section: {option: value}}``; unknown sections or options are an error.

        Returns
        -------
        Config
            The validated configuration.
        """
        sections = {}
        for section in fields(cls):
            section_cls = section.default_factory  # type: ignore[misc]
            given = dict(data.get(section.name, {}))
            known = {item.name: item for item in fields(section_cls)}
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise UsageError(f"unknown option(s) {unknown} in config section [{section.name}]")
            converted = {}
            for name, value in given.items():
                try:
                    converted[name] = _convert(known[name].type, value)
                except (TypeError, ValueError, UsageError) as err:
                    raise UsageError(
                        f"option {name!r} of config section [{section.name}]: {err}"
                    ) from err
            sections[section.name] = section_cls(**converted)
        unknown_sections = sorted(set(data) - {s.name for s in fields(cls)})
        if unknown_sections:
            raise UsageError(f"unknown config section(s) {unknown_sections}")
        config = cls(**sections)
        config.validate()
        return config

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> Config:
        """Parse TOML text into a configuration.

        Parameters
        ----------
        text : str
            TOML document.
        source : str
            Name used in error messages (the file name).

        Returns
        -------
        Config
            The validated configuration.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"{source}: invalid TOML: {err}") from err
        try:
            return cls.from_dict(data)
        except UsageError as err:
            raise UsageError(f"{source}: {err}") from err

    def replace(self, **sections: dict[str, Any]) -> Config:
        """Return a copy with some options of some sections replaced.

        Parameters
        ----------
        **sections : dict
            ``section_name={option: value}``.

        Returns
        -------
        Config
            The new, validated configuration.
        """
        data = self.to_dict()
        for name, values in sections.items():
            data.setdefault(name, {}).update({k: v for k, v in values.items()})
        return Config.from_dict({k: {o: v for o, v in s.items() if v is not None}
                                 for k, s in data.items()})

    def validate(self) -> None:
        """Check values that types alone cannot.

        Raises
        ------
        brainscale.errors.UsageError
            Naming the option and the problem.
        """
        bad = sorted(set(self.workflow.modalities) - set(MODALITIES))
        if bad or not self.workflow.modalities:
            raise UsageError(f"--modalities: {bad or 'none given'}; choose from {MODALITIES}")
        bad = sorted(set(self.workflow.output_spaces) - set(OUTPUT_SPACES))
        if bad:
            raise UsageError(f"--output-spaces: unsupported {bad}; choose from {OUTPUT_SPACES}")
        if self.workflow.denoise_strategy not in DENOISE_STRATEGIES:
            raise UsageError(
                f"--denoise-strategy {self.workflow.denoise_strategy!r}: choose from "
                f"{DENOISE_STRATEGIES}"
            )
        if self.workflow.thickness_method not in THICKNESS_METHODS:
            raise UsageError(
                f"--thickness-method {self.workflow.thickness_method!r}: choose from "
                f"{THICKNESS_METHODS}"
            )
        for name in ("nprocs", "omp_nthreads", "participants_at_once"):
            if getattr(self.nipype, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
        if self.nipype.mem_gb < 0:
            raise UsageError("--mem-gb must be >= 0")
        for name in ("n_permutations", "n_random_graphs"):
            if getattr(self.group, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
        self._validate_image_models()
        qc_rule = self.group.qc_exclude
        if qc_rule not in ("auto", "none") and not Path(qc_rule).is_file():
            raise UsageError(f"--qc-exclude {qc_rule!r}: not 'auto', 'none' or an existing "
                             "TSV file")

    def _validate_image_models(self) -> None:
        from brainscale.workflows.group.voxel_inputs import VOXEL_KINDS

        bad = sorted(set(self.group.image_models) - set(IMAGE_MODELS))
        if bad:
            raise UsageError(f"--image-models: unknown {bad}; choose from {IMAGE_MODELS}")
        bad = sorted({v.partition(":")[0] for v in self.group.voxel_inputs} - set(VOXEL_KINDS))
        if bad:
            raise UsageError(f"--voxel-inputs: unknown {bad}; choose from {sorted(VOXEL_KINDS)}")
        if self.group.voxel_downsample < 1:
            raise UsageError("--voxel-downsample must be >= 1")


def _convert(annotation: Any, value: Any) -> Any:
    """Convert a TOML/argparse value to the dataclass field type (annotations are strings)."""
    text = str(annotation)
    if value is None:
        return None
    if text.startswith("tuple"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            raise UsageError(f"expected a list of names, got {value!r}")
        return tuple(str(v) for v in value)
    if text.startswith("Path"):
        if not isinstance(value, str | Path):
            raise UsageError(f"expected a path, got {value!r}")
        return Path(value)
    if text.startswith("bool"):
        if not isinstance(value, bool):
            raise UsageError(f"expected true/false, got {value!r}")
        return value
    if text.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise UsageError(f"expected an integer, got {value!r}")
        return int(value)
    if text.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise UsageError(f"expected a number, got {value!r}")
        return float(value)
    if text.startswith("str") and not isinstance(value, str):
        raise UsageError(f"expected a string, got {value!r}")
    return value


def write_config(config: Config, logs_dir: Path, run_uuid: str) -> Path:
    """Write the run's configuration into ``logs/`` atomically.

    Parameters
    ----------
    config : Config
        The configuration of this run.
    logs_dir : pathlib.Path
        ``output_dir/logs``.
    run_uuid : str
        Identifier of the run (timestamp + random part), unique across array tasks.

    Returns
    -------
    pathlib.Path
        The TOML file written.
    """
    from brainscale.derivatives import atomic_write

    path = logs_dir / f"config-{run_uuid}.toml"
    with atomic_write(path) as handle:
        handle.write(config.to_toml())
    return path


__all__ = [
    "Config",
    "ExecutionConfig",
    "GroupConfig",
    "NipypeConfig",
    "WorkflowConfig",
    "write_config",
]
