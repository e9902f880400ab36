"""Run a function over items in forked worker processes (volumes, chunks of a series)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_TASK: tuple[Callable[..., Any], list[list]] | None = None
"""The function and arguments of the running :func:`fork_map` (inherited by the workers)."""


def _run_item(index: int) -> Any:
    """Apply the inherited function to the arguments at ``index`` (in a worker)."""
    func, items = _TASK
    return func(*(args[index] for args in items))


def fork_map(func: Callable[..., Any], *iterables: Iterable, n_jobs: int = 1) -> list:
    """``list(map(func, *iterables))``, in ``n_jobs`` forked processes when ``n_jobs > 1``.

    The workers are forked after the function and its arguments are in place, so they
    inherit them: neither is pickled (closures over large arrays, dipy's Cython objects
    and ANTs images are fine); only the results travel back, in order. Works from
    inside a Nipype worker process; calls do not nest.

    Parameters
    ----------
    func : callable
        Function of one item of each iterable; its results must be picklable.
    *iterables : iterable
        Arguments, as for :func:`map`.
    n_jobs : int
        Worker processes; 1 runs in this process.

    Returns
    -------
    list
        ``func`` applied to each item.
    """
    global _TASK
    items = [list(it) for it in iterables]
    n_items = len(items[0]) if items else 0
    if n_jobs <= 1 or n_items <= 1:
        return list(map(func, *items))
    if _TASK is not None:
        raise RuntimeError("fork_map calls cannot nest")
    _TASK = (func, items)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(n_jobs, n_items), mp_context=context) as pool:
            return list(pool.map(_run_item, range(n_items)))
    finally:
        _TASK = None
