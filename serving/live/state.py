"""The online state between snapshots: the snapshot's rows, refreshed for every customer
that live events touch, and their recommendations (the recommender's customer parts
rebuilt from their events, ``Recommender.for_customers``).

A customer's row is recomputed from raw events, by the feature builder batch jobs use
(:func:`features.customer_features.build_customer_features`): the customer's stored events
in the lookback before the snapshot's cutoff and after it, plus their live events, as of
the live clock. Features are per customer (no row reads another customer's events), so
the row equals what a batch build over the store plus the live events gives at that
moment, for any sequence of events.

The live clock is event time: just after the newest live event (never before the
snapshot's cutoff), so replaying the same events gives the same rows whatever the wall
clock says. Untouched customers keep their snapshot rows, as of the snapshot's cutoff.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.customer_features import build_customer_features
from features.ids import is_in
from features.registry import DEFAULT_WINDOWS
from features.store.parts import RAW_CUSTOMER_ID
from serving.live.identity import OnlineIdentity
from serving.live.since_fold import EventsSinceFold
from serving.live.stored_events import StoredEvents
from serving.scoring import RowUpdate, Scorer

ONE_US = pd.Timedelta(microseconds=1)
FOLD_AT = 50_000
FOLD_SHARE = 10
"""Live events kept apart from the stored ones at most: :data:`FOLD_AT`, or one
``FOLD_SHARE``-th of the events folded in since start if more
(:meth:`LiveState.fold_if_due`): a fold sorts those again, so each event is sorted about
``FOLD_SHARE + 1`` times however long the service runs."""


@dataclass
class Refresh:
    """One refresh: the touched customers' new rows and what it took."""

    rows: pd.DataFrame  # feature rows as of ``as_of``, index customer_id
    update: RowUpdate  # the rows as the scorer keeps them (apply with Scorer.apply_rows)
    as_of: pd.Timestamp
    n_events: int  # new events in this refresh (repeats of known events left out)
    seconds: float

    def portable(self) -> Refresh:
        """This refresh as the refresh process sends it: rankings without recommender,
        and without the models' matrices (a worker keeps predictions, not the rows they
        came from: :meth:`Scorer.apply_rows` never reads them)."""
        ranking = self.update.ranking
        update = replace(
            self.update,
            X_churn=None,
            X_channel=None,
            ranking=None if ranking is None else ranking.portable(),
        )
        return replace(self, update=update)


class LiveState:
    """Stored and live events by customer, and the clock their fresh rows are as of."""

    def __init__(
        self,
        scorer: Scorer,
        stored: pd.DataFrame | StoredEvents,
        customers: pd.DataFrame,
        as_of: pd.Timestamp,
        identity: OnlineIdentity | None = None,
    ) -> None:
        """``stored``: the store's events from a lookback before ``as_of`` (the snapshot's
        cutoff) on, encoded (:class:`StoredEvents`; a contract frame is encoded here);
        ``customers``: the customers table (consent);
        ``identity``: the store's identity graph, which the state links the live events'
        identifiers into (in the order the worker took them) to follow merges: a
        customer whose identifiers a live event joins to another's (an anonymous
        device that logs in) is merged into them (None: merges are not followed)."""
        self.scorer = scorer
        self.identity = identity
        self._owner: dict[str, str] = {}  # merged-away customer id -> the one it is now
        self.snapshot_as_of = as_of
        self.clock = as_of
        self.customers = customers.set_index("customer_id", drop=False)
        if isinstance(stored, pd.DataFrame):
            stored = StoredEvents.of_frame(stored[stored["customer_id"].notna().to_numpy()])
        self.stored = stored
        self.live = EventsSinceFold()  # events since the last fold
        self._fold: _Fold | None = None  # a fold running in the background
        self.row_as_of: dict[str, pd.Timestamp] = {}
        self.n_applied = 0  # live events whose rows the scorer has (what /ping says)

    def fold_live(self) -> None:
        """Move the live events in with the stored ones, now (a fold started in the
        background is waited for first). Encoded, they take a sixth of the memory of the
        live frame."""
        self.finish_fold()
        self.stored = self.stored.with_events(self.live.frame)
        self.live = EventsSinceFold()

    def fold_if_due(self, background: bool = False) -> bool:
        """Fold the live events in once they are many (:data:`FOLD_AT`, :data:`FOLD_SHARE`);
        whether it started or did one. ``background``: on a thread of its own, taken by
        the first call after it ends (:meth:`finish_fold`). The refresh process calls it
        after answering a round: a fold sorts again every event folded in before (not the
        store's: :class:`StoredEvents`), which in line held the next rounds back."""
        if self.folding:
            return False
        self.finish_fold()  # one that ended (nothing without one)
        if len(self.live) <= max(FOLD_AT, self.stored.n_added // FOLD_SHARE):
            return False
        if background:
            self._fold = _Fold(self.stored, self.live.frame)
        else:
            self.fold_live()
        return True

    @property
    def folding(self) -> bool:
        """Whether a fold started in the background still runs."""
        return self._fold is not None and not self._fold.done()

    def finish_fold(self) -> None:
        """Take the fold started in the background, waiting for it if it runs: the stored
        events with those it folded, and the live events taken since as the live ones.
        Until then refreshes read the stored events without them and every live event, the
        same events."""
        if self._fold is None:
            return
        fold, self._fold = self._fold, None
        self.stored = fold.result()
        self.live = self.live.after(fold.n)

    def stored_known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: the store holds the event (within the state's window), or a fold
        moved it in. Reads only the stored events' id set, which a fold replaces whole and
        nothing changes in place, so it is safe beside a refresh in another thread."""
        return self.stored.event_ids.contains(event_ids)

    def known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: the event is stored (in the state's window) or already live."""
        return self.stored_known(event_ids) | self.live.known(event_ids)

    def after_snapshot(self) -> pd.Index:
        """Customers with stored events at or after the snapshot's cutoff (loaded or
        compacted after it was built): their snapshot rows are stale."""
        return self.stored.customers_since(self.snapshot_as_of)

    def refresh(self, events: pd.DataFrame, also: pd.Index | None = None) -> Refresh:
        """Add live events (customer ids resolved, ``event_id`` set) and recompute the
        rows of every customer they touch (and of ``also``) as of the advanced clock."""
        t0 = time.perf_counter()
        events = events[~self.known(events["event_id"])]
        events = events[events["customer_id"].notna().to_numpy()]
        merged, gone = self._follow_merges(events)
        if len(events):
            self.live.add(events)
            self.clock = max(self.clock, events["ts"].max() + ONE_US)
        touched = pd.Index(pd.unique(events["customer_id"].astype("str"))).union(merged)
        if also is not None:
            touched = touched.union(also)
        touched = touched.difference(gone)
        touched_events = self.events_of(touched)
        rows = self.rows_of(touched, self.clock, touched_events)
        self.row_as_of.update(dict.fromkeys(rows.index.astype("str").tolist(), self.clock))
        update = self.scorer.prepare_rows(rows, touched_events, self.clock)
        update.removed = gone.tolist()
        return Refresh(rows, update, self.clock, len(events), time.perf_counter() - t0)

    def _follow_merges(self, events: pd.DataFrame) -> tuple[pd.Index, pd.Index]:
        """Link the new events' identifiers; for every customer that merges into another:
        their stored and live events become the other's from now on. Returns (customers
        to recompute, merged-away customers to forget)."""
        none = pd.Index([], dtype="str")
        if self.identity is None or not len(events):
            return none, none
        self.identity.resolve(events.assign(customer_id=events[RAW_CUSTOMER_ID]))
        moved = self.identity.moved
        if not moved:
            return none, none
        for old, new in self._owner.items():  # an earlier merge into one merged now
            if new in moved:
                self._owner[old] = moved[new]
        self._owner.update(moved)
        for old in moved:
            self.row_as_of.pop(old, None)
        self.live.relabel(moved)
        return pd.Index(sorted(set(moved.values())), dtype="str"), pd.Index(
            sorted(moved), dtype="str"
        )

    def rebased(self) -> Refresh:
        """A refresh of every customer live events changed since the snapshot (their rows
        recomputed as of the clock; the merged-away ones removed): what a worker that
        starts late applies to its snapshot scorer (issue 17, the state in Redis)."""
        from serving.live.journal import journal_frame

        everyone = pd.Index(sorted(self.row_as_of), dtype="str")
        refresh = self.refresh(journal_frame([]), also=everyone)
        refresh.update.removed = sorted(set(refresh.update.removed) | set(self._owner))
        return refresh

    def apply(self, refresh: Refresh) -> None:
        """Give the scorer a refresh's rows (one quick step on the request thread)."""
        self.scorer.apply_rows(refresh.update)
        self.n_applied += refresh.n_events

    def events_of(self, customer_ids: pd.Index) -> pd.DataFrame:
        """Stored and live events of these customers (the builders' columns), those of
        the customers merged into them included (under their id)."""
        asked = set(customer_ids.tolist())  # tolist: an Arrow index's elements one by one cost more
        merged = [old for old, new in self._owner.items() if new in asked]
        if merged:
            events = self._events_of(customer_ids.union(pd.Index(merged, dtype="str")))
            ids = events["customer_id"].astype("str")
            owned = ids.isin(merged).to_numpy()
            events["customer_id"] = ids.where(~owned, ids.map(self._owner))
            return events
        return self._events_of(customer_ids)

    def _events_of(self, customer_ids: pd.Index) -> pd.DataFrame:
        """:meth:`events_of` by the ids the events carry."""
        return self.stored.of(customer_ids, more=self.live.of(customer_ids.tolist()))

    def rows_of(
        self, customer_ids: pd.Index, as_of: pd.Timestamp, events: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Feature rows of these customers as of ``as_of``, by the batch feature builder
        (``events``: theirs, when the caller has them already)."""
        customers = self.customers.loc[self.customers.index.intersection(customer_ids)]
        if events is None:
            events = self.events_of(customer_ids)
        rows = build_customer_features(events, customers.reset_index(drop=True), as_of)
        return rows[is_in(rows.index, customer_ids)]


class _Fold:
    """``stored`` with the live events of ``frame`` folded in, computed on a daemon thread
    (numpy's sorts and copies, most of it, run without the GIL beside the next rounds).
    ``n``: how many live events it holds."""

    def __init__(self, stored: StoredEvents, frame: pd.DataFrame) -> None:
        self.n = len(frame)
        self._result: StoredEvents | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(stored, frame), name="fold", daemon=True
        )
        self._thread.start()

    def _run(self, stored: StoredEvents, frame: pd.DataFrame) -> None:
        try:
            self._result = stored.with_events(frame)
        except BaseException as exc:  # raised again by result(), on the state's thread
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> StoredEvents:
        """The folded events, once the thread ends; its error if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def window_start(as_of: pd.Timestamp) -> pd.Timestamp:
    """Where the state's stored events begin: the longest feature window before the
    snapshot's cutoff ``as_of`` (what every row of the state reads, and no more)."""
    return pd.Timestamp(as_of) - pd.Timedelta(days=int(max(DEFAULT_WINDOWS)))
