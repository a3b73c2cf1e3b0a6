"""Python's cyclic garbage collector kept off a service worker's request path.

Why: BentoML's timeout middleware schedules a timer per request and never cancels it,
and the timer holds the context the request ran in (its starlette request, spans,
response context) until the timeout (10 s here) passes. So at any moment some ten
seconds of requests are alive: the automatic collector promotes them to its oldest
generation, and its full collections walk them all, 150-400 ms each, several a minute
(p99 of 230-370 ms at 1,000+ requests/s, measured on 2 cores with
tests/benchmarks/bench_service.py). Those objects are freed by reference counting
when their timer fires: with automatic collection off, the worker's memory stayed flat
over 90 s at 2,000 requests/s (issue 21).

The policy (``OMNI_GC=idle``, the default): what exists at start-up is frozen (never
walked again), automatic collection is off, and a full collection runs when the worker
has had no request for :data:`IDLE_S`, or under sustained load once the tracked objects
grew by :data:`GROWTH_LIMIT` since the last collection: memory stays bounded whatever
the traffic, and a pause happens only when something really leaks cycles.
``OMNI_GC=auto`` keeps Python's automatic collection (start-up still frozen).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

CHECK_EVERY_S = 0.25
"""How often the worker looks at its activity and the tracked objects' growth."""
IDLE_S = 1.0
"""A worker with no new request for this long collects (the pause then hurts nobody)."""
IDLE_MIN_GROWTH = 10_000
"""Below this growth an idle worker does not bother: nothing worth finding."""
GROWTH_LIMIT = 2_000_000
"""Tracked objects the worker may grow by under load before it collects anyway (a few
hundred MB at most). Requests themselves leave no cycles: this is for a leak's sake."""
log = logging.getLogger("omni.collector")


@dataclass
class Activity:
    """Requests seen by the worker (counted by the request middleware)."""

    requests: int = 0


def collection_due(growth: int, quiet_s: float) -> str | None:
    """Why a collection is due now ("idle" or "growth"), or None.

    ``growth``: tracked objects allocated and not freed since the last collection
    (``gc.get_count()[0]`` while automatic collection is off); ``quiet_s``: seconds since
    the worker last saw a new request.
    """
    if growth >= GROWTH_LIMIT:
        return "growth"
    if quiet_s >= IDLE_S and growth >= IDLE_MIN_GROWTH:
        return "idle"
    return None


def freeze() -> None:
    """Collect once, then move every surviving object out of the collector's sight (the
    snapshot's arrays and indexes, the framework's modules: never garbage)."""
    gc.collect()
    gc.freeze()


class IdleCollector:
    """Runs full collections at the moments :func:`collection_due` names."""

    def __init__(self, activity: Activity, mode: str = "idle") -> None:
        self.activity = activity
        self.mode = mode
        self.collections = {"idle": 0, "growth": 0}
        self.last_pause_ms = 0.0

    def start(self) -> None:
        """Freeze what start-up built and, in ``idle`` mode, turn automatic collection off."""
        freeze()
        if self.mode == "idle":
            gc.disable()

    async def run(self) -> None:
        """The worker's background task: checks every CHECK_EVERY_S, collects when due."""
        if self.mode != "idle":
            return
        seen, quiet_since = self.activity.requests, time.monotonic()
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            now = time.monotonic()
            if self.activity.requests != seen:
                seen, quiet_since = self.activity.requests, now
            reason = collection_due(gc.get_count()[0], now - quiet_since)
            if reason is not None:
                self.collect(reason)
                quiet_since = time.monotonic()  # idle again counts from here

    def collect(self, reason: str) -> int:
        """One full collection; under load it is logged (it paused requests)."""
        growth = gc.get_count()[0]
        t0 = time.perf_counter()
        found = gc.collect()
        self.last_pause_ms = (time.perf_counter() - t0) * 1000
        self.collections[reason] += 1
        level = logging.INFO if reason == "growth" else logging.DEBUG
        log.log(
            level,
            "garbage collection (%s): %s unreachable of %s new objects, %.1f ms",
            reason,
            found,
            growth,
            self.last_pause_ms,
        )
        return found
