"""Labels read only events at or after the cutoff: what happened next, never what came before.

- churn: a customer who purchased in the lookback before the cutoff makes no purchase in
  the horizon after it;
- next best channel: the channel that carried the customer's next conversion: the channel
  of the last engagement in the attribution window (default 7 days) before the next
  purchase, or the purchase's own channel when there was none.

Features are built from events before the cutoff (``ts < as_of``), labels from events
at or after it (``ts >= as_of``). Which customers get a churn label needs to know who was
active before the cutoff: that is passed in as the feature table's purchase recency, or
read here from the lookback with the same strict ``ts < as_of`` rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.cutoffs import to_utc

ENGAGEMENT_TYPES: tuple[str, ...] = (
    "open",
    "click",
    "redeem",
    "store_visit",
    "view",
    "add_to_cart",
)
"""Events that show a customer engaging through a channel (message_sent is not one)."""


def _check_days(**days: int) -> None:
    for name, value in days.items():
        if value <= 0:
            raise ValueError(f"{name} must be a positive number of days, got {value}")


def churn_labels(
    events: pd.DataFrame,
    as_of: str | pd.Timestamp,
    lookback_days: int = 90,
    horizon_days: int = 60,
) -> pd.DataFrame:
    """One row per customer who purchased in [as_of - lookback, as_of): churned = 1 when
    they make no purchase in [as_of, as_of + horizon).

    Returns columns customer_id, as_of, churned (int8). The population reads events
    before the cutoff (who was active), the label only events at or after it.
    """
    _check_days(lookback_days=lookback_days, horizon_days=horizon_days)
    t = to_utc(as_of)
    purchase = (events["event_type"] == "purchase").to_numpy()
    ts = events["ts"]
    before = purchase & ((ts >= t - pd.Timedelta(days=lookback_days)) & (ts < t)).to_numpy()
    after = purchase & ((ts >= t) & (ts < t + pd.Timedelta(days=horizon_days))).to_numpy()
    active = pd.unique(events["customer_id"].to_numpy()[before])
    bought_again = pd.unique(events["customer_id"].to_numpy()[after])
    active = np.sort(np.asarray(active, dtype=object).astype(str))
    churned = ~np.isin(active, np.asarray(bought_again, dtype=object).astype(str))
    return pd.DataFrame({"customer_id": active, "as_of": t, "churned": churned.astype(np.int8)})


def next_channel_labels(
    events: pd.DataFrame,
    as_of: str | pd.Timestamp,
    horizon_days: int = 60,
    attribution_days: int = 7,
) -> pd.DataFrame:
    """For each customer with a purchase in [as_of, as_of + horizon): the channel of the
    last engagement in the ``attribution_days`` before that first purchase (strictly
    before it, and never before the cutoff); else the purchase's own channel.

    Returns customer_id, as_of, next_purchase_ts, channel, source ("engagement" or
    "purchase").
    """
    _check_days(horizon_days=horizon_days, attribution_days=attribution_days)
    t = to_utc(as_of)
    end = t + pd.Timedelta(days=horizon_days)
    window = events[(events["ts"] >= t) & (events["ts"] < end)]
    cols = ["customer_id", "ts", "channel"]
    purchases = window.loc[window["event_type"] == "purchase", cols]
    purchases = purchases.assign(customer_id=purchases["customer_id"].astype(str))
    first = purchases.sort_values(["customer_id", "ts"], kind="stable").drop_duplicates(
        "customer_id"
    )
    engaged = window.loc[window["event_type"].isin(ENGAGEMENT_TYPES), cols]
    engaged = engaged.assign(customer_id=engaged["customer_id"].astype(str))
    engaged = engaged.rename(columns={"channel": "engaged_channel", "ts": "engaged_ts"})
    # Last engagement strictly before the purchase, within the attribution window. A store
    # basket's own visit shares its timestamp and is part of the conversion, not what led
    # to it: it is not counted (the purchase's own channel is the fallback anyway).
    joined = pd.merge_asof(
        first.sort_values("ts"),
        engaged.sort_values("engaged_ts"),
        left_on="ts",
        right_on="engaged_ts",
        by="customer_id",
        direction="backward",
        tolerance=pd.Timedelta(days=attribution_days),
        allow_exact_matches=False,
    )
    has_engagement = joined["engaged_channel"].notna()
    channel = joined["engaged_channel"].astype(object).where(has_engagement, joined["channel"])
    out = pd.DataFrame(
        {
            "customer_id": joined["customer_id"].to_numpy(),
            "as_of": t,
            "next_purchase_ts": joined["ts"].to_numpy(),
            "channel": channel.astype(str).to_numpy(),
            "source": np.where(has_engagement, "engagement", "purchase"),
        }
    )
    return out.sort_values("customer_id", ignore_index=True)


def purchased_within(
    moments: pd.DataFrame, purchases: pd.DataFrame, window: pd.Timedelta
) -> np.ndarray:
    """bool per row of ``moments`` (customer_id, at): the customer's first purchase at or
    after ``at`` (``purchases``: customer_id, ts) came before ``at + window``. An as-of
    join, forward, by customer: what a contact or a holdout decision is credited with."""
    left = moments[["customer_id", "at"]].reset_index(drop=True)
    left = left.assign(_row=np.arange(len(left)), at=pd.to_datetime(left["at"], utc=True))
    left = left.sort_values("at", kind="stable")
    right = purchases[["customer_id", "ts"]].rename(columns={"ts": "bought_at"})
    right = right.assign(bought_at=pd.to_datetime(right["bought_at"], utc=True))
    right = right.assign(at=right["bought_at"]).sort_values("at", kind="stable")
    joined = pd.merge_asof(
        left.astype({"customer_id": str}),
        right.astype({"customer_id": str}),
        on="at",
        by="customer_id",
        direction="forward",
    )
    hit = joined["bought_at"].notna() & (joined["bought_at"] < joined["at"] + window)
    out = np.zeros(len(left), bool)
    out[joined["_row"].to_numpy()] = hit.to_numpy()
    return out
