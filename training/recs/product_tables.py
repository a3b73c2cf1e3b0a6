"""Customer-by-product and product features of a cutoff state.

The registry's tables come from the shared builders of :mod:`features.item_features`
(``build_item_features``, ``build_customer_item_features``: one definition for training,
batch scoring and serving), mapped onto the recommender's codes. On top of the
customer-by-product table the ranker derives repurchase cycles and recency from three
columns of its own, computed here: first_day_ago (days since the first purchase),
decayed (purchase lines weighted 0.5 ** (age / 30 days)) and bought_28d (lines in the
last 28 days).

Point in time: everything reads rows ``as_of - lookback <= ts < as_of`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.item_features import build_customer_item_features, build_item_features
from features.registry import customer_item_features, item_features
from training.recs.data import DAY_S, PURCHASE, History
from training.recs.tables import PairTable, run_starts

DECAY_HALF_LIFE_DAYS = 30.0
RECENT_DAYS = 28
EXTRA_COLUMNS: tuple[str, ...] = ("first_day_ago", "decayed", "bought_28d")


def windows_for(lookback_days: int) -> tuple[int, ...]:
    """Registry windows (7, 30, 90 days) plus the lookback as the longest one."""
    return tuple(sorted({7, 30, 90, int(lookback_days)}))


def item_table(
    history: History, as_of: pd.Timestamp, windows: Sequence[int]
) -> dict[str, np.ndarray]:
    """Registry ``item_features`` per catalogue product code (missing values for products
    without events), from the shared builder."""
    frame = build_item_features(history.events, None, as_of, windows)
    at = history.catalogue.item_codes(frame.index.to_numpy())
    n = history.catalogue.n_items
    out = {}
    for f in item_features(windows):
        col = np.full(n, f.missing, dtype=np.float32 if f.dtype == "float32" else np.int32)
        col[at[at >= 0]] = frame[f.name].to_numpy()[at >= 0]
        out[f.name] = col
    return out


def customer_item_table(
    history: History, rows: np.ndarray, as_of: pd.Timestamp, windows: Sequence[int]
) -> PairTable:
    """One row per (customer, product) bought in the lookback: the registry's
    ``customer_item_features`` from the shared builder plus :data:`EXTRA_COLUMNS`."""
    frame = build_customer_item_features(history.events, as_of, windows)
    cat = history.catalogue
    cust = _level_codes(frame.index, 0, cat.customer_codes)
    item = _level_codes(frame.index, 1, cat.item_codes)
    ok = (cust >= 0) & (item >= 0)
    keys = cust[ok].astype(np.int64) * cat.n_items + item[ok]
    order = np.argsort(keys)
    cols = {f.name: frame[f.name].to_numpy()[ok][order] for f in customer_item_features(windows)}
    table = PairTable(keys[order], cat.n_items, cols)
    extra = _extra_columns(history, rows, int(as_of.value // 1_000_000_000))
    pos = extra.find(table.row_of(np.arange(len(table))), table.col_of(np.arange(len(table))))
    for name in EXTRA_COLUMNS:
        values = np.zeros(len(table), np.float32)
        values[pos >= 0] = extra.columns[name][pos[pos >= 0]]
        table.columns[name] = values
    return table


def _level_codes(index: pd.MultiIndex, level: int, codes_of) -> np.ndarray:
    """Catalogue codes of one level of ``index`` per row (-1: unknown), looking up each
    distinct id once (a live refresh's 36,689 pairs: 22 ms -> 1.5 ms)."""
    at = index.codes[level]
    codes = codes_of(index.levels[level])
    return np.where(at >= 0, codes[at], -1).astype(np.int32)


def repurchase_gap(days: np.ndarray, since: np.ndarray, first: np.ndarray) -> np.ndarray:
    """A customer's usual days between buying a product, per pair: (days since the first
    purchase - days since the last) / (purchase days - 1), float32; NaN under two
    purchase days. Arguments: the table's days_bought, days_since_last_bought and
    first_day_ago of the pairs."""
    days = np.asarray(days, np.float32)
    out = np.full(len(days), np.nan, np.float32)
    multi = days >= 2
    first, since = np.asarray(first, np.float32), np.asarray(since, np.float32)
    out[multi] = (first[multi] - since[multi]) / (days[multi] - 1)
    return out


def _extra_columns(history: History, rows: np.ndarray, as_of_s: int) -> PairTable:
    """:data:`EXTRA_COLUMNS` per (customer, product) bought in the rows."""
    buy = rows[history.event_type[rows] == PURCHASE]
    n = history.catalogue.n_items
    age = ((as_of_s - history.ts[buy]) / DAY_S).astype(np.float32)
    keys = history.customer[buy].astype(np.int64) * n + history.item[buy]
    order = np.lexsort((-age, keys))  # by pair, oldest first
    keys, age = keys[order], age[order]
    if len(keys) == 0:
        return PairTable(keys, n, {c: np.zeros(0, np.float32) for c in EXTRA_COLUMNS})
    start = np.flatnonzero(run_starts(keys))
    cols = {
        "first_day_ago": age[start],
        "decayed": np.add.reduceat(0.5 ** (age / DECAY_HALF_LIFE_DAYS), start).astype(np.float32),
        "bought_28d": np.add.reduceat((age < RECENT_DAYS).astype(np.int32), start).astype(np.int32),
    }
    return PairTable(keys[start], n, cols)
