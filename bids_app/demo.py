"""``brainscale synth DIR`` (synthetic BIDS data) and ``brainscale demo DIR`` (end to end).

The demo writes a synthetic dataset with known ground truth to ``DIR/bids`` and runs the
participant level and then the group level into ``DIR/derivatives``, with no network and
no data download.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from brainscale.bids_app.cli import _Parser
from brainscale.errors import ExitCode, UsageError

SUBJECTS_FOR_COVARIATES = 12
"""Demos with fewer participants run ComBat without the age and sex covariates."""


def _synth_arguments(parser: argparse.ArgumentParser, subjects: int) -> None:
    parser.add_argument("directory", type=Path, help="folder to write")
    parser.add_argument("--subjects", type=int, default=subjects, help="number of participants")
    parser.add_argument("--sites", type=int, default=2, help="number of acquisition sites")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--modalities", nargs="+", default=["anat", "func", "dwi"],
                        choices=["anat", "func", "dwi"], help="what to generate")
    parser.add_argument("--bold-volumes", type=int, default=100, help="BOLD time points")
    parser.add_argument("--directions", type=int, default=30, help="DWI directions at b=1000")


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``demo`` and ``synth`` subcommands.

    Returns
    -------
    argparse.ArgumentParser
        The parser; usage errors raise :class:`~brainscale.errors.UsageError`.
    """
    parser = _Parser(prog="brainscale", description="synthetic data and the embedded demo")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    synth = commands.add_parser("synth", help="write a synthetic BIDS dataset with ground truth")
    _synth_arguments(synth, subjects=4)
    demo = commands.add_parser("demo", help="synthesize data, then run participant and group")
    _synth_arguments(demo, subjects=4)
    demo.add_argument("--nprocs", type=int, default=0, help="processes (0: all CPUs)")
    return parser


def _spec(args):
    from brainscale.bids_app.synth import SynthSpec

    if args.subjects < 1 or args.sites < 1 or args.sites > args.subjects:
        raise UsageError("need --subjects >= 1 and 1 <= --sites <= --subjects")
    return SynthSpec(subjects=args.subjects, sites=args.sites, seed=args.seed,
                     modalities=tuple(args.modalities), bold_volumes=args.bold_volumes,
                     directions=args.directions)


def main(argv: list[str], run_app: Callable[[list[str]], int]) -> int:
    """Run ``synth`` or ``demo``.

    Parameters
    ----------
    argv : list of str
        Arguments starting with the subcommand.
    run_app : callable
        The BIDS-App entry (:func:`brainscale.bids_app.run.main`), passed in by the caller so that
        this module does not import the module that imports it.

    Returns
    -------
    int
        Exit code (that of the first failing level for ``demo``).
    """
    from brainscale.bids_app.synth import generate_dataset

    args = build_parser().parse_args(argv)
    spec = _spec(args)
    directory = args.directory.resolve()
    if args.command == "synth":
        generate_dataset(directory, spec)
        print(f"synthetic BIDS dataset written to {directory} (truth in sourcedata/truth/)")
        return int(ExitCode.OK)
    bids_dir, output_dir = directory / "bids", directory / "derivatives"
    start = time.perf_counter()
    generate_dataset(bids_dir, spec)
    print(f"[demo] synthetic dataset: {bids_dir} ({time.perf_counter() - start:.0f} s)")
    common = ["--work-dir", str(directory / "work"), "--seed", str(args.seed),
              "--nprocs", str(args.nprocs)]
    # ComBat protecting age and sex needs more participants per site than a small demo
    # has: small demos protect only the diagnosis (the group level's target).
    group_options = [] if args.subjects >= SUBJECTS_FOR_COVARIATES else ["--covariates"]
    for level, options in (("participant", []), ("group", group_options)):
        start = time.perf_counter()
        code = run_app([str(bids_dir), str(output_dir), level, *common, *options])
        print(f"[demo] {level} level: exit code {code} ({time.perf_counter() - start:.0f} s)")
        if code != ExitCode.OK:
            return code
    print(f"[demo] done: open {output_dir}/sub-01.html and {output_dir}/group/group.html")
    return int(ExitCode.OK)
