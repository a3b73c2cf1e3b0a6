"""One cutoff of the event log: the events in ``(T - lookback, T)`` and who gets a row.

Builders work on a :class:`Cut`: compact customer codes ``0 .. n-1`` in sorted id
order (``n`` is a catch-all for rows without a customer), ages in whole seconds
before ``T`` (exact for every window and day boundary, since those are whole
seconds too) and whole days before ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.encode import DAY_US, UNKNOWN_TS, EncodedEvents, to_us
from features.registry import check_windows


@dataclass
class Cut:
    """Rows of one cutoff, as arrays over the selected events (``rows`` into the encoding)."""

    enc: EncodedEvents
    as_of: pd.Timestamp
    t_us: int
    windows: tuple[int, ...]
    members: np.ndarray  # encoded customer code of each output row (sorted)
    rows: slice | np.ndarray  # selected event rows
    code: np.ndarray  # int32 compact customer code per selected row (n: none)
    age: np.ndarray  # int32 whole seconds before the cutoff
    day: np.ndarray  # int32 whole days before the cutoff, 0 .. lookback - 1
    channel: np.ndarray
    event_type: np.ndarray

    @property
    def width(self) -> int:
        """Slots per group in grouped arrays: one per member, plus the catch-all."""
        return len(self.members) + 1

    @property
    def n(self) -> int:
        """Customers that get a row."""
        return len(self.members)

    @property
    def lookback(self) -> int:
        return self.windows[-1]

    @property
    def ids(self) -> pd.Index:
        return self.enc.ids[self.members]

    def band_of_day(self, day: np.ndarray) -> np.ndarray:
        """Index of the shortest window containing each day (windows are nested), int8.

        Days are ``0 .. lookback - 1``: the index is how many windows end at or before
        the day (a few comparisons cost half a table lookup per event).
        """
        band = np.zeros(np.shape(day), dtype=np.int8)
        for w in self.windows[:-1]:
            band += np.greater_equal(day, w)
        return band

    def pick(self, values: np.ndarray) -> np.ndarray:
        """An encoded per-event array restricted to the selected rows."""
        return values[self.rows]

    def compact(self, encoded_codes: np.ndarray) -> np.ndarray:
        """Encoded customer codes -> compact codes, int32 (``n`` for none / not a member)."""
        return _compact(self._remap, encoded_codes)

    def __post_init__(self) -> None:
        self._remap = _remap(len(self.enc.ids), self.members)


def ages(t_us: int, ts_us: np.ndarray) -> np.ndarray:
    """Whole seconds from each timestamp to the cutoff, int32 (spans up to 68 years)."""
    age = np.subtract(t_us, ts_us)
    age //= 1_000_000
    return age.astype(np.int32)


def _ages_and_days(t_us: int, ts: np.ndarray, rows) -> tuple[np.ndarray, np.ndarray]:
    """Whole seconds and whole days before the cutoff of the selected events (int32)."""
    age = ages(t_us, ts[rows])
    return age, age // 86_400


def _remap(n_ids: int, members: np.ndarray) -> np.ndarray:
    """Encoded code -> compact code table (int32); index -1 (no customer) lands on ``n``."""
    n = len(members)
    remap = np.full(n_ids + 1, n, dtype=np.int32)
    remap[members] = np.arange(n, dtype=np.int32)
    return remap


def _compact(remap: np.ndarray, encoded_codes: np.ndarray) -> np.ndarray:
    """Look codes up in the int32 remap table (``-1``, no customer, is its last entry)."""
    return np.take(remap, encoded_codes)


def cut(enc: EncodedEvents, as_of: pd.Timestamp | str, windows=(7, 30, 90, 365)) -> Cut:
    """Select the events of ``(as_of - max(windows) days, as_of)`` and the members.

    Open at the old end like every window: an event is in the ``w``-day window when it
    is less than ``w`` days old, so one exactly a lookback old is in none.
    """
    windows = check_windows(windows)
    t_us = to_us(as_of)
    lo = t_us - windows[-1] * DAY_US
    ts = enc.ts
    if enc.ts_sorted:  # a contiguous slice: no copy at all
        rows: slice | np.ndarray = slice(
            int(np.searchsorted(ts, lo, "right")), int(np.searchsorted(ts, t_us, "left"))
        )
    else:
        in_span = (ts > lo) & (ts < t_us)
        rows = slice(None) if bool(in_span.all()) else np.flatnonzero(in_span)
    cust = enc.cust[rows]
    n_ids = len(enc.ids)
    seen = np.zeros(n_ids + 1, dtype=bool)
    seen[cust] = True  # -1 (no customer) marks the spare last slot
    signup = enc.customers.signup_us
    listed = enc.customers.listed & ((signup < t_us) | (signup == UNKNOWN_TS))
    member = seen[:n_ids] | listed
    members = np.flatnonzero(member)
    n = len(members)
    if n == n_ids:
        code = np.where(cust >= 0, cust, n).astype(np.int32)
    else:
        code = _compact(_remap(n_ids, members), cust)
    age, day = _ages_and_days(t_us, ts, rows)
    return Cut(
        enc=enc,
        as_of=pd.Timestamp(t_us, unit="us", tz="UTC"),
        t_us=t_us,
        windows=windows,
        members=members,
        rows=rows,
        code=code,
        age=age,
        day=day,
        channel=enc.channel[rows],
        event_type=enc.event_type[rows],
    )
