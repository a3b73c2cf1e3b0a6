"""Every feature the models may use: name, dtype, one-line description, missing value.

This module is the single definition: builders return exactly these columns in this
order with these dtypes, ``omni features list`` prints them, and a trained model
stores the names it was trained on. Names are stable; new features are appended.

Point in time: a feature as of ``T`` reads only events with ``T - lookback < ts < T``,
where ``lookback`` is the longest window (365 days by default); an event is in the
``w``-day window when it is less than ``w`` days old. Reading older history would not
change any feature, so the CLI reads only the months it needs, and appending events at
or after ``T`` never changes anything.

Missing data, on purpose (the ``missing`` column says the value):

- counts and sums: 0;
- recency (``days_since_*``): the lookback, i.e. "not within the lookback";
- shares of the customer's own activity (channel mix, home store, weekend, BOPIS,
  returns, discounts): 0 when there is nothing to share (e.g. no orders);
- rates and averages (response rates, order value, purchase gaps, trends): NaN when
  undefined (no message sent, no order, fewer than two purchase days), which
  gradient-boosted trees treat as missing;
- customer attributes: tenure NaN and tier -1 when unknown, consent False when unknown.

Which customers get a row as of ``T``: every customer with an event in the lookback,
plus every row of the customers table whose ``signup_ts`` is before ``T`` (or
unknown). Rows are sorted by ``customer_id``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from features.schema import CHANNELS, LOYALTY_TIERS, OUTREACH_CHANNELS

DEFAULT_WINDOWS: tuple[int, ...] = (7, 30, 90, 365)
SALES_CHANNELS: tuple[str, ...] = tuple(c for c in CHANNELS if c not in OUTREACH_CHANNELS)
"""Channels an order can be placed on (outreach channels only lead to one)."""
ENGAGEMENT_TYPES: tuple[str, ...] = (
    "view",
    "add_to_cart",
    "store_visit",
    "open",
    "click",
    "redeem",
)
"""Customer-initiated events that are not purchases or returns."""

Dtype = Literal["float32", "int32", "int16", "int8", "bool"]
Family = Literal["recency", "frequency", "monetary", "channel_mix", "store", "customer", "item"]
NAN = math.nan


@dataclass(frozen=True)
class Feature:
    """One output column: what it is and what a customer with no relevant events gets."""

    name: str
    dtype: Dtype
    family: Family
    description: str
    missing: float | int | bool


def check_windows(windows: Sequence[int]) -> tuple[int, ...]:
    """Windows as sorted distinct positive whole days (e.g. ``(7, 30, 90, 365)``)."""
    try:
        out = tuple(sorted({int(w) for w in windows}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"windows must be whole numbers of days, got {windows!r}") from exc
    if not out or out[0] < 1 or any(int(w) != w for w in windows):
        raise ValueError(f"windows must be positive whole numbers of days, got {windows!r}")
    return out


def window_pairs(windows: Sequence[int]) -> list[tuple[int, int]]:
    """Adjacent (short, long) window pairs used for trend ratios."""
    w = check_windows(windows)
    return list(itertools.pairwise(w))


def customer_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[Feature, ...]:
    """The customer feature table's columns, in order, for these windows."""
    w = check_windows(windows)
    lookback = float(w[-1])
    f: list[Feature] = []

    def add(name: str, dtype: Dtype, family: Family, desc: str, missing) -> None:
        f.append(Feature(name, dtype, family, desc, missing))

    # Recency
    for what, desc in (
        ("purchase", "purchase"),
        ("engagement", "engagement (view, cart, store visit, open, click, redeem)"),
        ("store_visit", "store visit (any store event)"),
        ("online", "web / app purchase or engagement"),
    ):
        add(
            f"days_since_last_{what}", "float32", "recency", f"days since the last {desc}", lookback
        )
    for ch in CHANNELS:
        add(
            f"days_since_last_{ch}",
            "float32",
            "recency",
            f"days since the last purchase or engagement on {ch}",
            lookback,
        )
    # Frequency
    for d in w:
        add(f"orders_{d}d", "int32", "frequency", f"orders in the last {d} days", 0)
    for d in w:
        add(
            f"online_days_{d}d",
            "int32",
            "frequency",
            f"days with a web / app purchase or engagement in the last {d} days (sessions)",
            0,
        )
    for d in w:
        add(f"views_{d}d", "int32", "frequency", f"product views in the last {d} days", 0)
    for d in w:
        add(
            f"engagements_{d}d",
            "int32",
            "frequency",
            f"engagements (views, carts, store visits, opens, clicks, redeems), last {d} days",
            0,
        )
    for d in w:
        add(f"messages_{d}d", "int32", "frequency", f"messages received in the last {d} days", 0)
    for d in w:
        add(f"opens_{d}d", "int32", "frequency", f"messages opened in the last {d} days", 0)
    for d in w:
        add(f"clicks_{d}d", "int32", "frequency", f"message clicks in the last {d} days", 0)
    for a, b in window_pairs(w):
        add(
            f"orders_trend_{a}d_{b}d",
            "float32",
            "frequency",
            f"daily order rate over {a} days / over {b} days (NaN: no order in {b} days)",
            NAN,
        )
    for a, b in window_pairs(w):
        add(
            f"engagements_trend_{a}d_{b}d",
            "float32",
            "frequency",
            f"daily engagement rate over {a} days / over {b} days (NaN: none in {b} days)",
            NAN,
        )
    add(
        "purchase_gap_mean",
        "float32",
        "frequency",
        "mean days between consecutive purchase days (NaN: fewer than 2 purchase days)",
        NAN,
    )
    add(
        "purchase_gap_std",
        "float32",
        "frequency",
        "standard deviation of days between purchase days (NaN: fewer than 2 purchase days)",
        NAN,
    )
    add(
        "purchase_overdue",
        "float32",
        "frequency",
        "days since the last purchase / the usual gap (NaN: fewer than 2 purchase days)",
        NAN,
    )
    # Monetary
    for d in w:
        add(f"spend_{d}d", "float32", "monetary", f"purchase amount in the last {d} days", 0.0)
    for d in w:
        add(
            f"aov_{d}d",
            "float32",
            "monetary",
            f"average order value in the last {d} days (NaN: no order)",
            NAN,
        )
    for d in w:
        add(
            f"return_share_{d}d",
            "float32",
            "monetary",
            f"amount returned / amount spent in the last {d} days (0: no spend)",
            0.0,
        )
    for d in w:
        add(
            f"discount_share_{d}d",
            "float32",
            "monetary",
            f"discount / (amount + discount) on purchases in the last {d} days (0: no spend)",
            0.0,
        )
    # Channel mix (over the lookback)
    for ch in SALES_CHANNELS:
        add(
            f"share_purchases_{ch}",
            "float32",
            "channel_mix",
            f"share of orders placed on {ch}",
            0.0,
        )
    add(
        "share_purchases_online",
        "float32",
        "channel_mix",
        "share of orders placed on web or app",
        0.0,
    )
    add(
        "share_purchases_bopis",
        "float32",
        "channel_mix",
        "share of web / app orders picked up in a store",
        0.0,
    )
    for ch in CHANNELS:
        add(
            f"share_engagements_{ch}",
            "float32",
            "channel_mix",
            f"share of engagements on {ch}",
            0.0,
        )
    add(
        "n_channels",
        "int8",
        "channel_mix",
        "channels with a purchase or engagement in the lookback",
        0,
    )
    for ch in OUTREACH_CHANNELS:
        add(f"messages_{ch}", "int32", "channel_mix", f"{ch} messages received", 0)
    for ch in OUTREACH_CHANNELS:
        for resp in ("open", "click", "redeem"):
            add(
                f"{resp}_rate_{ch}",
                "float32",
                "channel_mix",
                f"{ch} {resp}s / {ch} messages received, can exceed 1 (NaN: no message)",
                NAN,
            )
    # Store visits
    for d in w:
        add(
            f"store_visits_{d}d",
            "int32",
            "store",
            f"store visits (customer, store, day) in the last {d} days",
            0,
        )
    add("distinct_stores", "int32", "store", "distinct stores visited", 0)
    add("home_store_share", "float32", "store", "share of store visits at the home store", 0.0)
    add(
        "weekend_visit_share",
        "float32",
        "store",
        "share of store visits on a Saturday or Sunday (UTC)",
        0.0,
    )
    # Customer attributes
    add("tenure_days", "float32", "customer", "days since signup (NaN: unknown)", NAN)
    add(
        "loyalty_tier",
        "int8",
        "customer",
        "loyalty tier: " + ", ".join(f"{i} {t}" for i, t in enumerate(LOYALTY_TIERS)),
        -1,
    )
    for ch in OUTREACH_CHANNELS:
        add(f"consent_{ch}", "bool", "customer", f"may be contacted by {ch}", False)
    return tuple(f)


def item_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[Feature, ...]:
    """Product-side columns (popularity per window, overall or per store / region)."""
    w = check_windows(windows)
    f = [
        Feature(f"orders_{d}d", "int32", "item", f"order lines in the last {d} days", 0) for d in w
    ]
    f += [Feature(f"units_{d}d", "int32", "item", f"units sold in the last {d} days", 0) for d in w]
    f += [Feature(f"views_{d}d", "int32", "item", f"views in the last {d} days", 0) for d in w]
    f += [
        Feature("buyers", "int32", "item", "distinct customers who bought it", 0),
        Feature(
            "repurchase_rate",
            "float32",
            "item",
            "share of its buyers who bought it on two or more days (NaN: no buyer)",
            NAN,
        ),
        Feature(
            "days_since_last_sold",
            "float32",
            "item",
            "days since it was last bought",
            float(w[-1]),
        ),
    ]
    return tuple(f)


def customer_item_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[Feature, ...]:
    """Customer-by-product columns: one row per product a customer bought."""
    lookback = float(check_windows(windows)[-1])
    return (
        Feature("times_bought", "int32", "item", "order lines of the product", 0),
        Feature("days_bought", "int32", "item", "distinct days the customer bought it", 0),
        Feature("units_bought", "int32", "item", "units bought", 0),
        Feature(
            "days_since_last_bought",
            "float32",
            "item",
            "days since the customer last bought it",
            lookback,
        ),
    )


TABLES = {
    "customer": customer_features,
    "item": item_features,
    "customer_item": customer_item_features,
}


def feature_names(windows: Sequence[int] = DEFAULT_WINDOWS) -> list[str]:
    """Customer feature names in table order."""
    return [f.name for f in customer_features(windows)]


def format_missing(value: float | int | bool) -> str:
    """How a missing value is shown in listings."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, bool):
        return str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
