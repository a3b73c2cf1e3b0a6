"""Triggers: which customers a journey fires for as of ``as_of``, from the events before it
and the scores (docs/journeys.md, "Triggers").

One vectorised Polars (or pandas, for score triggers) rule per trigger kind of
:mod:`serving.journeys.spec`; every rule reads only events with ``ts < as_of`` (point in
time) and returns a *trigger frame*: ``customer_id``, ``journey``, ``trigger_ts``,
``trigger_products``, at most one row per customer (the latest trigger).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from serving.journeys.spec import (
    BrowseAbandoned,
    CartAbandoned,
    ChurnRisk,
    FirstStoreVisit,
    Journey,
    Purchased,
    PurchaseOverdue,
)
from serving.rules import RISK_BANDS

COLUMNS = ["customer_id", "ts", "channel", "event_type", "product_id"]
"""The event columns triggers read."""
TRIGGER_COLUMNS = ["customer_id", "journey", "trigger_ts", "trigger_products"]
STORE_CHANNEL = "store"
_US = pl.Datetime("us", "UTC")


# --------------------------------------------------------------------------- helpers


def _utc(as_of: pd.Timestamp | str) -> pd.Timestamp:
    t = pd.Timestamp(as_of)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def trigger_events(events: pl.DataFrame | pa.Table | pd.DataFrame) -> pl.DataFrame:
    """The trigger columns of contract events (pandas, Arrow or Polars) with a customer
    id, as plain strings and microsecond UTC times (category columns of the store become
    strings): what the rules read, and what the live journeys keep."""
    names = events.column_names if isinstance(events, pa.Table) else list(events.columns)
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ValueError(f"events lack the columns {missing} that triggers read")
    if isinstance(events, pd.DataFrame):
        events = pa.Table.from_pandas(events[COLUMNS], preserve_index=False)
    frame = events if isinstance(events, pl.DataFrame) else pl.from_arrow(events.select(COLUMNS))
    assert isinstance(frame, pl.DataFrame)
    return frame.select(
        pl.col("customer_id").cast(pl.String),
        pl.col("ts").cast(_US),
        *(pl.col(c).cast(pl.String) for c in ("channel", "event_type", "product_id")),
    ).filter(pl.col("customer_id").is_not_null() & (pl.col("customer_id") != ""))


def _prepared(events: pl.DataFrame | pa.Table | pd.DataFrame, as_of: pd.Timestamp) -> pl.LazyFrame:
    """:func:`trigger_events` before ``as_of``."""
    return trigger_events(events).lazy().filter(pl.col("ts") < as_of.to_pydatetime())


def _products(rows: pl.LazyFrame) -> pl.LazyFrame:
    """customer_id -> trigger_products: the distinct non-null products of ``rows``,
    latest first."""
    return (
        rows.filter(pl.col("product_id").is_not_null())
        .group_by("customer_id", "product_id")
        .agg(pl.col("ts").max())
        .sort(["customer_id", "ts", "product_id"], descending=[False, True, False])
        .group_by("customer_id", maintain_order=True)
        .agg(pl.col("product_id").alias("trigger_products"))
    )


def _latest_with_products(
    rows: pl.LazyFrame, product_rows: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """One row per customer: the latest ``ts`` of ``rows`` as trigger_ts, with the products
    of ``product_rows`` (default: ``rows``)."""
    latest = rows.group_by("customer_id").agg(pl.col("ts").max().alias("trigger_ts"))
    products = _products(rows if product_rows is None else product_rows)
    return latest.join(products, on="customer_id", how="left")


def _hours(h: float) -> pd.Timedelta:
    return pd.Timedelta(hours=h)


# --------------------------------------------------------------------------- event rules


def cart_abandoned(events: pl.LazyFrame, rule: CartAbandoned, as_of: pd.Timestamp) -> pl.LazyFrame:
    """An ``add_to_cart`` at ``t`` with ``as_of - lookback <= t`` and ``t + within <= as_of``
    and no purchase by the customer in ``(t, t + within]``; a carted product the customer
    bought after ``t`` (before ``as_of``) is not abandoned. Fires at the latest abandoned
    cart; products: the abandoned carts' products, latest first."""
    within = _hours(rule.within_hours)
    start = (as_of - _hours(rule.lookback_hours)).to_pydatetime()
    settled = (as_of - within).to_pydatetime()
    carts = events.filter(
        (pl.col("event_type") == "add_to_cart")
        & (pl.col("ts") >= start)
        & (pl.col("ts") <= settled)
    ).select("customer_id", "ts", "product_id")
    purchases = events.filter(pl.col("event_type") == "purchase").select(
        "customer_id", "ts", "product_id"
    )
    # the customer's first purchase strictly after each cart (as-of join on t + 1 µs)
    after = pl.col("ts") + pl.duration(microseconds=1)
    first_after = (
        carts.with_columns(after.alias("_from"))
        .sort("_from")
        .join_asof(
            purchases.select("customer_id", pl.col("ts").alias("_bought")).sort("_bought"),
            left_on="_from",
            right_on="_bought",
            by="customer_id",
            strategy="forward",
            check_sortedness=False,  # sorted by time overall, so within each customer
        )
    )
    kept = first_after.filter(
        pl.col("_bought").is_null()
        | (pl.col("_bought") > pl.col("ts") + pl.duration(hours=rule.within_hours))
    ).drop("_from", "_bought")
    # the same product bought after the cart: not abandoned
    bought_since = (
        kept.join(purchases, on=["customer_id", "product_id"], how="inner", suffix="_p")
        .filter(pl.col("ts_p") > pl.col("ts"))
        .select("customer_id", "ts", "product_id")
        .unique()
    )
    abandoned = kept.join(
        bought_since, on=["customer_id", "ts", "product_id"], how="anti", nulls_equal=False
    )
    return _latest_with_products(abandoned)


def browse_abandoned(
    events: pl.LazyFrame, rule: BrowseAbandoned, as_of: pd.Timestamp
) -> pl.LazyFrame:
    """At least ``min_views`` product views after the customer's last cart or purchase
    (and within ``lookback``), the last of them at ``L`` with ``L + within <= as_of``
    (browsing has settled) and no cart or purchase since. Fires at ``L``; products: the
    viewed ones, latest first."""
    start = (as_of - _hours(rule.lookback_hours)).to_pydatetime()
    settled = (as_of - _hours(rule.within_hours)).to_pydatetime()
    acted = (
        events.filter(pl.col("event_type").is_in(["add_to_cart", "purchase"]))
        .group_by("customer_id")
        .agg(pl.col("ts").max().alias("_acted"))
    )
    views = (
        events.filter(
            (pl.col("event_type") == "view")
            & pl.col("product_id").is_not_null()
            & (pl.col("ts") >= start)
        )
        .join(acted, on="customer_id", how="left")
        .filter(pl.col("_acted").is_null() | (pl.col("ts") > pl.col("_acted")))
        .select("customer_id", "ts", "product_id")
    )
    enough = (
        views.group_by("customer_id")
        .agg(pl.len().alias("_n"), pl.col("ts").max().alias("_last"))
        .filter((pl.col("_n") >= rule.min_views) & (pl.col("_last") <= settled))
        .select("customer_id")
    )
    return _latest_with_products(views.join(enough, on="customer_id", how="semi"))


def first_store_visit(
    events: pl.LazyFrame, rule: FirstStoreVisit, as_of: pd.Timestamp
) -> pl.LazyFrame:
    """The customer's first ever store-channel event is within ``[as_of - lookback, as_of)``
    (``events`` must hold every store event before ``as_of``). Fires at it; no products."""
    start = (as_of - _hours(rule.lookback_hours)).to_pydatetime()
    return (
        events.filter(pl.col("channel") == STORE_CHANNEL)
        .group_by("customer_id")
        .agg(pl.col("ts").min().alias("trigger_ts"))
        .filter(pl.col("trigger_ts") >= start)
        .with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("trigger_products"))
    )


def purchased(events: pl.LazyFrame, rule: Purchased, as_of: pd.Timestamp) -> pl.LazyFrame:
    """A purchase in ``[as_of - after - lookback, as_of - after)``. Fires at the latest;
    products: those purchased in that window, latest first."""
    end = as_of - pd.Timedelta(days=rule.after_days)
    start = end - pd.Timedelta(days=rule.lookback_days)
    rows = events.filter(
        (pl.col("event_type") == "purchase")
        & (pl.col("ts") >= start.to_pydatetime())
        & (pl.col("ts") < end.to_pydatetime())
    )
    return _latest_with_products(rows)


EVENT_RULES: dict[str, Callable[..., pl.LazyFrame]] = {
    "cart_abandoned": cart_abandoned,
    "browse_abandoned": browse_abandoned,
    "first_store_visit": first_store_visit,
    "purchase": purchased,
}


# --------------------------------------------------------------------------- score rules


def threshold(rule: ChurnRisk) -> float:
    """The churn probability at which ``rule`` counts a customer in: ``min_probability``,
    else the lower edge of its band in :data:`serving.rules.RISK_BANDS`."""
    if rule.min_probability is not None:
        return rule.min_probability
    edges = [0.0] + [bound for bound, _ in RISK_BANDS]
    names = [name for _, name in RISK_BANDS]
    return edges[names.index(rule.band)]


def churn_risk(rule: ChurnRisk, churn: pd.Series, previous_churn: pd.Series | None) -> pd.DataFrame:
    """Customers whose churn probability (``churn``, indexed by customer_id) is at or
    above the threshold now and was not in ``previous_churn`` (below, NaN or absent);
    without ``previous_churn`` every customer at or above it."""
    limit = threshold(rule)
    now = pd.to_numeric(churn, errors="coerce").to_numpy(dtype=np.float64) >= limit
    if previous_churn is not None:
        before = previous_churn.reindex(churn.index).to_numpy(dtype=np.float64) >= limit
        now &= ~before
    return pd.DataFrame({"customer_id": churn.index[now].astype(str)})


def _feature_ids(features: pd.DataFrame) -> pd.Index:
    if "customer_id" in features.columns:
        return pd.Index(features["customer_id"].astype(str))
    return pd.Index(features.index.astype(str))


def purchase_overdue(rule: PurchaseOverdue, features: pd.DataFrame) -> pd.DataFrame:
    """Customers whose ``purchase_overdue`` reached ``min_ratio`` within the last day:
    at least ``min_ratio`` now, below it a day earlier (``purchase_overdue -
    1 / purchase_gap_mean``), so a daily evaluation fires once per lapse, not every day."""
    overdue = features["purchase_overdue"].to_numpy(dtype=np.float64)
    gap = features["purchase_gap_mean"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        yesterday = overdue - 1.0 / gap
    fire = (overdue >= rule.min_ratio) & (yesterday < rule.min_ratio)
    return pd.DataFrame({"customer_id": _feature_ids(features)[fire]})


# --------------------------------------------------------------------------- entry point


def empty_triggers() -> pd.DataFrame:
    """A trigger frame with no rows."""
    return _frame(pd.Series([], dtype="str"), "", pd.Series([], dtype="datetime64[us, UTC]"), [])


def _frame(ids: pd.Series, journey: str, ts: pd.Series, products: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype="str").reset_index(drop=True),
            "journey": pd.Series([journey] * len(ids), dtype="str"),
            "trigger_ts": pd.Series(ts, dtype="datetime64[us, UTC]").reset_index(drop=True),
            "trigger_products": pd.Series(products, dtype=object),
        }
    )


def find_triggers(
    journey: Journey,
    events: pl.DataFrame | pa.Table | pd.DataFrame,
    features: pd.DataFrame | None,
    as_of: pd.Timestamp,
    churn: pd.Series | None = None,
    previous_churn: pd.Series | None = None,
) -> pd.DataFrame:
    """The trigger frame of ``journey`` as of ``as_of``: customer_id, journey, trigger_ts,
    trigger_products, one row per customer, sorted by customer_id. ``events``: at least
    :data:`COLUMNS` (see :func:`events_for`); events at or after ``as_of`` are ignored.
    ``churn`` (indexed by customer_id) is needed by ``churn_risk`` journeys, ``features``
    by ``purchase_overdue`` ones."""
    as_of = _utc(as_of)
    rule = journey.trigger
    if rule.kind in EVENT_RULES:
        found = (
            EVENT_RULES[rule.kind](_prepared(events, as_of), rule, as_of)
            .sort("customer_id")
            .collect()
        )
        products = found["trigger_products"].fill_null(pl.lit([], dtype=pl.List(pl.String)))
        ts = found["trigger_ts"].to_pandas()
        return _frame(found["customer_id"].to_pandas(), journey.name, ts, products.to_list())
    if rule.kind == "churn_risk":
        if churn is None:
            raise ValueError(f"journey '{journey.name}': a churn_risk trigger needs churn scores")
        ids = churn_risk(rule, churn, previous_churn)["customer_id"]
    elif rule.kind == "purchase_overdue":
        if features is None:
            raise ValueError(f"journey '{journey.name}': a purchase_overdue trigger needs features")
        ids = purchase_overdue(rule, features)["customer_id"]
    else:  # a kind added to spec.py without a rule here
        raise NotImplementedError(f"no trigger rule for kind '{rule.kind}'")
    ids = ids.drop_duplicates().sort_values()
    ts = pd.Series([as_of] * len(ids), dtype="datetime64[us, UTC]")
    return _frame(ids, journey.name, ts, [[] for _ in range(len(ids))])


# --------------------------------------------------------------------------- reading


def lookback(journey: Journey) -> pd.Timedelta | None:
    """How far before ``as_of`` the journey's trigger reads events (None: none needed;
    ``first_store_visit`` also needs every earlier store event, see :func:`events_for`)."""
    rule = journey.trigger
    if isinstance(rule, (CartAbandoned, BrowseAbandoned, FirstStoreVisit)):
        return _hours(rule.lookback_hours)
    if isinstance(rule, Purchased):
        return pd.Timedelta(days=rule.after_days + rule.lookback_days)
    return None


EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "cart_abandoned": ("add_to_cart", "purchase"),
    "browse_abandoned": ("view", "add_to_cart", "purchase"),
    "purchase": ("purchase",),
    "first_store_visit": (),  # every store-channel event, whatever its type
}
"""The event types each event rule reads (besides ``first_store_visit``'s store events)."""


def events_for(
    journeys: Sequence[Journey], store_dir: Path | str, as_of: pd.Timestamp
) -> pl.DataFrame:
    """The events ``journeys``' triggers read from the events store, before ``as_of``:
    :data:`COLUMNS` of the event types they read within the longest lookback, plus every
    earlier store-channel event when a ``first_store_visit`` journey needs it; read with
    filter pushdown (months, types and columns), never the whole store."""
    import pyarrow.dataset as ds

    from features.store.events import events_dataset, month_key

    as_of = _utc(as_of)
    backs = [b for b in (lookback(j) for j in journeys) if b is not None]
    first_store = any(isinstance(j.trigger, FirstStoreVisit) for j in journeys)
    if not backs:
        return pl.DataFrame(schema={c: _US if c == "ts" else pl.String for c in COLUMNS})
    end = pa.scalar(as_of.to_pydatetime(), pa.timestamp("us", tz="UTC"))
    start_ts = as_of - max(backs)
    start = pa.scalar(start_ts.to_pydatetime(), pa.timestamp("us", tz="UTC"))
    types = sorted({t for j in journeys for t in EVENT_TYPES.get(j.trigger.kind, ())})
    recent = (ds.field("month") >= month_key(start_ts)) & (ds.field("ts") >= start)
    recent = recent & ds.field("event_type").cast(pa.string()).isin(types)
    if first_store:
        recent = recent | (ds.field("channel").cast(pa.string()) == STORE_CHANNEL)
    flt = (ds.field("month") <= month_key(as_of)) & (ds.field("ts") < end) & recent
    table = events_dataset(store_dir).to_table(columns=COLUMNS, filter=flt)
    return _prepared(table, as_of).collect()
