"""Compaction: journaled live events into the events store, so training, snapshots and
batch scoring see them.

An append load of the journal's closed segments (the same event ids, identities resolved
again as a batch load resolves them), then the segments are removed. Idempotent: a kill
after the store's switch and before the removal leaves segments whose events the next
compaction finds stored and skips. While a service writes the journal, only the segments
it has closed are taken (it closes one a minute). With the journal in Redis, the stream's
entries that every running worker has applied are taken, then trimmed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from features.contract.schema import CUSTOMERS, PRODUCTS, STORES, empty_frame
from features.settings import Settings
from features.sources.base import SourceData
from features.store.events import store_events
from features.store.parts import RAW_CUSTOMER_ID
from serving.live.journal import Journal, JournalError


@dataclass
class CompactResult:
    """What a compaction did."""

    segments: int  # journal segments compacted (and removed)
    events: int  # events they held
    added: int  # events new to the store
    skipped: int  # events the store held already
    service_running: bool  # a service holds the journal: its open segment was left
    seconds: float

    def line(self) -> str:
        if not self.segments and not self.events:
            left = " (a running service holds the open one)" if self.service_running else ""
            return f"no closed journal segments to compact{left}"
        return (
            f"compacted {self.events:,} journaled events from {self.segments} segments: "
            f"{self.added:,} added to the store, {self.skipped:,} already there "
            f"({self.seconds:.1f} s)"
        )


def compact(settings: Settings, progress: Callable[[str], None] | None = None) -> CompactResult:
    """Move the journal's closed segments (or, in Redis, the entries every running worker
    has applied) into the events store (see the module docstring)."""
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    if settings.online_store:
        return _compact_redis(settings, say, t0)
    if not settings.journal_dir.is_dir():
        return CompactResult(0, 0, 0, 0, False, 0.0)
    try:
        journal = Journal(settings.journal_dir)  # no service: everything can be closed
    except JournalError:
        journal = Journal(settings.journal_dir, writer=False)
    try:
        if journal.writer:
            journal.seal()
        segments = journal.sealed()
        events = journal.read(segments)
        if len(events):
            say(f"read {len(events):,} journaled events from {len(segments)} segments")
        added, skipped = _store(settings, events, str(settings.journal_dir))
        journal.remove(segments)
        return CompactResult(
            len(segments), len(events), added, skipped, not journal.writer,
            time.perf_counter() - t0,
        )  # fmt: skip
    finally:
        journal.close()


def _compact_redis(settings: Settings, say: Callable[[str], None], t0: float) -> CompactResult:
    """:func:`compact` with the journal in Redis: the entries every running worker has
    applied (all, when none runs) go to the store, then are trimmed from the stream."""
    from serving.live.redis_journal import RedisJournal

    journal = RedisJournal(settings.online_store, settings.online_namespace)
    try:
        upto = journal.applied_by_all()  # None: no worker runs, everything can go
        events, last = journal.compactable(upto)
        running = upto is not None
        if last is None:
            return CompactResult(0, 0, 0, 0, running, 0.0)
        say(f"read {len(events):,} journaled events from Redis")
        added, skipped = _store(settings, events, journal.where)
        journal.remove_through(last)
        return CompactResult(1, len(events), added, skipped, running, time.perf_counter() - t0)
    finally:
        journal.close()


def _store(settings: Settings, events, name: str) -> tuple[int, int]:
    """Append journaled events to the store as a load of their raw ids: (added, already
    stored)."""
    if not len(events):
        return 0, 0
    raw = events.assign(customer_id=events[RAW_CUSTOMER_ID]).drop(columns=RAW_CUSTOMER_ID)
    data = SourceData(
        events=raw,
        customers=empty_frame(CUSTOMERS),
        products=empty_frame(PRODUCTS),
        stores=empty_frame(STORES),
        name=name,
    )
    written = store_events(
        data, settings.store_dir, "append", max_identity_component=settings.max_identity_component
    )
    return written.n_added, written.n_skipped + written.n_repeated


def compact_first(settings: Settings, say: Callable[[str], None]) -> None:
    """What `omni train` and `omni snapshot build` do first, so that they see the live
    events: compact the journal (one line when there was something to move)."""
    if not settings.online_store and not settings.journal_dir.is_dir():
        return
    result = compact(settings)
    if result.segments:
        say(result.line())
