"""Independent pieces of a reproduction (table rows, cross-validation folds) run a few at a time in
spawned processes, one torch thread each unless OMP_NUM_THREADS says more: on a CPU the pieces of
a table, not the threads of one model, are what parallelise well."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import torch


def in_processes(fn: Callable, calls: dict, jobs: int) -> dict:
    """``{name: fn(*args)}`` for ``calls`` = ``{name: args}``, ``jobs`` at a time; a piece's error
    is raised here (after the others have stopped or finished)."""
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_job,
                             initargs=(int(threads) if threads.isdigit() else 1,)) as pool:
        futures = {name: pool.submit(fn, *args) for name, args in calls.items()}
        return {name: f.result() for name, f in futures.items()}


def _one_job(threads: int) -> None:
    torch.set_num_threads(max(1, threads))
