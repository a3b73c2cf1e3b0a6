"""Every feature the models may use: name, dtype, description, missing value, computation.

This module is the single definition: each feature is one declaration, its computation
(``compute``) right beside it, and the builders compute exactly these columns in this
order with these dtypes; ``omni features list`` prints them and docs/feature_list.md is
generated from them (``omni features list --markdown``); a trained model stores the
names it was trained on. Names are stable; new features are appended. Adding a feature
is adding a declaration (see docs/development.md).

A customer feature's ``compute`` is a formula over ``x``, the cutoff's events grouped per
customer (:class:`features.customer_activity.CustomerActivity`: ``x.count(...)``,
``x.days_since(...)``, ``x.orders``, ``x.money``, ``x.store_visits``, ``x.attributes``),
in plain numpy; an item feature's reads :class:`features.item_features.Lines`.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from features.contract.schema import CHANNELS, LOYALTY_TIERS, ONLINE_CHANNELS, OUTREACH_CHANNELS
from features.grouping import days as k_days
from features.grouping import ratio

if TYPE_CHECKING:
    from features.customer_activity import CustomerActivity

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
ACTIVE_TYPES: tuple[str, ...] = ("purchase", *ENGAGEMENT_TYPES)
"""What counts as the customer's own activity on a channel: purchases and engagements."""
RESPONSES: tuple[str, ...] = ("open", "click", "redeem")
"""Answers to a message, per outreach channel."""

Dtype = Literal["float32", "int32", "int16", "int8", "bool"]
Family = Literal["recency", "frequency", "monetary", "channel_mix", "store", "customer", "item"]
NAN = math.nan


@dataclass(frozen=True)
class Feature:
    """One output column: what it is, what a row with no relevant events gets, and how it
    is computed (``compute``, a function of the builder's grouped events: see
    :class:`features.customer_activity.CustomerActivity` for customer features and
    :class:`features.item_features.Lines` for item features)."""

    name: str
    dtype: Dtype
    family: Family
    description: str
    missing: float | int | bool
    compute: Callable[[Any], np.ndarray] = field(repr=False, compare=False)


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
    """The customer feature table's columns, in order, for these windows.

    Each ``compute`` takes a :class:`~features.customer_activity.CustomerActivity` ``x``
    (one cutoff's events grouped per customer) and returns one value per customer.
    """
    w = check_windows(windows)
    lookback = float(w[-1])
    f: list[Feature] = []

    def add(
        name: str,
        dtype: Dtype,
        family: Family,
        desc: str,
        missing,
        compute: Callable[[CustomerActivity], Any],
    ) -> None:
        f.append(Feature(name, dtype, family, desc, missing, compute))

    # Recency: days since the last event of a kind; the lookback when there is none.
    add(
        "days_since_last_purchase",
        "float32",
        "recency",
        "days since the last purchase",
        lookback,
        lambda x: x.days_since("purchase"),
    )
    add(
        "days_since_last_engagement",
        "float32",
        "recency",
        "days since the last engagement (view, cart, store visit, open, click, redeem)",
        lookback,
        lambda x: x.days_since(ENGAGEMENT_TYPES),
    )
    add(
        "days_since_last_store_visit",
        "float32",
        "recency",
        "days since the last store visit (any store event)",
        lookback,
        lambda x: x.days_since(ACTIVE_TYPES, channels=("store",)),
    )
    add(
        "days_since_last_online",
        "float32",
        "recency",
        "days since the last web / app purchase or engagement",
        lookback,
        lambda x: x.days_since(ACTIVE_TYPES, channels=ONLINE_CHANNELS),
    )
    for ch in CHANNELS:
        add(
            f"days_since_last_{ch}",
            "float32",
            "recency",
            f"days since the last purchase or engagement on {ch}",
            lookback,
            lambda x, ch=ch: x.days_since(ACTIVE_TYPES, channels=(ch,)),
        )
    # Frequency
    for d in w:
        add(
            f"orders_{d}d",
            "int32",
            "frequency",
            f"orders in the last {d} days",
            0,
            lambda x, d=d: x.orders.count(within=d),
        )
    for d in w:
        add(
            f"online_days_{d}d",
            "int32",
            "frequency",
            f"days with a web / app purchase or engagement in the last {d} days (sessions)",
            0,
            lambda x, d=d: x.online_days(within=d),
        )
    for name, event_type, desc in (
        ("views", "view", "product views in the last {d} days"),
        (
            "engagements",
            ENGAGEMENT_TYPES,
            "engagements (views, carts, store visits, opens, clicks, redeems), last {d} days",
        ),
        ("messages", "message_sent", "messages received in the last {d} days"),
        ("opens", "open", "messages opened in the last {d} days"),
        ("clicks", "click", "message clicks in the last {d} days"),
    ):
        for d in w:
            add(
                f"{name}_{d}d",
                "int32",
                "frequency",
                desc.format(d=d),
                0,
                lambda x, d=d, event_type=event_type: x.count(event_type, within=d),
            )
    for a, b in window_pairs(w):
        add(
            f"orders_trend_{a}d_{b}d",
            "float32",
            "frequency",
            f"daily order rate over {a} days / over {b} days (NaN: no order in {b} days)",
            NAN,
            lambda x, a=a, b=b: ratio(
                x.orders.count(within=a), x.orders.count(within=b), NAN, scale=b / a
            ),
        )
    for a, b in window_pairs(w):
        add(
            f"engagements_trend_{a}d_{b}d",
            "float32",
            "frequency",
            f"daily engagement rate over {a} days / over {b} days (NaN: none in {b} days)",
            NAN,
            lambda x, a=a, b=b: ratio(
                x.count(ENGAGEMENT_TYPES, within=a),
                x.count(ENGAGEMENT_TYPES, within=b),
                NAN,
                scale=b / a,
            ),
        )
    add(
        "purchase_gap_mean",
        "float32",
        "frequency",
        "mean days between consecutive purchase days (NaN: fewer than 2 purchase days)",
        NAN,
        lambda x: x.orders.gap_mean,
    )
    add(
        "purchase_gap_std",
        "float32",
        "frequency",
        "standard deviation of days between purchase days (NaN: fewer than 2 purchase days)",
        NAN,
        lambda x: x.orders.gap_std,
    )
    add(
        "purchase_overdue",
        "float32",
        "frequency",
        "days since the last purchase / the usual gap (NaN: fewer than 2 purchase days)",
        NAN,
        lambda x: ratio(x.days_since("purchase"), np.nan_to_num(x.orders.gap_mean), NAN),
    )
    # Monetary
    for d in w:
        add(
            f"spend_{d}d",
            "float32",
            "monetary",
            f"purchase amount in the last {d} days",
            0.0,
            lambda x, d=d: x.money.spend(within=d),
        )
    for d in w:
        add(
            f"aov_{d}d",
            "float32",
            "monetary",
            f"average order value in the last {d} days (NaN: no order)",
            NAN,
            lambda x, d=d: ratio(x.money.spend(within=d), x.orders.count(within=d), NAN),
        )
    for d in w:
        add(
            f"return_share_{d}d",
            "float32",
            "monetary",
            f"amount returned / amount spent in the last {d} days (0: no spend)",
            0.0,
            lambda x, d=d: ratio(x.money.refunds(within=d), x.money.spend(within=d), 0.0),
        )
    for d in w:
        add(
            f"discount_share_{d}d",
            "float32",
            "monetary",
            f"discount / (amount + discount) on purchases in the last {d} days (0: no spend)",
            0.0,
            lambda x, d=d: ratio(
                x.money.discount(within=d),
                x.money.spend(within=d) + x.money.discount(within=d),
                0.0,
            ),
        )
    # Channel mix (over the lookback)
    for ch in SALES_CHANNELS:
        add(
            f"share_purchases_{ch}",
            "float32",
            "channel_mix",
            f"share of orders placed on {ch}",
            0.0,
            lambda x, ch=ch: ratio(x.orders.count(channels=(ch,)), x.orders.count(), 0.0),
        )
    add(
        "share_purchases_online",
        "float32",
        "channel_mix",
        "share of orders placed on web or app",
        0.0,
        lambda x: ratio(x.orders.count(channels=ONLINE_CHANNELS), x.orders.count(), 0.0),
    )
    add(
        "share_purchases_bopis",
        "float32",
        "channel_mix",
        "share of web / app orders picked up in a store",
        0.0,
        lambda x: ratio(x.orders.count(bopis=True), x.orders.count(channels=ONLINE_CHANNELS), 0.0),
    )
    for ch in CHANNELS:
        add(
            f"share_engagements_{ch}",
            "float32",
            "channel_mix",
            f"share of engagements on {ch}",
            0.0,
            lambda x, ch=ch: ratio(
                x.count(ENGAGEMENT_TYPES, channels=(ch,)), x.count(ENGAGEMENT_TYPES), 0.0
            ),
        )
    add(
        "n_channels",
        "int8",
        "channel_mix",
        "channels with a purchase or engagement in the lookback",
        0,
        lambda x: x.channels_used(ACTIVE_TYPES),
    )
    for ch in OUTREACH_CHANNELS:
        add(
            f"messages_{ch}",
            "int32",
            "channel_mix",
            f"{ch} messages received",
            0,
            lambda x, ch=ch: x.count("message_sent", channels=(ch,)),
        )
    for ch in OUTREACH_CHANNELS:
        for resp in RESPONSES:
            add(
                f"{resp}_rate_{ch}",
                "float32",
                "channel_mix",
                f"{ch} {resp}s / {ch} messages received, can exceed 1 (NaN: no message)",
                NAN,
                lambda x, ch=ch, resp=resp: ratio(
                    x.count(resp, channels=(ch,)), x.count("message_sent", channels=(ch,)), NAN
                ),
            )
    # Store visits
    for d in w:
        add(
            f"store_visits_{d}d",
            "int32",
            "store",
            f"store visits (customer, store, day) in the last {d} days",
            0,
            lambda x, d=d: x.store_visits.count(within=d),
        )
    add(
        "distinct_stores",
        "int32",
        "store",
        "distinct stores visited",
        0,
        lambda x: x.store_visits.distinct_stores,
    )
    add(
        "home_store_share",
        "float32",
        "store",
        "share of store visits at the home store",
        0.0,
        lambda x: ratio(x.store_visits.at_home, x.store_visits.count(), 0.0),
    )
    add(
        "weekend_visit_share",
        "float32",
        "store",
        "share of store visits on a Saturday or Sunday (UTC)",
        0.0,
        lambda x: ratio(x.store_visits.on_weekends, x.store_visits.count(), 0.0),
    )
    # Customer attributes (from the customers table)
    add(
        "tenure_days",
        "float32",
        "customer",
        "days since signup (NaN: unknown)",
        NAN,
        lambda x: x.attributes.tenure_days,
    )
    add(
        "loyalty_tier",
        "int8",
        "customer",
        "loyalty tier: " + ", ".join(f"{i} {t}" for i, t in enumerate(LOYALTY_TIERS)),
        -1,
        lambda x: x.attributes.loyalty_tier,
    )
    for ch in OUTREACH_CHANNELS:
        add(
            f"consent_{ch}",
            "bool",
            "customer",
            f"may be contacted by {ch}",
            False,
            lambda x, ch=ch: x.attributes.consent[ch],
        )
    # Repeat-purchase summary in the lookback: what BG/NBD reads (x = purchase_days - 1,
    # t_x = purchase_span_days, T = days_since_first_purchase), so the churn model can
    # apply its stored BG/NBD to any feature table (issue 16).
    add(
        "purchase_days",
        "int32",
        "frequency",
        "distinct days with an order in the lookback",
        0,
        lambda x: x.orders.purchase_days,
    )
    add(
        "purchase_span_days",
        "int32",
        "frequency",
        "days from the first to the last purchase day in the lookback (0: fewer than 2)",
        0,
        lambda x: x.orders.purchase_span_days,
    )
    add(
        "days_since_first_purchase",
        "float32",
        "recency",
        "days since the first purchase in the lookback",
        lookback,
        lambda x: k_days(x.orders.first_purchase_age, lookback),
    )
    return tuple(f)


def item_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[Feature, ...]:
    """Product-side columns (popularity per window, overall or per store / region).

    Each ``compute`` takes the :class:`~features.item_features.Lines` ``x`` (the cut's
    purchase and view lines, grouped per product or per place and product).
    """
    w = check_windows(windows)
    f: list[Feature] = []
    for name, desc, per_window in (
        ("orders", "order lines", lambda x, d: x.count("purchase", within=d)),
        ("units", "units sold", lambda x, d: x.units(within=d)),
        ("views", "views", lambda x, d: x.count("view", within=d)),
    ):
        f += [
            Feature(
                f"{name}_{d}d",
                "int32",
                "item",
                f"{desc} in the last {d} days",
                0,
                lambda x, d=d, per_window=per_window: per_window(x, d),
            )
            for d in w
        ]
    f += [
        Feature(
            "buyers", "int32", "item", "distinct customers who bought it", 0, lambda x: x.buyers
        ),
        Feature(
            "repurchase_rate",
            "float32",
            "item",
            "share of its buyers who bought it on two or more days (NaN: no buyer)",
            NAN,
            lambda x: ratio(x.repeat_buyers, x.buyers, NAN),
        ),
        Feature(
            "days_since_last_sold",
            "float32",
            "item",
            "days since it was last bought",
            float(w[-1]),
            lambda x: x.days_since_last_purchase(),
        ),
    ]
    return tuple(f)


def customer_item_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[Feature, ...]:
    """Customer-by-product columns: one row per product a customer bought.

    Each ``compute`` takes the :class:`~features.item_features.Lines` ``x`` (the cut's
    purchase lines of known customers, grouped per customer and product).
    """
    lookback = float(check_windows(windows)[-1])
    return (
        Feature(
            "times_bought",
            "int32",
            "item",
            "order lines of the product",
            0,
            lambda x: x.count("purchase"),
        ),
        Feature(
            "days_bought",
            "int32",
            "item",
            "distinct days the customer bought it",
            0,
            lambda x: x.purchase_days,
        ),
        Feature("units_bought", "int32", "item", "units bought", 0, lambda x: x.units()),
        Feature(
            "days_since_last_bought",
            "float32",
            "item",
            "days since the customer last bought it",
            lookback,
            lambda x: x.days_since_last_purchase(),
        ),
    )


TABLES = {
    "customer": customer_features,
    "item": item_features,
    "customer_item": customer_item_features,
}
TABLE_TITLES = {
    "customer": "Customer features: one row per customer (`build_customer_features`)",
    "item": "Item features: one row per product, or per store / region and product "
    "(`build_item_features`)",
    "customer_item": "Customer x item features: one row per product a customer bought "
    "(`build_customer_item_features`)",
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


def features_markdown(windows: Sequence[int] = DEFAULT_WINDOWS) -> str:
    """Every table's features as Markdown (``omni features list --markdown``; the docs)."""
    lines = [
        "<!-- generated by `omni features list --markdown` from features/registry.py -->",
        "# Feature list",
        "",
        f"Windows: {', '.join(f'{d} days' for d in check_windows(windows))}. The missing "
        "value is what a row with no relevant events in the lookback gets.",
    ]
    for table, spec in TABLES.items():
        lines += ["", f"## {TABLE_TITLES[table]}", ""]
        lines += ["| name | dtype | family | missing | description |", "|---|---|---|---|---|"]
        for f in spec(windows):
            lines.append(
                f"| `{f.name}` | {f.dtype} | {f.family} | {format_missing(f.missing)} "
                f"| {f.description} |"
            )
    return "\n".join(lines) + "\n"
