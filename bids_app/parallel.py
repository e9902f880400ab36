"""Several participants at once, and stopping every process of a run on a signal.

``--nprocs`` and ``--mem-gb`` are shared among the participants that run at once: with
``K`` at once, each gets ``nprocs // K`` processes (its own MultiProc pool) and
``mem_gb / K`` of memory. Participants run in forked child processes (Nipype changes
the working directory while it runs a node, so two graphs cannot share one process).

SIGTERM (``docker stop``, batch schedulers) and SIGINT (Ctrl-C) raise
:class:`brainscale.errors.RunInterrupted` in the main thread; :func:`stop_descendants`
then kills every process the run started (participant children, MultiProc workers and
the ANTs/other binaries they run) and the run exits with 128 + the signal number.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait

from brainscale.errors import RunInterrupted, note_interruption

MEM_GB_PER_PARTICIPANT = 6.0
"""Memory budgeted per participant: a conservative estimate for a 0.7 mm T1w participant
(not measured here; the largest process of a 2 mm synthetic participant peaks at ~0.9 GB)."""
PROCS_PER_PARTICIPANT = 2
"""Processes per participant when ``--participants-at-once`` is automatic (0)."""


def participants_at_once(n_participants: int, nprocs: int, mem_gb: float,
                         requested: int = 0) -> int:
    """Decide how many participants run at the same time.

    Parameters
    ----------
    n_participants : int
        Participants selected.
    nprocs : int
        ``--nprocs`` (already resolved: available CPUs when 0 was given).
    mem_gb : float
        ``--mem-gb`` (0: no limit given).
    requested : int
        ``--participants-at-once`` (0: automatic: one per :data:`PROCS_PER_PARTICIPANT`
        processes and per :data:`MEM_GB_PER_PARTICIPANT` GB of ``--mem-gb``, or of the
        machine's memory when no ``--mem-gb`` is given).

    Returns
    -------
    int
        At least 1, at most ``n_participants`` and ``nprocs``.
    """
    if requested:
        count = requested
    else:
        count = max(1, nprocs // PROCS_PER_PARTICIPANT)
        memory = mem_gb or _machine_memory_gb()
        if memory:
            count = min(count, max(1, int(memory // MEM_GB_PER_PARTICIPANT)))
    return max(1, min(count, n_participants, max(nprocs, 1)))


def _machine_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int | None = None) -> list[int]:
    """Return the process ids of every descendant of ``pid`` (default: this process)."""
    children = _children_map()
    found, todo = [], [os.getpid() if pid is None else pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_descendants(rounds: int = 5) -> int:
    """Stop every descendant process at once: freeze them all, then kill them.

    Each process is first stopped (SIGSTOP: it can no longer start new ones), the tree is
    listed again until no new process appears, then all are killed (SIGKILL) and reaped.
    Killing a parent first would orphan its children, which then escape the search.
    Node results are cached per finished node, so nothing of value is lost.

    Parameters
    ----------
    rounds : int
        Times the process tree is listed again while freezing.

    Returns
    -------
    int
        How many processes were stopped.
    """
    frozen: list[int] = []
    for _ in range(rounds):
        new = [pid for pid in descendants() if pid not in frozen]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
            frozen.append(pid)
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    for pid in frozen:
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        _reap(pid)
    return len(frozen)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().decode(errors="replace")
    except OSError:
        return False
    return state[state.rfind(")") + 2:].split()[0] != "Z"


def _raise_interrupted(signum, _frame):
    note_interruption(signum)  # raised again by the engine if a node swallows it
    raise RunInterrupted(signum)


def install_signal_handlers() -> dict:
    """Make SIGTERM and SIGINT raise :class:`~brainscale.errors.RunInterrupted`.

    Returns
    -------
    dict
        The previous handlers, by signal number (to restore them).
    """
    return {signum: signal.signal(signum, _raise_interrupted)
            for signum in (signal.SIGTERM, signal.SIGINT)}


def _child(connection, task: Callable, item) -> None:
    """Run one task in a forked child and send its result (or the interruption) back."""
    try:
        connection.send(("done", task(item)))
    except RunInterrupted as interrupted:
        stop_descendants()
        os._exit(int(interrupted.exit_code))
    finally:
        connection.close()


def run_at_once(items: list, task: Callable, at_once: int, on_result: Callable) -> None:
    """Run ``task(item)`` for every item, ``at_once`` at a time in forked children.

    Parameters
    ----------
    items : list
        Work items, started in order.
    task : callable
        Picklable-result function of one item (runs in the child).
    at_once : int
        Children at a time (1: run in this process, no fork).
    on_result : callable
        ``on_result(item, result)`` in this process as each item finishes; ``result`` is
        ``None`` when the child died without sending one.
    """
    if at_once <= 1:
        for item in items:
            on_result(item, task(item))
        return
    context = multiprocessing.get_context("fork")
    pending = list(items)
    running: dict = {}
    while pending or running:
        while pending and len(running) < at_once:
            item = pending.pop(0)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(sender, task, item), daemon=False)
            process.start()
            sender.close()
            running[receiver] = (item, process)
        for receiver in wait(list(running)):
            item, process = running.pop(receiver)
            try:
                _, result = receiver.recv()
            except (EOFError, OSError):
                result = None
            process.join()
            on_result(item, result)

