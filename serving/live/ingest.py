"""What POST /events does with a batch: check it, give each event its id, resolve who it
belongs to, journal it durably, and queue it for the next refresh of the online state.

The checks are ``omni data load``'s (:func:`features.contract.validate.validate_frame`),
so a live event is refused exactly when a file row would be. A batch is applied whole or
not at all: any bad event refuses the batch with the event's index and field. Events the
store or the journal already holds (same ``event_id``) are counted as duplicates and
applied once, so a client may retry a batch whose answer it did not get.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.contract.schema import EVENTS, with_every_column
from features.contract.validate import DataError, validate_frame
from features.settings import LIVE_MAX_BEHIND
from features.store.event_ids import assign_event_ids
from features.store.identity import UnresolvableEventError
from features.store.parts import RAW_CUSTOMER_ID
from serving.live.identity import OnlineIdentity
from serving.live.journal import Journal
from serving.live.state import LiveState


class BatchError(ValueError):
    """A batch refused as a whole; ``detail`` names the event's index and field."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class Receipt:
    """The answer to a batch: how many events were new, how many were known already, and
    the customer each event landed on (in the batch's order)."""

    accepted: int
    duplicates: int
    customer_ids: list[str | None]


def checked(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The batch in contract dtypes, every contract column present, with event ids;
    :class:`BatchError` naming the first bad event's index and field. (Fields the
    contract lacks are refused before: serving.schemas.LiveEvent forbids them.)"""
    try:
        valid = validate_frame(pd.DataFrame.from_records(records), EVENTS, "events")
    except DataError as exc:
        first = exc.problems[0]
        where = "events" if first.row is None else f"events[{first.row - 1}]"
        field = f".{first.column}" if first.column else ""
        more = f" (and {exc.total - 1} more problems)" if exc.total > 1 else ""
        raise BatchError(f"{where}{field}: {first.reason}{more}") from None
    return assign_event_ids(with_every_column(valid.good))


class LiveEvents:
    """The ingest side of the live loop: journal, identity and the queue of events the
    online state has not applied yet.

    With a shared journal (:class:`serving.live.redis_journal.RedisJournal`, several
    workers) the queue is the journal itself: every worker applies every batch, its own
    and the others', in the journal's order (``cursor``: the last entry applied), and a
    batch is resolved under the journal's ingest lock after linking the identities of the
    batches other workers took (``identity_cursor``), so every worker gets the same
    customer ids as one worker taking every batch would."""

    def __init__(
        self,
        state: LiveState,
        identity: OnlineIdentity,
        journal: Journal,
        cursor: str = "0",
        max_behind: int = LIVE_MAX_BEHIND,
    ) -> None:
        self.state = state
        self.identity = identity
        self.journal = journal
        self.pending: list[pd.DataFrame] = []
        self.cursor = self.identity_cursor = cursor
        self._lock = threading.Lock()  # one batch at a time: ids, graph and journal agree
        self._unsealed = False
        self.behind = 0  # events this worker took that no applied refresh holds yet
        self.max_behind = max_behind  # the service's back-pressure (OMNI_LIVE_MAX_BEHIND)
        self._own: deque[tuple[str, int]] = deque()  # shared journal: (entry, events)

    def accept(self, records: list[dict[str, Any]]) -> Receipt:
        """Check, resolve and journal a batch (durable before this returns, so the caller
        may acknowledge it), queueing its new events for the next refresh. Safe to call
        from several threads (and workers, with a shared journal): batches are taken one
        after the other."""
        events = checked(records)
        with self._lock:
            if not self.journal.shared:
                return self._take(events)
            with self.journal.ingest_lock():
                self._link_others()
                return self._take(events)

    def _link_others(self) -> None:
        """Shared journal: link the identifiers of the batches taken since this worker's
        last one, as the file journal's replay does at start."""
        taken, self.identity_cursor = self.journal.read_after(self.identity_cursor)
        if len(taken):
            self.identity.resolve(taken.assign(customer_id=taken[RAW_CUSTOMER_ID]))

    def _take(self, events: pd.DataFrame) -> Receipt:
        """:meth:`accept` after the checks, under the lock."""
        try:
            events = self.identity.resolve(events)
        except UnresolvableEventError as exc:  # any other error is ours: not a 400
            raise BatchError(f"events: {exc}") from None
        ids = events["event_id"]
        repeated = ids.duplicated().to_numpy()  # a batch that names one event twice
        known = repeated | self.journal.known(ids) | self.state.stored_known(ids)
        new = events[~known].reset_index(drop=True)
        if len(new):
            entry = self.journal.append(new)
            if self.journal.shared:  # applied when read back from the journal, in order
                self.identity_cursor = entry
                self._own.append((entry, len(new)))
            else:
                self.pending.append(new)
            self.behind += len(new)
            self._unsealed = True
        customer_ids = events["customer_id"].astype(object).where(events["customer_id"].notna())
        return Receipt(len(new), int(known.sum()), customer_ids.tolist())

    def seal(self) -> None:
        """Close the journal's open segment if it holds events, so that compaction can
        take them while the service runs."""
        with self._lock:
            if self._unsealed:
                self.journal.seal()
                self._unsealed = False

    def has_pending(self) -> bool:
        """Whether this worker holds events (file journal) no refresh has taken yet."""
        return bool(self.pending)

    def take_pending(self) -> pd.DataFrame | None:
        """Every queued event, in arrival order (None: nothing new); the queue is emptied.
        They count as behind until :meth:`applied` says so. Shared journal: the entries
        after ``cursor``, every worker's (raises ``JournalUnavailable`` when Redis does
        not answer; nothing is skipped)."""
        if self.journal.shared:
            taken, cursor = self.journal.read_after(self.cursor)
            self.journal.mark_applied(cursor)
            self.cursor = cursor
            return taken if len(taken) else None
        with self._lock:
            taken, self.pending = self.pending, []
        if len(taken) <= 1:  # one batch (the usual case under a steady ingest): no copy
            return taken[0] if taken else None
        return pd.concat(taken, ignore_index=True)

    def applied(self, n_events: int = 0) -> None:
        """``n_events`` taken events are applied (or given up on: journaled, they are
        applied at the next start): they no longer count as behind. Shared journal: the
        entries up to ``cursor`` (``n_events`` is not needed)."""
        with self._lock:
            if not self.journal.shared:
                self.behind -= n_events
                return
            upto = _entry_key(self.cursor)
            while self._own and _entry_key(self._own[0][0]) <= upto:
                self.behind -= self._own.popleft()[1]


class EventsTaken:
    """What wakes the service's live loop when POST /events has taken events, so that a
    round starts as soon as there is work for it instead of at the next tick (on the
    event loop: ``note`` is called there after the batch is journaled)."""

    def __init__(self) -> None:
        self._noted = asyncio.Event()

    def note(self) -> None:
        """Events were taken."""
        self._noted.set()

    async def wait(self, pending: Callable[[], bool], timeout: float) -> bool:
        """True once ``pending()`` holds or events are noted; False after ``timeout``
        seconds without either."""
        self._noted.clear()
        if pending():  # taken before the clear: their note is gone
            return True
        try:
            await asyncio.wait_for(self._noted.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _entry_key(entry: str) -> tuple[int, int]:
    """A Redis stream entry id ("<ms>-<seq>") in its order."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)
