"""The live events a refresh has taken since the last fold, indexed by customer.

A refresh reads the events of the customers it recomputes. Found by a scan of every live
event, that read grew with them until the next fold: at 161,000 live events (a store of
20,000 customers folds at 200,000) the scan took 35 ms of a ~280 ms round, and a store of
1M customers (100M events, folding at 10M) would scan for seconds each round. Here each
customer's rows are kept by id, so a read costs the customers asked for and their rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from serving.live.journal import in_set
from serving.live.stored_events import COLUMNS, StoredEvents

NO_EVENTS = (
    StoredEvents([]).of(pd.Index([], dtype="str")).assign(event_id=pd.Series([], dtype="str"))
)
"""No events, in the frame's columns and dtypes."""


class EventsSinceFold:
    """Live events (contract frame, :data:`COLUMNS`, in the order taken), their ids, and
    each customer's row positions among them."""

    def __init__(self) -> None:
        self.frame = NO_EVENTS
        self._ids: set[str] = set()
        self._rows: dict[str, list[np.ndarray]] = {}  # customer id -> positions in frame

    def __len__(self) -> int:
        return len(self.frame)

    def known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: among the live events."""
        return in_set(event_ids, self._ids)

    def add(self, events: pd.DataFrame) -> None:
        """Append events (customer ids resolved, ``event_id`` set, none known yet)."""
        if not len(events):
            return
        start = len(self.frame)
        self.frame = pd.concat([self.frame, events[list(COLUMNS)]], ignore_index=True)
        self._ids.update(events["event_id"].astype("str").tolist())
        codes, owners = pd.factorize(events["customer_id"].astype("str").to_numpy(dtype=object))
        order = np.argsort(codes, kind="stable")
        runs = np.split(order + start, np.flatnonzero(np.diff(codes[order])) + 1)
        for customer, at in zip(owners, runs, strict=True):  # per customer, not per event
            self._rows.setdefault(customer, []).append(at)

    def of(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The live events of these customers, in the order they were taken."""
        parts = [at for c in customer_ids for at in self._rows.get(c, ())]
        if not parts:
            return self.frame.iloc[:0]
        return self.frame.take(np.sort(np.concatenate(parts)))

    def after(self, n: int) -> EventsSinceFold:
        """The events from the ``n``-th on (what a fold of the first ``n`` leaves live)."""
        out = EventsSinceFold()
        out.add(self.frame.iloc[n:])
        return out

    def relabel(self, moved: dict[str, str]) -> None:
        """The events of customers merged away (``moved``: old id -> the one they are
        now) become their new owner's."""
        gone = [c for c in moved if c in self._rows]
        if not gone:
            return
        ids = self.frame["customer_id"].to_numpy(dtype=object).copy()
        for old in gone:
            ids[np.concatenate(self._rows[old])] = moved[old]
        self.frame = self.frame.assign(customer_id=pd.Series(ids, dtype="str"))
        for old in gone:
            self._rows.setdefault(moved[old], []).extend(self._rows.pop(old))
