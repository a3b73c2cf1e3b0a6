"""Python's cyclic garbage collector kept off a service worker's request path.

Why: BentoML's timeout middleware schedules a timer per request and never cancels it; the
timer holds the context the request started in until the timeout (10 s) passes. So some
ten seconds of requests are always alive, the automatic collector promotes them to its
oldest generation, and its full collections walk them all: pauses of 100-400 ms, several
a minute (/recommend p99 231 ms at 8 connections and 244 ms at 1 before issue 21;
measured with tests/benchmarks/bench_service.py on 2 cores).

The policy (``OMNI_GC=idle``, the default), chosen by measurement:

- what start-up built is frozen (never walked again) and automatic collection is off;
- every :data:`YOUNG_EVERY_S` the youngest generation is collected (the cycles requests
  leave behind; under 1 ms), every :data:`MIDDLE_EVERY`-th time the middle one too
  (about 5 ms at 2,000 requests/s): between requests, never inside one;
- the oldest generation only when the worker has had no request for :data:`IDLE_S`, or
  under load once the worker grew by :data:`GROWTH_MB` since the last full collection
  (logged as a warning: it paused requests).

Turning collection off and collecting only when idle left the memory growing under
sustained load (678 to 791 MB in 10 minutes: requests do leave some cycles); with the
young collections it stays flat. ``OMNI_GC=auto`` gives Python's collector back (the
start-up is still frozen).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

import psutil

YOUNG_EVERY_S = 0.1
"""How often the youngest generation is collected."""
MIDDLE_EVERY = 10
"""Every this many young collections, the middle generation too (once a second)."""
IDLE_S = 1.0
"""A worker with no new request for this long collects everything (it hurts nobody)."""
GROWTH_MB = 256.0
"""Resident memory the worker may grow by under load before it collects everything."""
FORCED = "garbage collection under load"
"""How the warning of a full collection under load starts (the benchmark counts them)."""
log = logging.getLogger("omni.collector")


@dataclass
class Activity:
    """Requests seen by the worker (counted by the request middleware)."""

    requests: int = 0


def full_collection_due(
    quiet_s: float, served: bool, grown_mb: float, growth_mb: float = GROWTH_MB
) -> str | None:
    """Why the oldest generation should be collected now ("idle" or "growth"), or None.

    ``quiet_s``: seconds since the worker last saw a new request; ``served``: whether it
    answered any since the last full collection; ``grown_mb``: resident memory gained
    since then; ``growth_mb``: how much growth forces a collection under load.
    """
    if grown_mb >= growth_mb:
        return "growth"
    if served and quiet_s >= IDLE_S:
        return "idle"
    return None


def freeze() -> None:
    """Collect once, then move every surviving object out of the collector's sight (the
    snapshot's arrays and indexes, the framework's modules: never garbage); then give the
    memory start-up freed back to the system (:func:`release_free_memory`)."""
    gc.collect()
    gc.freeze()
    release_free_memory()


def release_free_memory() -> None:
    """Hand the heap that loading freed back to the system: Arrow's pool's unused memory.
    With the system allocator, which `omni serve` gives its workers
    (:data:`serving.bentoml_server.SYSTEM_ARROW_POOL`), Arrow's ``release_unused`` also
    trims glibc's arenas: the reads and conversions of start-up (snapshot, identity
    graph, the store's event ids) leave freed blocks between kept ones, which stayed
    resident (issue 17: about 5 KB a customer at 20,000 customers). After start-up, after
    a snapshot switch, in the live refresh process after each fold, and between the steps
    of a job (:func:`free_between_steps`): never on a request's path."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def free_between_steps() -> None:
    """Collect, then hand what a finished job step freed back to the system before the next
    step starts (``omni run``, ``omni train all``): Arrow's memory pool (mimalloc) kept it
    resident, so each step's peak stacked on what the steps before it had left (at 20,000
    customers the main job peaked at 3.72 GB before, 2.86 GB after: docs/performance.md,
    "Stop 47")."""
    gc.collect()
    release_free_memory()


def resident_mb(process: psutil.Process | None = None) -> float:
    """The resident memory of ``process`` (default: this one), MB."""
    return (process or psutil.Process()).memory_info().rss / 2**20


class IdleCollector:
    """Collects young generations on a clock and the oldest at the moments
    :func:`full_collection_due` names."""

    def __init__(
        self, activity: Activity, mode: str = "idle", growth_mb: float = GROWTH_MB
    ) -> None:
        self.activity = activity
        self.mode = mode
        self.growth_mb = growth_mb
        self.collections = {"young": 0, "middle": 0, "idle": 0, "growth": 0}

    def start(self) -> None:
        """Freeze what start-up built and, in ``idle`` mode, turn automatic collection off."""
        freeze()
        if self.mode == "idle":
            gc.disable()

    async def run(self) -> None:
        """The worker's background task (``idle`` mode): one step every YOUNG_EVERY_S."""
        if self.mode != "idle":
            return
        me = psutil.Process()
        seen, quiet_since, baseline = self.activity.requests, time.monotonic(), resident_mb(me)
        served = False
        while True:
            await asyncio.sleep(YOUNG_EVERY_S)
            now = time.monotonic()
            if self.activity.requests != seen:
                seen, quiet_since, served = self.activity.requests, now, True
            grown = resident_mb(me) - baseline
            reason = full_collection_due(now - quiet_since, served, grown, self.growth_mb)
            if reason is not None:
                self.collect(reason)
                served, baseline = False, resident_mb(me)
            elif served:
                middle = (self.collections["young"] + 1) % MIDDLE_EVERY == 0
                self.collect("middle" if middle else "young")

    def collect(self, kind: str) -> int:
        """One collection of ``kind`` ("young", "middle", or a full one for "idle" or
        "growth"); a full one under load is logged as a warning."""
        generation = {"young": 0, "middle": 1}.get(kind, 2)
        t0 = time.perf_counter()
        found = gc.collect(generation)
        pause_ms = (time.perf_counter() - t0) * 1000
        self.collections[kind] += 1
        if kind == "middle":
            self.collections["young"] += 1  # a middle collection includes the young one
        if kind == "growth":
            log.warning(
                "%s (the worker grew by %.0f MB or more): %s unreachable objects, %.1f ms pause",
                FORCED,
                self.growth_mb,
                found,
                pause_ms,
            )
        return found
