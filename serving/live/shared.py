"""A worker's online state when it lives in Redis: one refresher computes, every worker
applies (``OMNI_ONLINE_STORE``; issue 17).

The worker that holds the refresh lease (:data:`serving.live.redis_state.ROLE`) runs the
refresh process (:class:`~serving.live.refresher.RemoteState`): each round it reads the
journal after the position its process covers, has the process refresh the touched
customers and writes the result to the state stream with that position
(:meth:`RedisState.publish`). Every worker, the leader included, applies the state
stream in order to its in-memory scorer (requests stay free of network hops) and
records how far it applied, in the state stream and in the journal (compaction keeps
what some worker has not applied).

A worker that takes the lease over (the leader died or lost Redis) starts its refresh
process, which replays the journal as a restart does, and writes its first refresh as a
*base*: every customer live events changed since the snapshot, as of the journal
position it replayed to, so the stream goes on from there with nothing skipped. A
worker that starts later (or switches snapshot) asks for a base and applies the stream
from the first base after its request: simpler than reading every customer's hash (the
hashes hold rows and predictions, not the recommender's customer parts) and correct
however far the stream was trimmed, since a base replaces every live row.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from dataclasses import replace

import numpy as np
import pandas as pd

from features.settings import Settings
from serving.live.id_set import EventIdSet
from serving.live.redis_journal import JournalUnavailable, RedisJournal
from serving.live.redis_state import ROLE, LeaseLost, RedisState
from serving.live.state import Refresh, window_start
from serving.live.state_codec import StateFormatError, decode
from serving.scoring import Scorer

log = logging.getLogger(__name__)

LEASE_TTL_S = 5.0
"""The refresh lease expires this long after its holder stopped renewing it (killed):
another worker then takes over."""
START_TIMEOUT_S = 600.0
"""How long a starting worker waits for a base to apply (the leader's process start and
journal replay included); after it, it serves its snapshot and keeps waiting."""


class SharedState:
    """The worker side of the state in Redis: the same calls as
    :class:`~serving.live.refresher.RemoteState` for the service (``scorer``,
    ``n_applied``, ``stored_known``, ``first``, ``close``) and :meth:`round`, which
    leads (when holding the lease) and applies what the stream has."""

    alive = True  # the refresh process, when this worker runs it, is watched by round()

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        journal: RedisJournal,
        wait_s: float = START_TIMEOUT_S,
    ) -> None:
        """Ask for a base and apply the stream until one is applied (leading meanwhile
        if this worker gets the lease), at most ``wait_s`` seconds."""
        self.settings = settings
        self.scorer = scorer
        self.journal = journal
        self.store = RedisState(journal)
        self.snapshot = scorer.snapshot.path.name
        self.snapshot_as_of = scorer.as_of
        self.n_applied = 0
        self.covers: str | None = None  # journal position of the last applied entry
        self.process = None  # the refresh process, while this worker leads
        self._process_covers = "0"  # the journal position the process has applied
        self._process_events = 0  # live events the process holds (a base's count)
        self._resync = False  # a write's outcome unknown (Redis gone): write a base next
        self._starting: threading.Thread | None = None
        self._started: tuple | None = None  # (process, covers) or (None, exception)
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, daemon=True)
        self.publish_ms: list[float] = []  # leader: the Redis write per refresh (docs)
        self.publish_bytes: list[tuple[int, int]] = []  # (bytes, customers) per write
        start = window_start(scorer.as_of)
        self._stored_event_ids = EventIdSet.read(settings.store_dir, start)
        self.cursor = self.store.last()  # applied up to here: waits for a later base
        self.store.mark_applied(self.cursor, None)  # holds the entries after it
        self.store.ask_rebase()
        self._waiting = True  # for a base; entries before it are skipped
        self.first = Refresh(scorer.snapshot.features.iloc[:0], None, scorer.as_of, 0, 0.0)
        self._renewer.start()
        deadline = time.monotonic() + wait_s
        try:
            while self._waiting and time.monotonic() < deadline:
                applied = self.round()
                if applied:
                    self.first = applied[0][0]
                elif self._waiting:
                    time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def stored_known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: the store holds the event (within the state's window)."""
        return self._stored_event_ids.contains(event_ids)

    # ------------------------------------------------------------------ a round

    def round(self) -> list[tuple[Refresh, str | None, str]]:
        """Lead (refresh and publish) when holding the lease, then apply the stream's new
        entries. Returns the applied refreshes with the journal range each covers
        (``(after, upto)``; ``after`` None for a base). Raises ``JournalUnavailable``
        when Redis does not answer (nothing is skipped: the next round reads again)."""
        self._lead()
        if self._waiting:  # asked again each round: the ask expires (a worker gone)
            self.store.ask_rebase()
        return self._apply()

    def _lead(self) -> None:
        """The leader's part of a round (see the module docstring)."""
        leading = self.journal.leads(ROLE, LEASE_TTL_S)
        if not leading:
            self.store.lease_holder()  # Redis not answering: raises, the process is kept
            if self.process is not None or self._starting is not None:
                log.warning("the refresh lease passed to another worker: stopping the refresh")
                self._drop_process()
            return
        if self.process is None:
            self._start_process()
            return
        try:
            if self._resync or self.store.rebase_asked():
                self._publish(self.process.rebased(), base=True)
                self._resync = False
                return
            events, cursor = self.journal.read_after(self._process_covers)
            if not len(events):
                return
            refresh = self.process.refresh(events)
            self._process_covers = cursor
            self._process_events += refresh.n_events
            self._publish(refresh, base=False)
        except LeaseLost as exc:
            log.warning("%s: stopping the refresh", exc)
            self._drop_process()
        except JournalUnavailable:
            # the write may or may not have happened: the next one is a base (every live
            # customer), so nothing is missing either way
            self._resync = True
            raise
        except Exception:
            if not self.process.alive:
                log.error("the refresh process ended: a new one replays the journal")
                self._drop_process()
                return
            raise

    def _publish(self, refresh: Refresh, base: bool) -> None:
        """Write ``refresh`` to the state stream (a base counts every live event the
        process holds), then trim what every worker applied."""
        if base:
            refresh = replace(refresh, n_events=self._process_events)
        t0 = time.perf_counter()
        _, written = self.store.publish(
            refresh.portable(), self.snapshot, self._process_covers, base, self.scorer.channels
        )
        self.publish_ms.append((time.perf_counter() - t0) * 1000)
        self.publish_bytes.append((written, len(refresh.update.ids)))
        del self.publish_ms[:-1000], self.publish_bytes[:-1000]
        with suppress(JournalUnavailable):
            self.store.trim()

    def _start_process(self) -> None:
        """Start the refresh process in a thread (the lease is renewed meanwhile); once
        started, its first refresh is written as a base."""
        from serving.live.refresher import RemoteState

        if self._starting is None:

            def start() -> None:
                try:
                    journaled, covers = self.journal.replay()
                    state = RemoteState(self.settings, self.scorer, journaled, apply_first=False)
                    self._started = (state, covers)
                except Exception as exc:  # said by the round that finds it
                    self._started = (None, exc)

            self._started = None
            self._starting = threading.Thread(target=start, daemon=True)
            self._starting.start()
            return
        if self._starting.is_alive():
            return
        self._starting, (state, covers) = None, self._started
        if state is None:
            log.error("the refresh process could not start: %s", covers)
            return
        log.info("this worker runs the refresh (it holds the lease)")
        self.process, self._process_covers = state, covers
        self._process_events = state.first.n_events
        try:
            self._publish(state.first, base=True)
        except (LeaseLost, JournalUnavailable) as exc:
            log.warning("the refresh's first state not written: %s", exc)
            self._drop_process()

    def _drop_process(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.close()
        self._starting = None  # a start under way finishes into nothing
        self._process_covers = "0"

    def _renew(self) -> None:
        """Renew the lease between rounds while this worker leads (a long refresh, or
        the process's start, must not let it expire)."""
        while not self._stop.wait(LEASE_TTL_S / 4):
            if self.process is not None or self._starting is not None:
                self.journal.leads(ROLE, LEASE_TTL_S)

    def _apply(self) -> list[tuple[Refresh, str | None, str]]:
        """Apply the stream's entries after :attr:`cursor` to the scorer, in order."""
        applied = []
        while entries := self.store.read_after(self.cursor):
            for entry, fields in entries:
                self.cursor = entry
                if fields.get(b"snapshot", b"").decode() != self.snapshot:
                    continue  # another snapshot's (a switch under way)
                base = fields.get(b"base") == b"1"
                if self._waiting and not base:
                    continue
                try:
                    refresh = decode(fields, self.scorer)
                except StateFormatError as exc:  # this worker's rows would drift: it
                    log.error("state entry %s unreadable, asking for a base: %s", entry, exc)
                    self._waiting = True  # takes the next base, as a starting worker does
                    self.store.ask_rebase()
                    continue
                self.scorer.apply_rows(refresh.update)
                self.n_applied = (0 if base else self.n_applied) + refresh.n_events
                after, self.covers = (None if base else self.covers), fields[b"covers"].decode()
                applied.append((refresh, after, self.covers))
                self._waiting = False
        self.store.mark_applied(self.cursor, self.covers)
        return applied

    def close(self) -> None:
        """Stop leading (the lease expires after its TTL) and the refresh process."""
        self._stop.set()
        self._drop_process()
