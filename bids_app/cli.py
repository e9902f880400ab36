"""Command line of BrainScale: BIDS-Apps arguments with the spellings peers use.

``run.py bids_dir output_dir participant|group [options]`` is the BIDS-App; ``brainscale
demo DIR`` and ``brainscale synth DIR`` are the embedded demo and the synthetic-data
factory. Every usage error raises :class:`brainscale.errors.UsageError` (exit code 64)
instead of argparse's exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from brainscale import __version__
from brainscale.bids_app.config import (
    DENOISE_STRATEGIES,
    MODALITIES,
    OUTPUT_SPACES,
    THICKNESS_METHODS,
    Config,
)
from brainscale.errors import UnknownAnalysisLevelError, UsageError

ANALYSIS_LEVELS = ("participant", "group")
SUBCOMMANDS = ("demo", "synth")
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises UsageError instead of exiting with code 2."""

    def error(self, message: str):  # noqa: D102
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _label(prefix: str):
    def parse(value: str) -> str:
        label = value[len(prefix) + 1:] if value.startswith(f"{prefix}-") else value
        if not _LABEL.match(label):
            raise argparse.ArgumentTypeError(
                f"invalid {prefix} label {value!r}: BIDS labels are letters and digits only"
            )
        return label

    return parse


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {value}")
    return path.resolve()


def build_parser() -> argparse.ArgumentParser:
    """Build the BIDS-App argument parser.

    Defaults are ``argparse.SUPPRESS`` so that only options given on the command line
    override the configuration file and the built-in defaults.

    Returns
    -------
    argparse.ArgumentParser
        The parser for ``run.py bids_dir output_dir analysis_level [options]``.
    """
    parser = _Parser(
        prog="brainscale",
        description=(
            "BrainScale: T1w, BOLD and DWI preprocessing, connectomes and group analysis of "
            "a BIDS dataset, in Python wheels only. Also: 'brainscale demo DIR' runs the "
            "embedded demo and 'brainscale synth DIR' writes a synthetic BIDS dataset."
        ),
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="root folder of the BIDS dataset (read only)")
    parser.add_argument(
        "output_dir", type=Path, help="folder for the BIDS-Derivatives (must be outside bids_dir)"
    )
    parser.add_argument(
        "analysis_level", help="'participant' (one per participant, parallel) or 'group'"
    )
    parser.add_argument("-v", "--version", action="version", version=f"BrainScale {__version__}")

    bids = parser.add_argument_group("BIDS selection")
    bids.add_argument(
        "--participant_label", "--participant-label", dest="participant_label", nargs="+",
        type=_label("sub"), metavar="LABEL",
        help="participants to process, with or without 'sub-' (default: all)",
    )
    bids.add_argument(
        "--session-label", "--session_label", dest="session_label", nargs="+",
        type=_label("ses"), metavar="LABEL", help="sessions to process (default: all)",
    )
    bids.add_argument(
        "--bids-filter-file", dest="bids_filter_file", type=_existing_file, metavar="FILE",
        help="JSON file of pybids queries per input type (keys: t1w, bold, dwi), as in fMRIPrep",
    )
    bids.add_argument(
        "--skip_bids_validator", "--skip-bids-validator", "--skip-bids-validation",
        dest="skip_bids_validation", action="store_true",
        help="do not validate the input dataset",
    )
    bids.add_argument(
        "--array-index", dest="array_index", type=int, metavar="N",
        help="process only the N-th (0-based) of the sorted selected participants; "
        "defaults to SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX when set",
    )

    perf = parser.add_argument_group("Performance and execution")
    perf.add_argument("-w", "--work-dir", dest="work_dir", type=Path, metavar="DIR",
                      help="work directory; reuse it to resume an interrupted run")
    perf.add_argument("--nprocs", "--nthreads", "--n_cpus", "--n-cpus", dest="nprocs", type=int,
                      metavar="N", help="processes for MultiProc (0: all available)")
    perf.add_argument("--omp-nthreads", "--omp_nthreads", dest="omp_nthreads", type=int,
                      metavar="N", help="threads per process (0: nprocs, at most 8)")
    perf.add_argument("--mem-gb", "--mem_gb", dest="mem_gb", type=float, metavar="GB",
                      help="memory limit for the scheduler (0: unlimited)")
    perf.add_argument("--use-plugin", "--use_plugin", dest="use_plugin", type=_existing_file,
                      metavar="FILE.yml", help="Nipype plugin settings (plugin, plugin_args)")
    perf.add_argument("--participants-at-once", dest="participants_at_once", type=int,
                      metavar="N", help="participants processed at the same time, sharing "
                      "--nprocs and --mem-gb (0: one per 2 processes and per 6 GB of --mem-gb "
                      "or of the machine's memory)")
    perf.add_argument("--stop-on-first-crash", dest="stop_on_first_crash", action="store_true",
                      help="stop at the first failing node instead of running what can run")
    perf.add_argument("--config-file", "--config_file", dest="config_file", type=_existing_file,
                      metavar="FILE.toml",
                      help="TOML configuration (as written to output_dir/logs/); "
                      "command-line options override it")
    perf.add_argument("--reports-only", dest="reports_only", action="store_true",
                      help="only rebuild the reports from existing derivatives")
    perf.add_argument("--seed", type=int, help="random seed for every stochastic step")

    wf = parser.add_argument_group("Workflow options")
    wf.add_argument("--modalities", nargs="+", choices=MODALITIES, metavar="MOD",
                    help=f"parts to run, from {', '.join(MODALITIES)} (default: all)")
    wf.add_argument("--atlas", nargs="+", metavar="NAME",
                    help="atlases for regional measures and connectomes (see README)")
    wf.add_argument("--output-spaces", "--output_spaces", dest="output_spaces", nargs="+",
                    choices=OUTPUT_SPACES, metavar="SPACE",
                    help=f"spaces for resampled outputs, from {', '.join(OUTPUT_SPACES)}")
    wf.add_argument("--denoise-strategy", dest="denoise_strategy", choices=DENOISE_STRATEGIES,
                    metavar="NAME", help=f"BOLD denoising, one of {', '.join(DENOISE_STRATEGIES)}")
    wf.add_argument("--thickness-method", dest="thickness_method", choices=THICKNESS_METHODS,
                    help="cortical thickness: 'surface' (FreeSurfer's distance between the "
                         "white and pial meshes, default), 'laplace' (Laplace streamlines) or "
                         "'direct' (DiReCT, ANTs; tens of CPU-minutes at 1 mm)")

    states = parser.add_argument_group("Brain states (decoding, dynamic connectivity)")
    states.add_argument("--decode-conditions", dest="decode_conditions", nargs="+",
                        metavar="TRIAL_TYPE",
                        help="decode these trial types of every task run with events "
                             "('all' for every trial type; default: no decoding)")
    states.add_argument("--decode-space", dest="decode_space", choices=("parcels", "voxels"),
                        help="decoding features: parcel means of the first --atlas (default) "
                             "or template-space voxels in the brain mask (or --decode-regions)")
    states.add_argument("--decode-regions", dest="decode_regions", nargs="+", metavar="NAME",
                        help="restrict the features to atlas regions whose name contains one "
                             "of these (e.g. fusiform parahippocampal inferiortemporal lingual)")
    states.add_argument("--decode-models", dest="decode_models", nargs="+",
                        choices=("linsvm", "logreg", "rf", "tcn"), metavar="MODEL",
                        help="linsvm, logreg, rf (default) and tcn (temporal convolutional "
                             "network on parcel time-series windows, torch)")
    states.add_argument("--decode-patterns", dest="decode_patterns", choices=("lss", "block"),
                        help="trial-wise LSS betas (default) or block averages")
    states.add_argument("--decode-permutations", dest="decode_permutations", type=int,
                        metavar="N", help="block-label permutations for the p-value (100)")
    states.add_argument("--dfc-window", dest="dfc_window", type=float, metavar="SECONDS",
                        help="group level: sliding-window length for dynamic FC (44 s)")
    states.add_argument("--dfc-step", dest="dfc_step", type=float, metavar="SECONDS",
                        help="group level: sliding-window step (2 s)")
    states.add_argument("--dfc-states", dest="dfc_states", type=int, metavar="K",
                        help="group level: number of connectivity states (k-means, 4; 0 skips)")

    group = parser.add_argument_group("Group level")
    group.add_argument("--harmonize-by", dest="harmonize_by", metavar="COLUMN",
                       help="participants.tsv column giving the ComBat batch ('none' to skip)")
    group.add_argument("--covariates", nargs="*", metavar="COLUMN",
                       help="participants.tsv columns whose effects ComBat preserves")
    group.add_argument("--target", metavar="COLUMN",
                       help="participants.tsv column to predict ('none' to skip)")
    group.add_argument("--n-permutations", dest="n_permutations", type=int, metavar="N",
                       help="permutations for the classifier's p-value")
    group.add_argument("--n-random-graphs", dest="n_random_graphs", type=int, metavar="N",
                       help="random networks for small-worldness (0 skips it; about 26 ms "
                            "per network and 400-region connectome)")
    group.add_argument("--models", nargs="+", metavar="MODEL",
                       help="classifiers/regressors to evaluate: logreg, linsvm, rf, mlp, "
                            "brainnetcnn (classification), ridge, linsvr, rf, mlp, brainnetcnn "
                            "(regression); default: all for the task")
    group.add_argument("--derivatives", action="append", metavar="NAME=PATH",
                       help="group level: also analyse another pipeline's derivatives "
                            "(BEP017 relmat/timeseries TSVs of XCP-D or giga_connectome, "
                            "C-PAC/ABIDE .1D ROI time series, FreeSurfer subject folders); "
                            "repeatable")
    group.add_argument("--voxel-inputs", dest="voxel_inputs", nargs="*", metavar="KIND",
                       help="MNI-space maps for 3D CNN / ViT models: gm (Jacobian-modulated "
                            "GM), t1w, zmap[:desc=COND], fa, md, thickness (default: none)")
    group.add_argument("--image-models", dest="image_models", nargs="*", metavar="MODEL",
                       help="image models on --voxel-inputs: sfcn, vit (default: both)")
    group.add_argument("--voxel-downsample", dest="voxel_downsample", type=int, metavar="N",
                       help="block-average the maps by N (2: 2 mm -> 4 mm)")
    group.add_argument("--qc-exclude", dest="qc_exclude", metavar="auto|none|FILE.tsv",
                       help="images left out of every group analysis: auto (outlier on 3 "
                            "IQMs within their site, BOLD mean FD > 0.55 mm, DWI > 20 %% bad "
                            "volumes; default), none, or a TSV with participant_id [session_id "
                            "modality task reason]")
    return parser


_SECTIONS = {
    "execution": ("participant_label", "session_label", "bids_filter_file",
                  "skip_bids_validation", "work_dir", "reports_only", "array_index"),
    "nipype": ("nprocs", "omp_nthreads", "mem_gb", "use_plugin", "stop_on_first_crash",
               "participants_at_once"),
    "workflow": ("modalities", "atlas", "output_spaces", "denoise_strategy", "thickness_method",
                 "seed", "decode_conditions", "decode_space", "decode_regions", "decode_models",
                 "decode_patterns", "decode_permutations"),
    "group": ("harmonize_by", "covariates", "target", "n_permutations", "n_random_graphs",
              "models", "derivatives",
              "voxel_inputs", "image_models", "voxel_downsample", "qc_exclude",
              "dfc_window", "dfc_step", "dfc_states"),
}


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> Config:
    """Parse BIDS-App arguments into a frozen configuration.

    Parameters
    ----------
    argv : list of str
        Arguments without the program name.
    environ : dict, optional
        Environment (defaults to ``os.environ``); array job indices are read from it.

    Returns
    -------
    Config
        Defaults, overridden by ``--config-file``, overridden by the command line.

    Raises
    ------
    UsageError
        Invalid options (exit 64).
    UnknownAnalysisLevelError
        An analysis level other than participant or group (exit 17).
    """
    environ = dict(os.environ if environ is None else environ)
    try:
        namespace = build_parser().parse_args(argv)
    except argparse.ArgumentTypeError as err:  # pragma: no cover - argparse wraps these
        raise UsageError(str(err)) from err
    given: dict[str, Any] = vars(namespace)
    if given["analysis_level"] not in ANALYSIS_LEVELS:
        raise UnknownAnalysisLevelError(
            f"unknown analysis level {given['analysis_level']!r}: use 'participant' or 'group'"
        )
    config = Config()
    if "config_file" in given:
        path = given.pop("config_file")
        config = Config.from_toml(path.read_text(), source=str(path))
    updates: dict[str, dict[str, Any]] = {
        "execution": {
            "bids_dir": given.pop("bids_dir").resolve(),
            "output_dir": given.pop("output_dir").resolve(),
            "analysis_level": given.pop("analysis_level"),
        }
    }
    for section, names in _SECTIONS.items():
        for name in names:
            if name in given:
                value = given[name]
                updates.setdefault(section, {})[name] = (
                    Path(value).resolve() if isinstance(value, Path) else value
                )
    if "array_index" not in updates["execution"]:
        for variable in ("SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX"):
            if environ.get(variable, "").strip():
                try:
                    updates["execution"]["array_index"] = int(environ[variable])
                except ValueError as err:
                    raise UsageError(f"{variable}={environ[variable]!r} is not an integer") from err
                break
    data = config.to_dict()
    for section, values in updates.items():
        data.setdefault(section, {}).update(values)
    return Config.from_dict(data)
