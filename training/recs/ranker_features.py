"""Ranker features of (customer, candidate product) pairs, all read from one cutoff state.

The same function builds training rows (the state at a training cutoff) and prediction
rows (the fitted model's state), so training and serving cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.recs.als import pair_scores
from training.recs.candidates import SOURCES, Candidates, Customers
from training.recs.cutoff_state import CutoffState
from training.recs.data import Catalogue
from training.recs.parallel import thread_map, threads
from training.recs.product_tables import repurchase_gap

FEATURES: tuple[str, ...] = (
    "als_score",
    "als_rank",
    *(f"src_{s}" for s in SOURCES),
    "times_bought",
    "days_bought",
    "units_bought",
    "days_since_last_bought",
    "decayed_purchases",
    "bought_28d",
    "repurchase_gap",
    "gap_ratio",
    "trip_share",
    "expected_trips",
    "orders_7d",
    "orders_30d",
    "orders_90d",
    "orders_lookback",
    "views_30d",
    "buyers",
    "repurchase_rate",
    "days_since_last_sold",
    "store_share",
    "region_share",
    "channel_share",
    "category_share",
    "price",
    "customer_purchase_days",
    "customer_days_since_purchase",
    "customer_trips_28d",
    "adopters_28d",
    "adoption_share",
    "customer_new_share",
    "session_views",
    "session_carts",
    "session_hours_ago",
)
"""Column order of the ranker's matrix. Meanings:

als_score / als_rank: ALS factor dot product; rank in the customer's ALS list (NaN if not
from ALS). src_*: candidate source flags. times_bought, days_bought, units_bought,
days_since_last_bought (lookback when never): the customer's history with the product
(registry names). decayed_purchases: purchase lines weighted 0.5 ** (age / 30 d).
bought_28d: its purchase lines in the last 28 days. repurchase_gap: the customer's usual
days between buying it ((last - first) / (days - 1), NaN under two days); gap_ratio:
days since last bought / that gap (about 1 = due now).
trip_share: share of the customer's purchase days that included it; expected_trips:
trip_share x the customer's purchase days in the last 28 days. orders_* (orders_lookback:
over the whole lookback), views_30d,
buyers, repurchase_rate, days_since_last_sold: product popularity (registry names).
*_share: product's share of purchases in the customer's store / region / channel over the
popularity window. category_share: share of the customer's lines in its category.
customer_*: the customer's purchase days, days since the last, purchase days in 28 days.
adopters_28d / adoption_share: customers who bought the product for the first time (in the
lookback) in the popularity window, and their share of its buyers there;
customer_new_share: share of the products the customer bought in that window that were new
to them (novelty signals for products never bought; issue 16).
session_views / session_carts / session_hours_ago: the customer's views and add-to-carts
of the product in the session window and hours since the latest (0, 0, NaN outside it;
issue 17).
"""


PARALLEL_ROWS = 10_000
"""Fewer candidate rows than this are built on one thread (threads would cost more)."""


def feature_matrix(
    state: CutoffState,
    catalogue: Catalogue,
    customers: Customers,
    cand: Candidates,
    num_threads: int = 1,
    names: Sequence[str] = FEATURES,
) -> np.ndarray:
    """float32 matrix (len(cand), len(names)), NaN for missing values; ``names``: the
    columns, in order (a model fitted before a feature existed asks for its own list).

    Every feature of a row reads that row alone, so blocks of rows can be built on
    ``num_threads`` threads (0: one per core; batch scoring) with the same result."""
    n_threads = threads(num_threads) if len(cand) >= PARALLEL_ROWS else 1
    if n_threads == 1:
        return _feature_matrix(state, catalogue, customers, cand, names)
    bounds = np.linspace(0, len(cand), n_threads + 1).astype(np.int64)

    def block(i: int) -> np.ndarray:
        rows = slice(bounds[i], bounds[i + 1])
        part = Candidates(cand.pos[rows], cand.item[rows], cand.sources[rows], cand.als_rank[rows])
        return _feature_matrix(state, catalogue, customers, part, names)

    return np.concatenate(thread_map(block, range(n_threads), n_threads))


def _feature_matrix(
    state: CutoffState,
    catalogue: Catalogue,
    customers: Customers,
    cand: Candidates,
    names: Sequence[str],
) -> np.ndarray:
    """:func:`feature_matrix` on the calling thread."""
    lookback = float(state.params.lookback_days)
    code = customers.code[cand.pos]
    item = cand.item
    cols: dict[str, np.ndarray] = {}
    if state.user_factors is not None:
        cols["als_score"] = pair_scores(state.user_factors, state.item_factors, code, item)
        if state.als_customers is not None:  # a live overlay's new customers have no factors
            cols["als_score"][~state.als_customers[np.maximum(code, 0)]] = np.nan
    else:
        cols["als_score"] = np.full(len(cand), np.nan, np.float32)
    cols["als_rank"] = np.where(cand.als_rank >= 0, cand.als_rank, np.nan)
    for s in SOURCES:
        cols[f"src_{s}"] = cand.has(s)
    at = state.bought.find(code, item)
    got = at >= 0
    at_got = at[got]
    b = state.bought.columns

    def pick(name: str, missing: float) -> np.ndarray:
        out = np.full(len(cand), missing, np.float32)
        out[got] = b[name][at_got]
        return out

    times = pick("times_bought", 0)
    days = pick("days_bought", 0)
    since = pick("days_since_last_bought", lookback)
    first = pick("first_day_ago", np.nan)
    cols |= {
        "times_bought": times,
        "days_bought": days,
        "units_bought": pick("units_bought", 0),
        "days_since_last_bought": since,
        "decayed_purchases": pick("decayed", 0),
        "bought_28d": pick("bought_28d", 0),
    }
    gap = repurchase_gap(days, since, first)
    cols["repurchase_gap"] = gap
    ratio = np.full(len(cand), np.nan, np.float32)
    ok = (days >= 2) & (gap > 0)
    ratio[ok] = since[ok] / gap[ok]
    cols["gap_ratio"] = ratio
    safe = np.maximum(code, 0)
    trips = np.where(code >= 0, state.purchase_days[safe], 0).astype(np.float32)
    cols["trip_share"] = np.divide(days, trips, out=np.zeros_like(days), where=trips > 0)
    recent = np.where(code >= 0, state.trips_28d[safe], 0).astype(np.float32)
    cols["expected_trips"] = cols["trip_share"] * recent
    cols["customer_trips_28d"] = recent
    for name in ("orders_7d", "orders_30d", "orders_90d", "views_30d"):
        cols[name] = state.items[name][item]
    cols["orders_lookback"] = state.items[f"orders_{state.params.lookback_days}d"][item]
    for name in ("buyers", "repurchase_rate", "days_since_last_sold"):
        cols[name] = state.items[name][item]
    for name, seg in (
        ("store", customers.store),
        ("region", customers.region),
        ("channel", customers.channel),
    ):
        s = seg[cand.pos]
        count = state.segment_counts[name].get("count", s, item, 0.0)
        total = np.where(s >= 0, state.segment_totals[name][np.maximum(s, 0)], 0.0)
        cols[f"{name}_share"] = np.divide(
            count, total, out=np.full(len(cand), np.nan, np.float32), where=total > 0
        )
    item_cat = catalogue.item_category[item]
    cat_lines = state.category_lines.get("count", code, item_cat, 0.0)
    lines = np.where(code >= 0, state.lines[safe], 0).astype(np.float32)
    cols["category_share"] = np.divide(
        cat_lines, lines, out=np.full(len(cand), np.nan, np.float32), where=lines > 0
    )
    cols["price"] = catalogue.item_price[item]
    cols["customer_purchase_days"] = trips
    cols["customer_days_since_purchase"] = np.where(
        code >= 0, state.days_since_purchase[safe], lookback
    )
    cols["adopters_28d"] = state.adopters[item]
    cols["adoption_share"] = state.adoption_share[item]
    cols["customer_new_share"] = np.where(code >= 0, state.customer_new_share[safe], np.nan).astype(
        np.float32
    )
    session = state.session  # None in a state pickled before issue 17 (the default)
    if session is not None:
        seen = session.find(code, item)
        cols["session_views"] = session.pick(seen, "views", 0.0)
        cols["session_carts"] = session.pick(seen, "carts", 0.0)
        cols["session_hours_ago"] = session.pick(seen, "hours_ago", np.nan)
    else:
        cols["session_views"] = cols["session_carts"] = np.zeros(len(cand), np.float32)
        cols["session_hours_ago"] = np.full(len(cand), np.nan, np.float32)
    out = np.empty((len(cand), len(names)), np.float32)
    for j, name in enumerate(names):
        out[:, j] = cols[name]
    return out
