"""Everything known as of one cutoff that candidates and ranker features read.

A :class:`CutoffState` is built from events before the cutoff only (``ts < as_of``, within
the lookback): ALS factors, the customer x product purchase table, item popularity,
segment popularity (store, region, channel) and each customer's profile (usual store and
channel, category mix, the products they looked at in the last hours). The fitted
recommender keeps the state of its last cutoff: it is all it needs at prediction time.

The customer parts (:data:`CUSTOMER_FIELDS`, :func:`customer_parts`) read only each
customer's own events, so the live loop rebuilds them for the customers events touch
and keeps the product parts of the snapshot (:func:`with_customers`; issue 17).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from features.contract.schema import EVENT_TYPES
from training.recs.als import ALSParams, fit_als, fold_in
from training.recs.data import DAY_S, N_CHANNELS, PURCHASE, History, to_seconds
from training.recs.interactions import bm25, bm25_norm, event_weights, interaction_matrix
from training.recs.product_tables import (
    RECENT_DAYS,
    customer_item_table,
    item_table,
    repurchase_gap,
    windows_for,
)
from training.recs.tables import PairTable, run_starts, top_per_row


@dataclass(frozen=True)
class StateParams:
    """How far back a cutoff state reads, and how deep its popularity lists go."""

    lookback_days: int = 365
    popularity_days: int = 28
    popular_depth: int = 200
    event_weights: dict[str, float] | None = None
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    session_hours: int = 48


@dataclass
class CutoffState:
    """State as of ``as_of_s`` (seconds). Arrays are indexed by catalogue codes."""

    as_of_s: int
    params: StateParams
    bought: PairTable  # customer x item purchase history
    items: dict[str, np.ndarray]  # registry item features, one entry per item
    active: np.ndarray  # bool per customer: any product event in the lookback
    purchase_days: np.ndarray  # int32 per customer
    trips_28d: np.ndarray  # int32 purchase days in the last 28 days per customer
    lines: np.ndarray  # int32 purchase lines per customer
    days_since_purchase: np.ndarray  # float32 per customer (lookback when none)
    main_store: np.ndarray  # int32 per customer, -1 unknown
    main_channel: np.ndarray  # int8 per customer, -1 unknown
    category_lines: PairTable  # customer x category purchase lines
    trending: np.ndarray  # int32 item codes, most bought in the popularity window first
    trending_count: np.ndarray  # float32
    segment_counts: dict[str, PairTable]  # "store" / "region" / "channel" x item counts
    segment_totals: dict[str, np.ndarray]  # lines per segment
    segment_top: dict[str, tuple[np.ndarray, np.ndarray]]  # (items, counts) per segment
    adopters: np.ndarray  # float32 per item: first-time buyers in the popularity window
    adoption_share: np.ndarray  # float32 per item: their share of its window buyers (NaN: none)
    customer_new_share: np.ndarray  # float32 per customer: share of window products new to them
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # Issue 17 (None in states pickled before it):
    session: PairTable | None = None  # customer x item views / carts in the session window
    item_gap: np.ndarray | None = None  # float32 per item: median repurchase gap, days
    als_customers: np.ndarray | None = None  # bool per customer with ALS factors (None: all)
    als_item_norm: np.ndarray | None = None  # float64 per item: BM25 norm of the ALS matrix

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.as_of_s, unit="s", tz="UTC")


def build_cutoff_state(
    history: History,
    as_of: pd.Timestamp | str,
    params: StateParams,
    als: ALSParams | None,
    random_state: int,
) -> CutoffState:
    """CutoffState as of ``as_of`` from ``history``; ALS is fitted only when ``als`` is given."""
    import time

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    cat = history.catalogue
    t = to_seconds(as_of)
    rows = history.before(as_of, params.lookback_days)
    buy = rows[history.event_type[rows] == PURCHASE]
    n_c, n_i = cat.n_customers, cat.n_items
    adopters, adoption_share, customer_new_share = _adoption(
        history, buy, t - params.popularity_days * DAY_S, n_c, n_i
    )
    customer = customer_parts(history, rows, t, params, customer_new_share)
    seconds["profile"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    recent = buy[history.ts[buy] >= t - params.popularity_days * DAY_S]
    r_item = history.item[recent]
    depth = params.popular_depth
    overall = np.bincount(r_item, minlength=n_i).astype(np.float32)
    trend, trend_count = top_per_row(
        np.zeros(n_i, np.int32), np.arange(n_i, dtype=np.int32), overall, 1, depth
    )
    keep = trend[0] >= 0
    keep &= trend_count[0] > 0
    segments = {
        "store": (history.store[recent], cat.n_stores),
        "region": (
            np.where(
                history.store[recent] >= 0,
                cat.store_region[np.maximum(history.store[recent], 0)],
                -1,
            ),
            max(len(cat.regions), 1),
        ),
        "channel": (history.channel[recent].astype(np.int32), N_CHANNELS),
    }
    seg_counts, seg_totals, seg_top = {}, {}, {}
    for name, (seg, n_seg) in segments.items():
        ok = seg >= 0
        table = PairTable.count(seg[ok], r_item[ok], n_i)
        seg_counts[name] = table
        seg_totals[name] = np.bincount(seg[ok], minlength=n_seg).astype(np.float32)
        pos = np.arange(len(table))
        seg_top[name] = top_per_row(
            table.row_of(pos), table.col_of(pos), table.columns["count"], n_seg, depth
        )
    items = item_table(
        history, pd.Timestamp(t, unit="s", tz="UTC"), windows_for(params.lookback_days)
    )
    seconds["popularity"] = time.perf_counter() - t0

    user_f = item_f = item_norm = None
    if als is not None:
        t0 = time.perf_counter()
        matrix = interaction_matrix(history, as_of, params.lookback_days, params.event_weights)
        item_norm = bm25_norm(matrix, params.bm25_b)
        weighted = bm25(matrix, params.bm25_k1, params.bm25_b, item_norm)
        seconds["matrix"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        user_f, item_f = fit_als(weighted, als, random_state)
        seconds["als"] = time.perf_counter() - t0
    return CutoffState(
        as_of_s=t,
        params=params,
        items=items,
        trending=trend[0][keep],
        trending_count=trend_count[0][keep],
        segment_counts=seg_counts,
        segment_totals=seg_totals,
        segment_top=seg_top,
        adopters=adopters,
        adoption_share=adoption_share,
        user_factors=user_f,
        item_factors=item_f,
        als_item_norm=item_norm,
        seconds=seconds,
        item_gap=_item_gaps(customer["bought"], n_i),
        **customer,
    )


CUSTOMER_FIELDS: tuple[str, ...] = (
    "bought",
    "active",
    "purchase_days",
    "trips_28d",
    "lines",
    "days_since_purchase",
    "main_store",
    "main_channel",
    "category_lines",
    "customer_new_share",
    "session",
)
"""The fields of a :class:`CutoffState` that read each customer's own events alone."""


def customer_parts(
    history: History,
    rows: np.ndarray,
    t: int,
    params: StateParams,
    customer_new_share: np.ndarray | None = None,
) -> dict[str, object]:
    """The :data:`CUSTOMER_FIELDS` as of ``t`` (seconds) from ``rows`` (the lookback's
    rows of ``history``, time order), indexed by the history's customer codes.
    ``customer_new_share``: already computed (the full build shares it with the product
    parts), else computed here."""
    cat = history.catalogue
    n_c, n_i = cat.n_customers, cat.n_items
    buy = rows[history.event_type[rows] == PURCHASE]
    cust = history.customer[buy]
    active = np.zeros(n_c, bool)
    active[history.customer[rows]] = True
    day = history.ts[buy] // DAY_S
    cust_days = np.unique(cust.astype(np.int64) * 1_000_000 + day)
    purchase_days = np.bincount(cust_days // 1_000_000, minlength=n_c).astype(np.int32)
    recent_days = cust_days[(cust_days % 1_000_000) >= t // DAY_S - RECENT_DAYS]
    trips_28d = np.bincount(recent_days // 1_000_000, minlength=n_c).astype(np.int32)
    lines = np.bincount(cust, minlength=n_c).astype(np.int32)
    last = np.full(n_c, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last, cust, history.ts[buy])
    since = np.where(lines > 0, (t - last) / DAY_S, params.lookback_days).astype(np.float32)
    store_rows = buy[history.store[buy] >= 0]
    main_store = _mode(history.customer[store_rows], history.store[store_rows], n_c, cat.n_stores)
    main_channel = _mode(cust, history.channel[buy], n_c, N_CHANNELS).astype(np.int8)
    item_cat = cat.item_category[history.item[buy]]
    has_cat = item_cat >= 0
    category_lines = PairTable.count(cust[has_cat], item_cat[has_cat], max(len(cat.categories), 1))
    if customer_new_share is None:
        since_s = t - params.popularity_days * DAY_S
        customer_new_share = _adoption(history, buy, since_s, n_c, n_i)[2]
    as_of = pd.Timestamp(t, unit="s", tz="UTC")
    return {
        "bought": customer_item_table(history, rows, as_of, windows_for(params.lookback_days)),
        "active": active,
        "purchase_days": purchase_days,
        "trips_28d": trips_28d,
        "lines": lines,
        "days_since_purchase": since,
        "main_store": main_store,
        "main_channel": main_channel,
        "category_lines": category_lines,
        "customer_new_share": customer_new_share,
        "session": _session_table(history, rows, t, params.session_hours),
    }


MAPPED_FIELDS: tuple[str, ...] = (*CUSTOMER_FIELDS, "user_factors", "als_customers")
"""The per-customer fields of a :class:`CutoffState` that :func:`customer_arrays` writes
out and :func:`with_customer_arrays` reads back: all a warm customer's ranking reads of
its own (~0.7 KB a customer at 20,000 customers, issue 17)."""


def customer_arrays(state: CutoffState) -> dict[str, np.ndarray]:
    """The state's :data:`MAPPED_FIELDS` as flat arrays named ``state_<field>`` (a
    :class:`PairTable`'s keys as ``state_<field>_keys``, its columns as
    ``state_<field>_col_<name>``), for a snapshot to store and a worker to map."""
    out: dict[str, np.ndarray] = {}
    for name in MAPPED_FIELDS:
        value = getattr(state, name)
        if isinstance(value, PairTable):
            out[f"state_{name}_keys"] = value.keys
            out |= {f"state_{name}_col_{c}": v for c, v in value.columns.items()}
        elif value is not None:
            out[f"state_{name}"] = value
    return out


def with_customer_arrays(state: CutoffState, arrays: dict) -> CutoffState:
    """``state`` with its :data:`MAPPED_FIELDS` taken from ``arrays`` (from
    :func:`customer_arrays` of the same state, e.g. memory-mapped from a snapshot) when
    every one is there with the same shape and dtype, else ``state`` itself. A worker then
    reads those pages from the file, shared and reclaimable, instead of a private copy."""
    taken: dict[str, object] = {}
    for name, theirs in customer_arrays(state).items():
        mapped = arrays.get(name)
        if mapped is None or mapped.shape != theirs.shape or mapped.dtype != theirs.dtype:
            return state  # not this state's arrays (or an older snapshot's): keep them all
        taken[name] = mapped
    fields: dict[str, object] = {}
    for name in MAPPED_FIELDS:
        value = getattr(state, name)
        if isinstance(value, PairTable):
            columns = {c: taken[f"state_{name}_col_{c}"] for c in value.columns}
            fields[name] = PairTable(taken[f"state_{name}_keys"], value.n_cols, columns)
        elif value is not None:
            fields[name] = taken[f"state_{name}"]
    return replace(state, **fields)


def with_customers(
    state: CutoffState,
    parts: dict[str, object],
    factor_rows: np.ndarray,
    t: int,
    folded_at: np.ndarray | None = None,
    folded: np.ndarray | None = None,
) -> CutoffState:
    """``state``'s product parts with other customers' :data:`CUSTOMER_FIELDS` (``parts``
    from :func:`customer_parts` over their events as of ``t``): what the live loop ranks
    a few customers with. ``factor_rows``: each customer's row of ``state``'s ALS user
    factors (-1: none); ``folded``: the factors of the customers at ``folded_at`` (none
    there, or interactions since ``state``'s cutoff), folded in from their own events
    (:func:`fold_in_customers`), in place of any fitted ones. A
    customer with neither gets no ALS candidates."""
    users = None
    has = factor_rows >= 0
    if state.user_factors is not None:
        users = state.user_factors[np.maximum(factor_rows, 0)]
        if folded_at is not None and len(folded_at):
            users[folded_at] = folded
            has[folded_at] = True
    return replace(state, **parts, as_of_s=t, user_factors=users, als_customers=has, seconds={})


def customers_to_fold(
    state: CutoffState, history: History, rows: np.ndarray, factor_rows: np.ndarray
) -> np.ndarray:
    """Codes of the history's customers whose ALS factors :func:`fold_in_customers` must
    compute: those without a row of ``state``'s factors (``factor_rows`` < 0) and those
    with product interactions (events the ALS matrix weighs) in ``rows`` at or after
    ``state``'s cutoff, whose fitted factors miss them. The others keep their fitted
    factors exactly."""
    weights = event_weights(state.params.event_weights)
    after = rows[history.ts[rows] >= state.as_of_s]
    after = after[weights[history.event_type[after]] > 0]
    fold = factor_rows < 0
    fold[history.customer[after]] = True
    return np.flatnonzero(fold).astype(np.int32)


def fold_in_customers(
    state: CutoffState,
    history: History,
    as_of: pd.Timestamp,
    customers: np.ndarray,
    als: ALSParams,
) -> tuple[np.ndarray, np.ndarray]:
    """ALS factors of the history's customers ``customers`` (:func:`customers_to_fold`)
    from all their interactions before ``as_of``, weighted as the fitted matrix was (the
    same weights and lookback, BM25 with its products' norm), the item factors fixed
    (:func:`training.recs.als.fold_in`): (the codes that have interactions, their
    factors). None of it without fitted factors or a state pickled before the norm."""
    empty = np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    if state.item_factors is None or state.als_item_norm is None or not len(customers):
        return empty
    params = state.params
    matrix = interaction_matrix(history, as_of, params.lookback_days, params.event_weights)
    rows = matrix[customers]
    some = np.flatnonzero(rows.getnnz(axis=1) > 0)
    if not len(some):
        return empty
    weighted = bm25(rows[some], params.bm25_k1, params.bm25_b, state.als_item_norm)
    return customers[some].astype(np.int64), fold_in(state.item_factors, weighted, als)


VIEW = EVENT_TYPES.index("view")
CART = EVENT_TYPES.index("add_to_cart")


def _session_table(history: History, rows: np.ndarray, t: int, hours: int) -> PairTable:
    """One row per (customer, product) viewed or put in the cart in the ``hours`` before
    ``t``: views, carts and hours_ago (since the latest of them)."""
    n_i = history.catalogue.n_items
    recent = rows[history.ts[rows] >= t - hours * 3600]
    recent = recent[history.event_type[recent] != PURCHASE]  # views and add_to_carts
    keys = history.customer[recent].astype(np.int64) * n_i + history.item[recent]
    uniq, inv = np.unique(keys, return_inverse=True)
    kind = history.event_type[recent]
    last = np.full(len(uniq), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last, inv, history.ts[recent])
    columns = {
        "views": np.bincount(inv, kind == VIEW, len(uniq)).astype(np.float32),
        "carts": np.bincount(inv, kind == CART, len(uniq)).astype(np.float32),
        "hours_ago": ((t - last) / 3600).astype(np.float32),
    }
    return PairTable(uniq, n_i, columns)


def _item_gaps(bought: PairTable, n_items: int) -> np.ndarray:
    """float32 per item: the median over its repeat buyers of their days between buying
    it (NaN: nobody bought it on two days), what a product's rest lasts for a customer
    who bought it once (:func:`training.recs.candidates.resting`)."""
    b = bought.columns
    every = repurchase_gap(b["days_bought"], b["days_since_last_bought"], b["first_day_ago"])
    multi = np.flatnonzero(~np.isnan(every))
    gap, item = every[multi], bought.col_of(multi)
    out = np.full(n_items, np.nan, np.float32)
    if len(item):
        order = np.lexsort((gap, item))
        item, gap = item[order], gap[order]
        start = np.flatnonzero(run_starts(item))
        size = np.diff(np.r_[start, len(item)])
        out[item[start]] = (gap[start + (size - 1) // 2] + gap[start + size // 2]) / 2
    return out


def _adoption(
    history: History, buy: np.ndarray, since_s: int, n_c: int, n_i: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Novelty of the popularity window (from ``since_s``), from purchase rows ``buy``
    (time order): per item, customers who first bought it in the window (within the
    lookback) and their share of its window buyers; per customer, the share of the
    products they bought in the window that were new to them. Issue 16: signals for
    ranking products a customer has never bought."""
    key = history.customer[buy].astype(np.int64) * n_i + history.item[buy]
    pairs, first = np.unique(key, return_index=True)  # rows are in time order
    last_ts = np.full(len(pairs), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last_ts, np.searchsorted(pairs, key), history.ts[buy])
    in_window = last_ts >= since_s
    new = history.ts[buy][first] >= since_s  # first purchase in the window
    item, cust = pairs % n_i, pairs // n_i
    adopters = np.bincount(item[new], minlength=n_i).astype(np.float32)
    window_buyers = np.bincount(item[in_window], minlength=n_i).astype(np.float32)
    share = np.divide(
        adopters, window_buyers, out=np.full(n_i, np.nan, np.float32), where=window_buyers > 0
    )
    cust_new = np.bincount(cust[new], minlength=n_c).astype(np.float32)
    cust_window = np.bincount(cust[in_window], minlength=n_c).astype(np.float32)
    cust_share = np.divide(
        cust_new, cust_window, out=np.full(n_c, np.nan, np.float32), where=cust_window > 0
    )
    return adopters, share, cust_share


def _mode(rows: np.ndarray, values: np.ndarray, n_rows: int, n_values: int) -> np.ndarray:
    """Most frequent value per row (ties: the lower value), -1 for rows without any."""
    out = np.full(n_rows, -1, np.int32)
    if len(rows) == 0:
        return out
    table = PairTable.count(rows, values, n_values)
    pos = np.arange(len(table))
    best, _ = top_per_row(table.row_of(pos), table.col_of(pos), table.columns["count"], n_rows, 1)
    return best[:, 0]
