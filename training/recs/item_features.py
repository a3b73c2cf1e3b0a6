"""Item and customer-by-item features with the names of ``features.registry``.

The feature builders of issue 3 define these tables (``item_features``,
``customer_item_features`` in :mod:`features.registry`) but do not build them yet; until
they do, this is the one place that computes them, on the recommender's encoded history,
with the registry's names, dtypes and missing values. Swap for the shared builders when
they land, so that serving and training keep one definition.

Point in time: everything reads rows ``as_of - lookback <= ts < as_of`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.registry import DEFAULT_WINDOWS, check_windows
from training.recs.data import DAY_S, PURCHASE, History
from training.recs.tables import PairTable

VIEW = 2  # contract code of "view" (features.schema.EVENT_TYPES)
DECAY_HALF_LIFE_DAYS = 30.0
RECENT_DAYS = 28


def item_table(
    history: History, rows: np.ndarray, as_of_s: int, windows: Sequence[int] = DEFAULT_WINDOWS
) -> dict[str, np.ndarray]:
    """Per product (all catalogue codes): orders_/units_/views_{d}d, buyers,
    repurchase_rate, days_since_last_sold (registry ``item_features``)."""
    w = check_windows(windows)
    n = history.catalogue.n_items
    item, et = history.item[rows], history.event_type[rows]
    age = (as_of_s - history.ts[rows]) / DAY_S
    buy, view = et == PURCHASE, et == VIEW
    out: dict[str, np.ndarray] = {}
    for d in w:
        out[f"orders_{d}d"] = np.bincount(item[buy & (age < d)], minlength=n).astype(np.int32)
    qty = history.quantity[rows]
    for d in w:
        m = buy & (age < d)
        out[f"units_{d}d"] = np.bincount(item[m], weights=qty[m], minlength=n).astype(np.int32)
    for d in w:
        out[f"views_{d}d"] = np.bincount(item[view & (age < d)], minlength=n).astype(np.int32)
    cust, days = history.customer[rows][buy], (history.ts[rows][buy] // DAY_S)
    pairs = PairTable.count(cust, item[buy], n)
    buyer_item = pairs.col_of(np.arange(len(pairs)))
    buyers = np.bincount(buyer_item, minlength=n)
    day_pairs = np.unique((cust.astype(np.int64) * n + item[buy]) * 100_000 + days)
    per_pair_days = np.bincount(
        np.searchsorted(pairs.keys, day_pairs // 100_000), minlength=len(pairs)
    )
    repeat = np.bincount(buyer_item[per_pair_days >= 2], minlength=n)
    out["buyers"] = buyers.astype(np.int32)
    rate = np.full(n, np.nan, np.float32)
    np.divide(repeat, buyers, out=rate, where=buyers > 0, casting="unsafe")
    out["repurchase_rate"] = rate
    last = np.full(n, float(w[-1]), np.float32)
    np.minimum.at(last, item[buy], age[buy].astype(np.float32))
    out["days_since_last_sold"] = last
    return out


def customer_item_table(history: History, rows: np.ndarray, as_of_s: int) -> PairTable:
    """One row per (customer, product) bought in the rows: registry ``customer_item_features``
    (times_bought, days_bought, units_bought, days_since_last_bought) plus what the ranker
    derives repurchase cycles from: first_day_ago, and decayed (purchase lines weighted
    by 0.5 ** (age / 30 days))."""
    buy = rows[history.event_type[rows] == PURCHASE]
    n = history.catalogue.n_items
    age = ((as_of_s - history.ts[buy]) / DAY_S).astype(np.float32)
    keys = history.customer[buy].astype(np.int64) * n + history.item[buy]
    order = np.lexsort((-age, keys))  # by pair, oldest first
    keys, age, qty = keys[order], age[order], history.quantity[buy][order]
    if len(keys) == 0:
        names = (*CUSTOMER_ITEM_COLUMNS,)
        return PairTable(keys, n, {c: np.zeros(0, np.float32) for c in names})
    day = np.floor(age)
    first = np.r_[True, keys[1:] != keys[:-1]]
    start = np.flatnonzero(first)
    end = np.r_[start[1:], len(keys)] - 1
    new_day = first | np.r_[True, day[1:] != day[:-1]]
    cols = {
        "times_bought": np.diff(np.r_[start, len(keys)]).astype(np.int32),
        "days_bought": np.add.reduceat(new_day.astype(np.int32), start).astype(np.int32),
        "units_bought": np.add.reduceat(qty, start).astype(np.int32),
        "days_since_last_bought": age[end],
        "first_day_ago": age[start],
        "decayed": np.add.reduceat(0.5 ** (age / DECAY_HALF_LIFE_DAYS), start).astype(np.float32),
        "bought_28d": np.add.reduceat((age < RECENT_DAYS).astype(np.int32), start).astype(np.int32),
    }
    return PairTable(keys[start], n, cols)


CUSTOMER_ITEM_COLUMNS: tuple[str, ...] = (
    "times_bought",
    "days_bought",
    "units_bought",
    "days_since_last_bought",
    "first_day_ago",
    "decayed",
    "bought_28d",
)
