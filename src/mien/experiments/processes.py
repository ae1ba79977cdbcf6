"""Independent pieces of a reproduction (table rows, cross-validation folds) run a few at a time in
spawned processes, one torch thread each unless OMP_NUM_THREADS says more: on a CPU the pieces of
a table, not the threads of one model, are what parallelise well.

Ctrl-C reaches every process of the terminal's group: each piece under way stops as a single run
does (its last checkpoint kept), no further piece starts, and KeyboardInterrupt reaches the caller."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import torch

_stopped = False  # in a worker: a piece it ran was interrupted, so it starts no other


def in_processes(fn: Callable, calls: dict, jobs: int) -> dict:
    """``{name: fn(*args)}`` for ``calls`` = ``{name: args}``, ``jobs`` at a time; a piece's error
    is raised here (after the pieces under way have stopped or finished; those not started are
    dropped)."""
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_job,
                               initargs=(int(threads) if threads.isdigit() else 1,))
    try:
        futures = {name: pool.submit(_guarded, fn, *args) for name, args in calls.items()}
        return {name: f.result() for name, f in futures.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _one_job(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def _guarded(fn: Callable, *args):
    """``fn(*args)`` in a worker, refused once an interrupt has stopped one of its pieces (the pool
    hands a worker its next piece before the caller can cancel it)."""
    global _stopped
    if _stopped:
        raise KeyboardInterrupt
    try:
        return fn(*args)
    except KeyboardInterrupt:
        _stopped = True
        raise
