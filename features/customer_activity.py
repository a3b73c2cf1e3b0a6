"""One cutoff's events grouped per customer: the aggregates customer features read.

:class:`CustomerActivity` is what every customer feature's ``compute`` in
:mod:`features.registry` receives. Each aggregate is plain numpy over the cut's
per-event arrays (:mod:`features.cut`), computed on first read and kept until the
builder frees it:

- event counts per window or per channel and last-seen ages per channel are grouped
  once per event type, with ``np.bincount`` (counts) or ``np.minimum.at`` (ages) over
  the key ``group x customer``; a set of types adds up (or takes the minimum of) its
  types' results;
- orders (:class:`Orders`), money (:class:`Money`), online days and store visits
  (:class:`StoreVisits`) count distinct things with one sort of integer keys;
- the customers table's attributes (:class:`Attributes`) are looked up by code.

Why numpy and not Polars here: each family is many narrow aggregations over a few dense
integer keys (window band or channel x customer), which ``np.bincount`` does in one pass
with no hashing, while a Polars ``group_by`` hashes the customer key for every
aggregation; at 10M events / 1M customers idiomatic Polars for the ~100 columns took
9.7-12.4 s and DuckDB SQL 21 s (issue 15), a few times this module's time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from features import grouping as k
from features.contract.schema import CHANNELS, EVENT_TYPES, ONLINE_CHANNELS, OUTREACH_CHANNELS
from features.cut import Cut, ages
from features.encode import DAY_US, UNKNOWN_TS
from features.registry import ACTIVE_TYPES

CH = {c: i for i, c in enumerate(CHANNELS)}
ET = {e: i for i, e in enumerate(EVENT_TYPES)}
EventTypes = str | Iterable[str]


def _codes(names: Iterable[str], lookup: dict[str, int]) -> tuple[int, ...]:
    """Contract category names -> their codes (sorted), with a clear error for a typo."""
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise ValueError(f"unknown {unknown}: expected some of {', '.join(lookup)}")
    return tuple(sorted({lookup[n] for n in names}))


def _event_type_codes(types: EventTypes) -> tuple[int, ...]:
    return _codes([types] if isinstance(types, str) else types, ET)


def _combine(per_channel: list[dict[str, np.ndarray]], op: np.ufunc) -> dict[str, np.ndarray]:
    """Per-channel results of several event types combined channel by channel with ``op``
    (``np.add`` for counts, ``np.minimum`` for last-seen ages)."""
    out: dict[str, np.ndarray] = {}
    for result in per_channel:
        for ch, values in result.items():
            out[ch] = values if ch not in out else op(out[ch], values)
    return {ch: out[ch] for ch in CHANNELS if ch in out}


def _add_up(arrays: list[np.ndarray]) -> np.ndarray:
    """The sum of same-shaped arrays (the array itself when there is one)."""
    return functools.reduce(np.add, arrays)


def _member(codes: tuple[int, ...], n_codes: int) -> np.ndarray:
    """A lookup table ``code -> is one of codes``: indexing it with a per-event code
    array is several times faster than ``np.isin``."""
    table = np.zeros(n_codes, dtype=bool)
    table[list(codes)] = True
    return table


class CustomerActivity:
    """One cutoff's events grouped per customer: what the registry's features read.

    Every result has one value per customer, in output row order; every grouped
    aggregate is computed once, on first use. Grouped arrays are group-major: row ``g``
    of a ``(groups, n)`` array holds one slot per customer.
    """

    def __init__(self, c: Cut) -> None:
        self.cut = c
        self.windows = c.windows
        self.n = c.n
        self._cache: dict[tuple, Any] = {}
        self.reads: list[tuple] | None = None  # when set, every aggregate read is noted here

    @property
    def ids(self) -> pd.Index:
        """The customer id of each output row."""
        return self.cut.ids

    def _cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """The aggregate ``key``, computed on first read."""
        if self.reads is not None:
            self.reads.append(key)
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def forget(self, keys: Iterable[tuple]) -> None:
        """Free these aggregates (a later read would compute them again)."""
        for key in keys:
            self._cache.pop(key, None)

    # ------------------------------------------------------------ grouping
    def rows(self, event_types: EventTypes, channels: Sequence[str] = ()) -> np.ndarray:
        """Positions in the cut of the events of these types [on these channels], in row
        order within each type."""
        parts = [
            self._cached(("rows of type", t), lambda t=t: np.flatnonzero(self.cut.event_type == t))
            for t in _event_type_codes(event_types)
        ]
        if channels:
            on = _member(_codes(channels, CH), len(CHANNELS))
            parts = [rows[on[self.cut.channel[rows]]] for rows in parts]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def grouped(
        self,
        group: np.ndarray,
        code: np.ndarray,
        n_groups: int,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Counts (int32) or sums of ``weights`` (float64, added in row order) per (group,
        customer) of events in group ``group`` of customer ``code``, shape ``(n_groups, n)``.

        Events without a customer (code ``n``) land in a spare slot that is dropped.
        """
        width = self.cut.width
        key = np.multiply(group, width, dtype=np.int64)
        key += code
        out = np.bincount(key, weights=weights, minlength=n_groups * width)
        if weights is None:
            out = out.astype(np.int32)  # half the memory of bincount's int64 counts
        return out.reshape(n_groups, width)[:, : self.n]

    def per_window(
        self, day: np.ndarray, code: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Counts (or sums) per (window, customer) of events ``day`` days old, shape
        ``(windows, n)``: grouped per band between windows, then added up (windows nest)."""
        out = self.grouped(self.cut.band_of_day(day), code, len(self.windows), weights)
        for j in range(1, len(self.windows)):  # whole-row adds: np.cumsum(axis=0) is slow here
            out[j] += out[j - 1]
        return out

    def per_channel(
        self, channel: np.ndarray, code: np.ndarray, last_age: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Counts per customer on each channel that occurs in ``channel`` (or, given
        ``last_age``, the smallest age per customer and channel: :data:`NEVER` for none)."""
        present = np.flatnonzero(np.bincount(channel, minlength=len(CHANNELS)))
        slot = np.zeros(len(CHANNELS), dtype=np.int64)
        slot[present] = np.arange(len(present))
        if last_age is None:
            table = self.grouped(slot[channel], code, len(present))
        else:
            width = self.cut.width
            key = slot[channel] * width + code
            table = k.minimum(key, last_age, len(present) * width, fill=k.NEVER)
            table = table.reshape(len(present), width)[:, : self.n]
        return {CHANNELS[ch]: table[i] for i, ch in enumerate(present)}

    def total(self, per_channel: dict[str, np.ndarray], channels: Sequence[str]) -> np.ndarray:
        """The sum of some channels' counts in a :meth:`per_channel` result."""
        _codes(channels, CH)
        counts = [per_channel[ch] for ch in channels if ch in per_channel]
        return _add_up(counts) if counts else np.zeros(self.n, dtype=np.int32)

    def window(self, within: int | None) -> int:
        """Row of a window in ``per_window`` arrays (``None``: the lookback, the last)."""
        if within is None:
            return len(self.windows) - 1
        if within not in self.windows:
            raise ValueError(f"no {within}-day window: the windows are {self.windows}")
        return self.windows.index(within)

    # ------------------------------------------------------------ event counts
    # Counts and last-seen ages are grouped per event type (each event is read once);
    # a set of types adds up (or takes the smallest of) its types' results.
    def count(
        self,
        event_types: EventTypes,
        within: int | None = None,
        channels: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Events of these types per customer: in the last ``within`` days, or on these
        ``channels`` over the lookback, or over the whole lookback."""
        types = _event_type_codes(event_types)
        if channels is not None and within is not None:
            raise ValueError("count events per window or per channel, not both")
        if channels is not None:
            per_channel = self._cached(
                ("count per channel", types),
                lambda: _combine([self._type_per_channel(t) for t in types], np.add),
            )
            return self.total(per_channel, channels)
        per_window = self._cached(
            ("count per window", types),
            lambda: _add_up([self._type_per_window(t) for t in types]),
        )
        return per_window[self.window(within)]

    def _type_per_window(self, event_type: int) -> np.ndarray:
        def compute() -> np.ndarray:
            c, rows = self.cut, self.rows(EVENT_TYPES[event_type])
            return self.per_window(c.day[rows], c.code[rows])

        return self._cached(("count per window of type", event_type), compute)

    def _type_per_channel(self, event_type: int) -> dict[str, np.ndarray]:
        def compute() -> dict[str, np.ndarray]:
            c, rows = self.cut, self.rows(EVENT_TYPES[event_type])
            return self.per_channel(c.channel[rows], c.code[rows])

        return self._cached(("count per channel of type", event_type), compute)

    # ------------------------------------------------------------ recency
    def last_seen_per_channel(self, event_types: EventTypes) -> dict[str, np.ndarray]:
        """Age in seconds of each customer's last event of these types on each channel
        that has one (:data:`features.grouping.NEVER`: none in the lookback)."""
        types = _event_type_codes(event_types)
        return self._cached(
            ("last seen per channel", types),
            lambda: _combine([self._type_last_seen(t) for t in types], np.minimum),
        )

    def _type_last_seen(self, event_type: int) -> dict[str, np.ndarray]:
        def compute() -> dict[str, np.ndarray]:
            c, rows = self.cut, self.rows(EVENT_TYPES[event_type])
            return self.per_channel(c.channel[rows], c.code[rows], last_age=c.age[rows])

        return self._cached(("last seen of type", event_type), compute)

    def last_seen(
        self, event_types: EventTypes, channels: Sequence[str] | None = None
    ) -> np.ndarray:
        """Age in seconds of each customer's last event of these types [on these channels]
        (:data:`features.grouping.NEVER`: none in the lookback)."""
        per_channel = self.last_seen_per_channel(event_types)
        if channels is not None:
            _codes(channels, CH)
            per_channel = {ch: per_channel[ch] for ch in channels if ch in per_channel}
        if not per_channel:
            return np.full(self.n, k.NEVER, dtype=np.int32)
        return np.minimum.reduce(list(per_channel.values()))

    def days_since(
        self, event_types: EventTypes, channels: Sequence[str] | None = None
    ) -> np.ndarray:
        """Days since the last event of these types [on these channels], float32; the
        lookback when there is none in it."""
        return k.days(self.last_seen(event_types, channels), float(self.cut.lookback))

    def channels_used(self, event_types: EventTypes) -> np.ndarray:
        """Channels with an event of these types in the lookback, per customer (int8)."""
        per_channel = self.last_seen_per_channel(event_types)
        used = np.zeros(self.n, dtype=np.int8)
        for age in per_channel.values():
            used += age < k.NEVER
        return used

    # ------------------------------------------------------------ families
    @property
    def orders(self) -> Orders:
        return self._cached(("orders",), lambda: Orders(self))

    @property
    def money(self) -> Money:
        return self._cached(("money",), lambda: Money(self))

    @property
    def store_visits(self) -> StoreVisits:
        return self._cached(("store visits",), lambda: StoreVisits(self))

    @property
    def attributes(self) -> Attributes:
        return self._cached(("attributes",), lambda: Attributes.of(self.cut))

    def online_days(self, within: int) -> np.ndarray:
        """Distinct days with a web / app purchase or engagement in the last ``within`` days
        (the contract has no session id: a day of activity is the session proxy)."""

        def per_window() -> np.ndarray:
            c, span = self.cut, self.cut.lookback
            rows = self.rows(ACTIVE_TYPES, ONLINE_CHANNELS)
            keys = k.distinct(c.code[rows].astype(np.int64) * span + c.day[rows])
            return self.per_window(keys % span, keys // span)

        return self._cached(("online days",), per_window)[self.window(within)]


class Orders:
    """The cut's orders: one per customer and order id (see
    :attr:`features.encode.EncodedEvents.orders`), dated by its latest line, on the
    channel of its line with the smallest channel code."""

    def __init__(self, x: CustomerActivity) -> None:
        c, self.x = x.cut, x
        rows, order = c.enc.orders
        if isinstance(c.rows, slice):
            start, stop, _ = c.rows.indices(c.enc.n_events)
            a, b = np.searchsorted(rows, [start, stop])
            rows, order = rows[a:b], order[a:b]
        else:
            span = np.zeros(c.enc.n_events, dtype=bool)
            span[c.rows] = True
            keep = span[rows]
            rows, order = rows[keep], order[keep]
        self.line_rows = rows  # purchase lines of the cut, as rows of the encoding
        self.line_code = c.compact(c.enc.cust[rows])
        self.line_age = ages(c.t_us, c.enc.ts[rows])
        n_orders = int(order.max()) + 1 if len(order) else 0
        age = k.minimum(order, self.line_age, n_orders, fill=k.NEVER)
        present = age < k.NEVER
        code = np.full(n_orders, c.n, dtype=np.int64)
        code[order] = self.line_code
        channel = c.enc.channel[rows]
        first_channel = k.minimum(order, channel, n_orders, fill=len(CHANNELS))
        online = _member(_codes(ONLINE_CHANNELS, CH), len(CHANNELS))[channel]
        picked_up = online & (c.enc.store[rows] >= 0)
        bopis = k.counts(order, n_orders, picked_up) > 0
        self.code = code[present]
        self.age = age[present]
        self.day = self.age // 86_400
        self.channel = first_channel[present]
        self.bopis = bopis[present]

    @cached_property
    def _per_window(self) -> np.ndarray:
        return self.x.per_window(self.day, self.code)

    @cached_property
    def _per_channel(self) -> dict[str, np.ndarray]:
        return self.x.per_channel(self.channel, self.code)

    @cached_property
    def _picked_up(self) -> np.ndarray:
        return k.counts(self.code[self.bopis], self.x.cut.width)[: self.x.n]

    def count(
        self, within: int | None = None, channels: Sequence[str] | None = None, bopis: bool = False
    ) -> np.ndarray:
        """Orders per customer: in the last ``within`` days, or on these ``channels``, or
        picked up in a store (``bopis``), or all of them."""
        if bopis:
            return self._picked_up
        if channels is not None:
            return self.x.total(self._per_channel, channels)
        return self._per_window[self.x.window(within)]

    @cached_property
    def _gaps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per customer over the distinct purchase days: the number of gaps between
        consecutive days, their sum (first to last purchase day), mean and spread (NaN:
        fewer than 2 days)."""
        c, span = self.x.cut, self.x.cut.lookback
        keys = k.distinct(self.code * span + self.day)
        who, day = keys // span, keys % span
        same = who[1:] == who[:-1]
        gap = (day[1:] - day[:-1])[same].astype(np.float64)
        g_who = who[1:][same]
        n_gaps = k.counts(g_who, c.width)[: c.n]
        total = k.counts(g_who, c.width, gap)[: c.n]
        squares = k.counts(g_who, c.width, gap * gap)[: c.n]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n_gaps
            std = np.sqrt(np.maximum(squares / n_gaps - mean * mean, 0.0))
        return n_gaps, total, mean, std

    @property
    def gap_mean(self) -> np.ndarray:
        return self._gaps[2]

    @property
    def gap_std(self) -> np.ndarray:
        return self._gaps[3]

    @property
    def purchase_days(self) -> np.ndarray:
        """Distinct purchase days per customer (0: no order in the lookback)."""
        return np.where(self.count() > 0, self._gaps[0] + 1, 0).astype(np.int32)

    @property
    def purchase_span_days(self) -> np.ndarray:
        """Days from the first to the last purchase day (0: fewer than 2 purchase days)."""
        return self._gaps[1]

    @cached_property
    def first_purchase_age(self) -> np.ndarray:
        """Age in seconds of each customer's oldest order (:data:`k.NEVER`: none)."""
        c = self.x.cut
        oldest = k.maximum(self.code, self.age, c.width, fill=-1)[: c.n]
        return np.where(oldest < 0, k.NEVER, oldest)


class Money:
    """Spend and discount of the purchase lines, refunds of the returns, per window."""

    def __init__(self, x: CustomerActivity) -> None:
        c, orders = x.cut, x.orders
        line_day = orders.line_age // 86_400
        amount = np.nan_to_num(c.enc.amount[orders.line_rows])
        self._spend = x.per_window(line_day, orders.line_code, amount)
        if c.enc.discount is not None:
            discount = np.nan_to_num(c.enc.discount[orders.line_rows])
            self._discount = x.per_window(line_day, orders.line_code, discount)
        else:
            self._discount = np.zeros_like(self._spend)
        ret = x.rows("return")
        refunds = -np.nan_to_num(c.pick(c.enc.amount)[ret])
        self._refunds = x.per_window(c.day[ret], c.code[ret], refunds)
        self._index = x.window

    def spend(self, within: int) -> np.ndarray:
        """Amount of the purchase lines of the last ``within`` days (float64)."""
        return self._spend[self._index(within)]

    def discount(self, within: int) -> np.ndarray:
        return self._discount[self._index(within)]

    def refunds(self, within: int) -> np.ndarray:
        """Amount returned in the last ``within`` days, as a positive number."""
        return self._refunds[self._index(within)]


class StoreVisits:
    """Visits: distinct (customer, store, day) with a store purchase or engagement."""

    def __init__(self, x: CustomerActivity) -> None:
        c = x.cut
        rows = x.rows(ACTIVE_TYPES, ("store",))
        span, n = c.lookback, c.n
        n_st = len(c.enc.stores) + 1  # the last slot: store unknown
        store = c.pick(c.enc.store)[rows].astype(np.int64)
        store[store < 0] = n_st - 1
        ts = c.pick(c.enc.ts)[rows]
        weekend = ((ts // DAY_US + 3) % 7 >= 5).astype(np.int64)  # 1970-01-01 was a Thursday
        who = c.code[rows].astype(np.int64)
        keys = k.distinct((((who * n_st + store) * span + c.day[rows]) << 1) | weekend)
        visit = keys >> 1
        first = np.ones(len(visit), dtype=bool)
        first[1:] = visit[1:] != visit[:-1]  # a day straddling two dates counts once
        keys, visit = keys[first], visit[first]
        who_store = visit // span
        who, store = who_store // n_st, who_store % n_st
        self._per_window = x.per_window(visit % span, who)
        self._index = x.window
        new_store = np.ones(len(who_store), dtype=bool)
        new_store[1:] = who_store[1:] != who_store[:-1]
        home = np.append(c.enc.customers.home_store[c.members], -1).astype(np.int64)
        self.distinct_stores = k.counts(who[new_store & (store < n_st - 1)], c.width)[:n]
        self.at_home = k.counts(who[store == home[who]], c.width)[:n]
        self.on_weekends = k.counts(who[(keys & 1) == 1], c.width)[:n]

    def count(self, within: int | None = None) -> np.ndarray:
        """Visits in the last ``within`` days (the lookback by default)."""
        return self._per_window[self._index(within)]


@dataclass
class Attributes:
    """The customers table's columns for the output rows."""

    tenure_days: np.ndarray
    loyalty_tier: np.ndarray
    consent: dict[str, np.ndarray]

    @classmethod
    def of(cls, c: Cut) -> Attributes:
        attrs = c.enc.customers
        signup = attrs.signup_us[c.members]
        known = signup != UNKNOWN_TS
        tenure = np.where(known, (c.t_us - np.where(known, signup, c.t_us)) / DAY_US, np.nan)
        consent = {ch: attrs.consent[ch][c.members] for ch in OUTREACH_CHANNELS}
        return cls(tenure, attrs.tier[c.members], consent)
