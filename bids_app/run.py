"""Entry point: ``run.py bids_dir output_dir participant|group`` and ``brainscale demo|synth``.

Every error a user can cause ends with a one-paragraph message on stderr and a
documented exit code (see :class:`brainscale.errors.ExitCode` and the README).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from brainscale.errors import BrainScaleError, ExitCode, RunInterrupted, forget_interruption

LOGGER = logging.getLogger("brainscale")


class _StderrHandler(logging.StreamHandler):
    """A console handler that writes to the current ``sys.stderr`` (captured or not)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure_console_logging() -> None:
    if not any(isinstance(h, _StderrHandler) for h in LOGGER.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [brainscale] %(message)s", "%H:%M:%S"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    # Nipype's per-node INFO lines drown what matters; failures are summarized anyway.
    for option in ("workflow_level", "interface_level", "utils_level"):
        nipype_config.set("logging", option, "WARNING")
    nipype_logging.update_logging(nipype_config)
    workflow_logger = logging.getLogger("nipype.workflow")
    if not any(isinstance(f, _NoCrashTraceback) for f in workflow_logger.filters):
        workflow_logger.addFilter(_NoCrashTraceback())


class _NoCrashTraceback(logging.Filter):
    """Keep node tracebacks off the console (the crash files hold them).

    The runner prints one line per failed node instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        message = str(record.msg)
        return not (message.startswith("Saving crash info") or "Traceback" in message
                    or message.startswith("could not run node"))


def main(argv: list[str] | None = None) -> int:
    """Run BrainScale from command-line arguments.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (also used by the console script).
    """
    from brainscale.bids_app.cli import ANALYSIS_LEVELS, SUBCOMMANDS, parse_args
    from brainscale.bids_app.parallel import install_signal_handlers, stop_descendants
    from brainscale.bids_app.preflight import is_disk_full

    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _configure_console_logging()
    main_process = os.getpid()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = install_signal_handlers()
    try:
        if argv and argv[0] in SUBCOMMANDS and not (len(argv) > 2 and argv[2] in ANALYSIS_LEVELS):
            from brainscale.bids_app.demo import main as demo_main

            return int(demo_main(argv, main))
        if any(arg.startswith("s3://") for arg in argv[:2]):
            from brainscale.bids_app.cloud import run_staged  # boto3 only for S3 URLs

            return int(run_staged(argv, main))
        config = parse_args(argv)
        from brainscale.bids_app import runner

        if config.execution.analysis_level == "participant":
            return int(runner.run_participant_level(config))
        return int(runner.run_group_level(config))
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except BrainScaleError as err:
        print(f"brainscale: error: {err}", file=sys.stderr)
        return int(err.exit_code)
    except (RunInterrupted, KeyboardInterrupt) as err:
        signum = err.signum if isinstance(err, RunInterrupted) else signal.SIGINT
        # the pools of the killed workers report BrokenProcessPool from their threads
        logging.getLogger("concurrent.futures").disabled = True
        stopped = stop_descendants()
        if os.getpid() != main_process:  # a forked participant: the parent reports
            os._exit(128 + signum)
        print(f"brainscale: stopped by {signal.Signals(signum).name}"
              f"{f' ({stopped} worker process(es) stopped)' if stopped else ''}; nothing "
              "half-published; rerun with the same -w/--work-dir to resume", file=sys.stderr)
        return 128 + int(signum)
    except OSError as err:
        if is_disk_full(err):
            print(f"brainscale: error: {err}: free some space and rerun", file=sys.stderr)
            return int(ExitCode.CANNOT_CREATE_OUTPUT)
        raise
    finally:
        forget_interruption()
        for signum, handler in (previous or {}).items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
