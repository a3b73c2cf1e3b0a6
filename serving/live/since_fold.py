"""The live events a refresh has taken since the last fold, indexed by customer.

A refresh reads the events of the customers it recomputes. Found by a scan of every live
event's customer id as text, that read grew with them until the next fold: 22 ms at
161,000 live events (a store of 20,000 customers folds at 200,000), and a store of 1M
customers (100M events, folding at 10M) would scan for over a second each round. Here each
event's customer is a small integer code, and a customer's rows one ``np.isin`` over them:
still a pass over every live event, but over integers (4.6 ms at 161,000, most of it
Arrow's take of the rows found).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from serving.live.id_set import GrowingEventIdSet
from serving.live.stored_events import COLUMNS, StoredEvents

NO_EVENTS = (
    StoredEvents([]).of(pd.Index([], dtype="str")).assign(event_id=pd.Series([], dtype="str"))
)
"""No events, in the frame's columns and dtypes."""


class EventsSinceFold:
    """Live events (contract frame, :data:`COLUMNS`, in the order taken), their ids, and
    each event's customer as a small integer code, so that a customer's rows are found by
    one ``np.isin`` over integers (161,000 events: ~1 ms, where the scan of their ids as
    text took 22)."""

    def __init__(self) -> None:
        self.frame = NO_EVENTS
        self._ids = GrowingEventIdSet()
        self._code: dict[str, int] = {}  # customer id -> code
        self._owner = np.zeros(0, np.int32)  # code of each row's customer

    def __len__(self) -> int:
        return len(self.frame)

    def known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: among the live events."""
        return self._ids.contains(event_ids)

    def add(self, events: pd.DataFrame) -> None:
        """Append events (customer ids resolved, ``event_id`` set, none known yet)."""
        if not len(events):
            return
        self.frame = pd.concat([self.frame, events[list(COLUMNS)]], ignore_index=True)
        self._ids.add(events["event_id"])
        at, owners = pd.factorize(events["customer_id"].astype("str").to_numpy(dtype=object))
        codes = np.array([self._code.setdefault(c, len(self._code)) for c in owners], np.int32)
        self._owner = np.concatenate([self._owner, codes[at]])  # per customer, not event

    def of(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The live events of these customers, in the order they were taken."""
        asked = [self._code[c] for c in customer_ids if c in self._code]
        if not asked:
            return self.frame.iloc[:0]
        return self.frame.take(np.flatnonzero(np.isin(self._owner, asked, kind="table")))

    def after(self, n: int) -> EventsSinceFold:
        """The events from the ``n``-th on (what a fold of the first ``n`` leaves live)."""
        out = EventsSinceFold()
        out.add(self.frame.iloc[n:])
        return out

    def relabel(self, moved: dict[str, str]) -> None:
        """The events of customers merged away (``moved``: old id -> the one they are
        now) become their new owner's."""
        gone = [c for c in moved if c in self._code]
        if not gone:
            return
        ids = self.frame["customer_id"].to_numpy(dtype=object).copy()
        for old in gone:  # codes are never given back: len() is the next one
            rows = self._owner == self._code[old]
            ids[rows] = moved[old]
            self._owner[rows] = self._code.setdefault(moved[old], len(self._code))
        self.frame = self.frame.assign(customer_id=pd.Series(ids, dtype="str"))
