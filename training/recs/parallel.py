"""Threads for the recommender's batch work: numpy, BLAS and LightGBM release the GIL in
the heavy calls, so a few threads over independent blocks use every core of a batch job
(a real-time request passes ``num_threads=1`` and stays on its own thread)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def threads(num_threads: int) -> int:
    """How many threads ``num_threads`` means (0 or less: one per core)."""
    return num_threads if num_threads > 0 else os.cpu_count() or 1


def thread_map(fn: Callable[[T], R], tasks: Iterable[T], num_threads: int) -> list[R]:
    """``[fn(t) for t in tasks]``, in order, on up to ``num_threads`` threads."""
    tasks = list(tasks)
    workers = min(threads(num_threads), len(tasks))
    if workers <= 1:
        return [fn(t) for t in tasks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, tasks))
