"""Attribution of events to the recommendations that showed their product, and the
click-through and conversion report built on it (``omni report recs``).

An impression is one product in one ``/recommend`` answer (a row of the recommendation
log). An event is attributed to it when it carries the answer's ``recommendation_id``,
names the same product, and happened from :data:`CLOCK_SKEW` before the answer to
``window`` after it. Each impression counts once per kind however many events it got:
clicked (a ``click`` or ``view``), carted (``add_to_cart``), bought (``purchase``, with
its amount as revenue).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CLICKS = ("click", "view")
CARTS = ("add_to_cart",)
PURCHASES = ("purchase",)
CLOCK_SKEW = pd.Timedelta(minutes=5)
"""How much earlier than the answer an attributed event may be stamped (the channel's
clock against the service's)."""
GROUPS = ("reason", "channel", "customer")
"""What the report is split by: the item's reason, the asking channel, warm or cold."""
NO_CHANNEL = "(none)"
"""The channel column of answers asked without a channel."""


def attributed(
    impressions: pd.DataFrame, events: pd.DataFrame, window: pd.Timedelta
) -> tuple[pd.DataFrame, int]:
    """``impressions`` (recommendation log rows) with ``clicked``, ``carted``, ``bought``
    (bool) and ``revenue`` (float); and how many of ``events`` (those carrying a
    ``recommendation_id``) matched no impression within its window."""
    keys = ["recommendation_id", "product_id"]
    shown = impressions[[*keys, "served_at"]].reset_index(names="impression")
    tagged = events.loc[events["recommendation_id"].notna(), [*keys, "ts", "event_type", "amount"]]
    pairs = tagged.reset_index(names="event").merge(shown, on=keys, how="inner")
    offset = pairs["ts"] - pairs["served_at"]
    pairs = pairs[(offset >= -CLOCK_SKEW) & (offset < window)]
    kind = pairs["event_type"].astype(str)
    pairs = pairs.assign(
        clicked=kind.isin(CLICKS),
        carted=kind.isin(CARTS),
        bought=kind.isin(PURCHASES),
        revenue=np.where(kind.isin(PURCHASES), pairs["amount"].fillna(0.0), 0.0),
    )
    per_impression = pairs.groupby("impression").agg(
        clicked=("clicked", "any"),
        carted=("carted", "any"),
        bought=("bought", "any"),
        revenue=("revenue", "sum"),
    )
    out = impressions.join(per_impression.reindex(np.arange(len(impressions))))
    flags = ["clicked", "carted", "bought"]
    out[flags] = out[flags].fillna(False).astype(bool)
    out["revenue"] = out["revenue"].fillna(0.0).astype(float)
    unmatched = len(tagged) - pairs["event"].nunique()
    return out, int(unmatched)


def recs_report(attributed_rows: pd.DataFrame, by: Sequence[str] = GROUPS) -> pd.DataFrame:
    """Impressions, clicks, click-through rate, carts, purchases, conversion rate and
    revenue per group of ``by`` (a subset of :data:`GROUPS`), biggest groups first, and a
    last row ``all`` over everything."""
    unknown = sorted(set(by) - set(GROUPS))
    if unknown:
        raise ValueError(f"cannot split by {', '.join(unknown)} (choose from {', '.join(GROUPS)})")
    rows = attributed_rows.assign(
        channel=attributed_rows["channel"].fillna(NO_CHANNEL),
        customer=np.where(attributed_rows["cold_start"], "cold", "warm"),
    )
    measures = {
        "impressions": ("product_id", "size"),
        "clicks": ("clicked", "sum"),
        "carts": ("carted", "sum"),
        "purchases": ("bought", "sum"),
        "revenue": ("revenue", "sum"),
    }
    total = rows.groupby(np.zeros(len(rows), np.int8)).agg(**measures)
    if list(by):
        table = rows.groupby(list(by), sort=False).agg(**measures).reset_index()
        table = table.sort_values(["impressions", *by], ascending=[False] + [True] * len(by))
        total[list(by)] = "all"
        table = pd.concat([table, total[table.columns]], ignore_index=True)
    else:
        table = total.reset_index(drop=True)
    shown = table["impressions"].where(table["impressions"] > 0)
    table["ctr"] = table["clicks"] / shown
    table["conversion"] = table["purchases"] / shown
    order = [*by, "impressions", "clicks", "ctr", "carts", "purchases", "conversion", "revenue"]
    return table[order].reset_index(drop=True)
