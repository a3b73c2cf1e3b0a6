"""A slow, obvious pandas implementation of every customer feature, for tests only.

It follows the definitions in features/registry.py one groupby at a time, without any
of the builder's tricks (codes, bincounts, bands, sorts), so that the fast builder can
be checked against it on random event logs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract.schema import CHANNELS, CUSTOMERS, EVENTS, ONLINE_CHANNELS, OUTREACH_CHANNELS
from features.contract.schema import as_contract_frame as contract
from features.registry import ENGAGEMENT_TYPES, SALES_CHANNELS, customer_features, window_pairs

DAY = 86_400


def reference_features(events, customers, as_of, windows=(7, 30, 90, 365)) -> pd.DataFrame:
    """Customer features as of ``as_of``, computed the plain way."""
    spec = customer_features(windows)
    windows = sorted(windows)
    lookback = windows[-1]
    t = pd.Timestamp(as_of)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    ev = contract(events, EVENTS)
    ev = ev[ev["customer_id"].notna()].copy()
    ev["age"] = (t - ev["ts"]) // pd.Timedelta(seconds=1)
    ev = ev[(ev["ts"] < t) & (ev["ts"] > t - pd.Timedelta(days=lookback))].copy()
    ev["day"] = ev["age"] // DAY
    ev["channel"] = ev["channel"].astype(str)
    ev["event_type"] = ev["event_type"].astype(str)
    ev["purchase"] = ev["event_type"] == "purchase"
    ev["engage"] = ev["event_type"].isin(ENGAGEMENT_TYPES)
    ev["active"] = ev["purchase"] | ev["engage"]
    cust = contract(customers, CUSTOMERS) if customers is not None else None
    members = set(ev["customer_id"])
    if cust is not None and len(cust):
        ok = cust["signup_ts"].isna() | (cust["signup_ts"] < t) if "signup_ts" in cust else True
        members |= set(cust.loc[ok, "customer_id"])
    index = pd.Index(sorted(members), name="customer_id", dtype="str")
    out: dict[str, object] = {}

    def per_customer(frame: pd.DataFrame, fn, fill) -> pd.Series:
        if len(frame) == 0:
            return pd.Series(fill, index=index, dtype=float)
        return frame.groupby("customer_id").apply(fn).reindex(index).fillna(fill)

    def count(mask, w=None) -> pd.Series:
        sel = ev[mask] if w is None else ev[mask & (ev["day"] < w)]
        return sel.groupby("customer_id").size().reindex(index, fill_value=0)

    def recency(mask) -> pd.Series:
        sel = ev[mask]
        return (sel.groupby("customer_id")["age"].min() / DAY).reindex(index).fillna(lookback)

    # recency
    out["days_since_last_purchase"] = recency(ev["purchase"])
    out["days_since_last_engagement"] = recency(ev["engage"])
    out["days_since_last_store_visit"] = recency(ev["active"] & (ev["channel"] == "store"))
    out["days_since_last_online"] = recency(ev["active"] & ev["channel"].isin(ONLINE_CHANNELS))
    for ch in CHANNELS:
        out[f"days_since_last_{ch}"] = recency(ev["active"] & (ev["channel"] == ch))
    # orders: (customer, order_id), or (customer, ts) when the line has no order_id
    lines = ev[ev["purchase"]].copy()
    if "order_id" not in lines:
        lines["order_id"] = None
    lines["okey"] = np.where(
        lines["order_id"].notna(),
        "id:" + lines["order_id"].astype(str),
        "ts:" + lines["ts"].astype(str),
    )
    lines["chcode"] = lines["channel"].map({c: i for i, c in enumerate(CHANNELS)})
    store_ids = lines["store_id"] if "store_id" in lines else pd.Series(None, index=lines.index)
    lines["picked"] = lines["channel"].isin(ONLINE_CHANNELS) & store_ids.notna()
    orders = (
        lines.groupby(["customer_id", "okey"])
        .agg(age=("age", "min"), ch=("chcode", "min"), bopis=("picked", "any"))
        .reset_index()
    )
    orders["day"] = orders["age"] // DAY
    orders["channel"] = orders["ch"].map(dict(enumerate(CHANNELS)))

    def n_orders(mask=None) -> pd.Series:
        sel = orders if mask is None else orders[mask]
        return sel.groupby("customer_id").size().reindex(index, fill_value=0)

    for w in windows:
        out[f"orders_{w}d"] = n_orders(orders["day"] < w)
    online = ev[ev["active"] & ev["channel"].isin(ONLINE_CHANNELS)]
    for w in windows:
        sel = online[online["day"] < w]
        out[f"online_days_{w}d"] = (
            sel.groupby("customer_id")["day"].nunique().reindex(index, fill_value=0)
        )
    for w in windows:
        out[f"views_{w}d"] = count(ev["event_type"] == "view", w)
    for w in windows:
        out[f"engagements_{w}d"] = count(ev["engage"], w)
    for name, et in (("messages", "message_sent"), ("opens", "open"), ("clicks", "click")):
        for w in windows:
            out[f"{name}_{w}d"] = count(ev["event_type"] == et, w)

    def rate(num, den, scale=1.0, undefined=np.nan):
        num, den = num.astype(float), den.astype(float)
        return (scale * num / den.where(den != 0)).fillna(undefined).where(den != 0, undefined)

    for what in ("orders", "engagements"):
        for a, b in window_pairs(windows):
            out[f"{what}_trend_{a}d_{b}d"] = rate(out[f"{what}_{a}d"], out[f"{what}_{b}d"], b / a)
    # gaps between distinct purchase (order) days
    pdays = orders[["customer_id", "day"]].drop_duplicates().sort_values(["customer_id", "day"])
    pdays["gap"] = pdays.groupby("customer_id")["day"].diff()
    gaps = pdays.dropna(subset=["gap"])
    mean = gaps.groupby("customer_id")["gap"].mean().reindex(index)
    std = gaps.groupby("customer_id")["gap"].std(ddof=0).reindex(index)
    out["purchase_gap_mean"] = mean
    out["purchase_gap_std"] = std
    out["purchase_overdue"] = out["days_since_last_purchase"] / mean.where(mean != 0)
    # BG/NBD's summary (issue 16): distinct purchase days, first to last day, first order's age
    by_customer = pdays.groupby("customer_id")["day"]
    out["purchase_days"] = by_customer.size().reindex(index, fill_value=0)
    span = by_customer.max() - by_customer.min()
    out["purchase_span_days"] = span.reindex(index, fill_value=0)
    first = orders.groupby("customer_id")["age"].max() / DAY
    out["days_since_first_purchase"] = first.reindex(index).fillna(lookback)
    # money
    lines["amt"] = lines["amount"].fillna(0.0) if "amount" in lines else 0.0
    lines["disc"] = lines["discount"].fillna(0.0) if "discount" in lines else 0.0
    rets = ev[ev["event_type"] == "return"].copy()
    rets["refund"] = -rets["amount"].fillna(0.0) if "amount" in rets else 0.0
    for w in windows:
        lw = lines[lines["day"] < w].groupby("customer_id")
        spend = lw["amt"].sum().reindex(index, fill_value=0.0)
        disc = lw["disc"].sum().reindex(index, fill_value=0.0)
        refund = rets[rets["day"] < w].groupby("customer_id")["refund"].sum()
        refund = refund.reindex(index, fill_value=0.0)
        out[f"spend_{w}d"] = spend
        out[f"aov_{w}d"] = rate(spend, out[f"orders_{w}d"])
        out[f"return_share_{w}d"] = rate(refund, spend, undefined=0.0)
        out[f"discount_share_{w}d"] = rate(disc, spend + disc, undefined=0.0)
    # channel mix
    total = n_orders()
    for ch in SALES_CHANNELS:
        out[f"share_purchases_{ch}"] = rate(n_orders(orders["channel"] == ch), total, undefined=0.0)
    n_online = n_orders(orders["channel"].isin(ONLINE_CHANNELS))
    out["share_purchases_online"] = rate(n_online, total, undefined=0.0)
    out["share_purchases_bopis"] = rate(n_orders(orders["bopis"]), n_online, undefined=0.0)
    engaged = count(ev["engage"])
    for ch in CHANNELS:
        out[f"share_engagements_{ch}"] = rate(
            count(ev["engage"] & (ev["channel"] == ch)), engaged, undefined=0.0
        )
    used = ev[ev["active"]].groupby("customer_id")["channel"].nunique()
    out["n_channels"] = used.reindex(index, fill_value=0)
    for ch in OUTREACH_CHANNELS:
        out[f"messages_{ch}"] = count((ev["event_type"] == "message_sent") & (ev["channel"] == ch))
    for ch in OUTREACH_CHANNELS:
        sent = out[f"messages_{ch}"]
        for resp in ("open", "click", "redeem"):
            got = count((ev["event_type"] == resp) & (ev["channel"] == ch))
            out[f"{resp}_rate_{ch}"] = rate(got, sent)
    # store visits: distinct (customer, store, day) of store purchases / engagements
    st = ev[ev["active"] & (ev["channel"] == "store")].copy()
    st["store"] = st["store_id"].astype(object).fillna("?") if "store_id" in st else "?"
    st["weekend"] = st["ts"].dt.day_of_week >= 5
    visits = st.groupby(["customer_id", "store", "day"])["weekend"].min().reset_index()
    for w in windows:
        sel = visits[visits["day"] < w]
        out[f"store_visits_{w}d"] = sel.groupby("customer_id").size().reindex(index, fill_value=0)
    known = visits[visits["store"] != "?"]
    out["distinct_stores"] = (
        known.groupby("customer_id")["store"].nunique().reindex(index, fill_value=0)
    )
    n_visits = out[f"store_visits_{lookback}d"]
    home = (
        cust.set_index("customer_id")["home_store_id"]
        if cust is not None and "home_store_id" in cust
        else pd.Series(dtype=object)
    )
    at_home = visits["store"].to_numpy() == visits["customer_id"].map(home).to_numpy()
    home_visits = visits[at_home].groupby("customer_id").size().reindex(index, fill_value=0)
    out["home_store_share"] = rate(home_visits, n_visits, undefined=0.0)
    wk = visits[visits["weekend"]].groupby("customer_id").size().reindex(index, fill_value=0)
    out["weekend_visit_share"] = rate(wk, n_visits, undefined=0.0)
    # attributes
    c = cust.set_index("customer_id") if cust is not None else pd.DataFrame(index=[])
    c = c.reindex(index)
    if "signup_ts" in c:
        out["tenure_days"] = (t - c["signup_ts"]) / pd.Timedelta(days=1)
    else:
        out["tenure_days"] = np.nan
    tiers = {"none": 0, "bronze": 1, "silver": 2, "gold": 3}
    tier = c["loyalty_tier"].astype(object).map(tiers) if "loyalty_tier" in c else None
    out["loyalty_tier"] = -1 if tier is None else tier.fillna(-1)
    for ch in OUTREACH_CHANNELS:
        col = f"consent_{ch}"
        out[col] = c[col].astype(object).fillna(False).astype(bool) if col in c else False
    frame = pd.DataFrame({f.name: out[f.name] for f in spec}, index=index)
    return frame.astype({f.name: f.dtype for f in spec})
