"""Errors of BrainScale and the exit codes they map to.

The exit codes follow the BIDS-Apps execution specification and the BSD
``sysexits.h`` conventions it borrows from.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``run.py`` (documented in the README)."""

    OK = 0
    FAILURE = 1
    PARTIAL = 3
    """Every participant published derivatives, but some runs or modalities failed."""
    VALIDATION_FAILED = 16
    UNKNOWN_ANALYSIS_LEVEL = 17
    NOTHING_SELECTED = 18
    USAGE = 64
    DATA_ERROR = 65
    NO_INPUT = 66
    CANNOT_CREATE_OUTPUT = 73
    TEMPORARY_FAILURE = 75
    """Another run holds a participant's work-directory lock (``EX_TEMPFAIL``)."""
    INTERRUPTED_SIGINT = 130
    INTERRUPTED_SIGTERM = 143


class BrainScaleError(Exception):
    """Base class of every error BrainScale reports to a user.

    Parameters
    ----------
    message : str
        What went wrong, naming the file or option and the problem.
    """

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(BrainScaleError):
    """An argument or option is invalid."""

    exit_code = ExitCode.USAGE


class UnknownAnalysisLevelError(BrainScaleError):
    """The analysis level is neither ``participant`` nor ``group``."""

    exit_code = ExitCode.UNKNOWN_ANALYSIS_LEVEL


class BIDSValidationError(BrainScaleError):
    """The input dataset is not valid BIDS."""

    exit_code = ExitCode.VALIDATION_FAILED


class NothingSelectedError(BrainScaleError):
    """The participant, session or filter selection matched no data."""

    exit_code = ExitCode.NOTHING_SELECTED


class InputDataError(BrainScaleError):
    """An input file exists but its content cannot be used (empty, corrupt, inconsistent)."""

    exit_code = ExitCode.DATA_ERROR


class NoInputError(BrainScaleError):
    """An input path does not exist or is not readable."""

    exit_code = ExitCode.NO_INPUT


class OutputError(BrainScaleError):
    """The output or work directory cannot be created or written."""

    exit_code = ExitCode.CANNOT_CREATE_OUTPUT


class ResourceError(BrainScaleError):
    """A template or atlas is not available offline."""

    exit_code = ExitCode.USAGE


class LockedError(BrainScaleError):
    """Another run is processing the same participant in the same work directory."""

    exit_code = ExitCode.TEMPORARY_FAILURE


class RunInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """SIGTERM or SIGINT arrived: stop everything (a BaseException, so no handler eats it).

    Parameters
    ----------
    signum : int
        The signal number.
    """

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.exit_code = ExitCode(128 + self.signum) if 128 + self.signum in (
            ExitCode.INTERRUPTED_SIGINT, ExitCode.INTERRUPTED_SIGTERM) else ExitCode.FAILURE
        super().__init__(signal.Signals(self.signum).name)


_pending_interruption: list[int] = []


def note_interruption(signum: int) -> None:
    """Remember that SIGTERM/SIGINT arrived, for :func:`raise_if_interrupted`.

    The signal handler raises :class:`RunInterrupted` where the main thread happens to be;
    when that is inside a node run in the main process, Nipype's runtime context swallows
    the exception (it catches every exception of a node) and carries on with the graph.
    Noting the signal lets the engine raise it again at the next scheduling step.

    Parameters
    ----------
    signum : int
        The signal number.
    """
    _pending_interruption.append(int(signum))


def raise_if_interrupted() -> None:
    """Raise :class:`RunInterrupted` if a signal was noted by :func:`note_interruption`.

    Raises
    ------
    RunInterrupted
        For the first signal noted.
    """
    if _pending_interruption:
        raise RunInterrupted(_pending_interruption[0])


def forget_interruption() -> None:
    """Clear a noted signal (the interruption has been handled)."""
    _pending_interruption.clear()
