"""Views of the events store over time, for exploring the data (notebooks/explore_data).

Each view is built on the package's own definitions, so the plots show what the models
see: orders, channel shares and store visits are the customer features summed over
customers (:func:`features.training_sets.build_training_sets`), churn is the churn
model's label (:func:`features.labels.churn_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from features.cutoffs import to_utc
from features.labels import churn_labels
from features.registry import SALES_CHANNELS
from features.settings import Settings
from features.training_sets import build_training_sets


def ensure_events_store(
    settings: Settings,
    customers: int = 5000,
    days: int = 365,
    seed: int | None = None,
    end: str = "2026-01-01",
) -> bool:
    """Generate seeded synthetic data into the store when it holds no events yet (as
    `omni data synth` does); an existing store is left alone. True when data was made."""
    from features.store.events import store_exists

    if store_exists(settings.store_dir):
        return False
    from features.store.ingest import load_synthetic

    load_synthetic(settings, customers, days, settings.seed if seed is None else seed, end)
    return True


def cutoff_grid(
    events: pd.DataFrame, step_days: int = 30, after_days: int = 0, before_days: int = 0
) -> list[pd.Timestamp]:
    """UTC midnights ``step_days`` apart, placed backwards from the end of the data (the
    first midnight after the last event) minus ``before_days``, and no earlier than
    ``after_days`` after the first event's day. Oldest first.

    ``after_days`` = a lookback leaves a full feature window before every cutoff,
    ``before_days`` = a horizon a full label window after it.
    """
    if step_days <= 0 or after_days < 0 or before_days < 0:
        raise ValueError("step_days must be positive, after_days and before_days not negative")
    if events.empty:
        return []
    day = pd.Timedelta(days=1)
    first = events["ts"].min().floor("D") + after_days * day
    t = events["ts"].max().floor("D") + day - before_days * day
    out = []
    while t >= first:
        out.append(t)
        t -= step_days * day
    return out[::-1]


def events_per_month(events: pd.DataFrame, by: str = "channel") -> pd.DataFrame:
    """Event counts per calendar month (rows, UTC; the first and last may be partial) and
    ``by`` (columns, e.g. ``channel`` or ``event_type``)."""
    month = events["ts"].dt.tz_convert(None).dt.to_period("M").dt.start_time.rename("month")
    counts = events.groupby([month, events[by]], observed=True).size()
    table = counts.unstack(by, fill_value=0)
    return table.loc[:, table.sum() > 0]


def activity_over_time(
    events: pd.DataFrame,
    customers: pd.DataFrame | None,
    cutoffs: Sequence[pd.Timestamp | str],
    window_days: int = 30,
) -> pd.DataFrame:
    """Per cutoff (index ``as_of``), over the ``window_days`` before it: customers with a
    row (see :mod:`features.registry`) and those with a purchase or engagement, orders in
    total and per sales channel (``orders_web`` ...), the online share of orders, store
    visits (distinct customer, store, day), customers who visited a store and the share of
    visits made at the customer's home store.

    Every number is a customer feature with ``windows=(window_days,)`` summed over
    customers, so an order and a visit mean here what they mean to the models.
    """
    w = int(window_days)
    snaps = build_training_sets(events, customers, cutoffs, windows=(w,))
    orders = snaps[f"orders_{w}d"].astype("float64")
    visits = snaps[f"store_visits_{w}d"].astype("float64")
    frame = pd.DataFrame({"as_of": snaps["as_of"], "orders": orders, "store_visits": visits})
    for ch in SALES_CHANNELS:  # shares are of the customer's own orders in the window
        frame[f"orders_{ch}"] = orders * snaps[f"share_purchases_{ch}"].astype("float64")
    frame["online_orders"] = orders * snaps["share_purchases_online"].astype("float64")
    frame["home_store_visits"] = visits * snaps["home_store_share"].astype("float64")
    frame["store_visitors"] = (visits > 0).astype("int64")
    frame["customers"] = 1
    frame["engaged"] = (snaps["n_channels"] > 0).astype("int64")
    out = frame.groupby("as_of").sum()
    for col in ["orders", "store_visits", *(f"orders_{ch}" for ch in SALES_CHANNELS)]:
        out[col] = out[col].round().astype("int64")
    out["online_share"] = out.pop("online_orders") / out["orders"].where(out["orders"] > 0)
    home = out.pop("home_store_visits")
    out["home_store_visit_share"] = home / out["store_visits"].where(out["store_visits"] > 0)
    columns = ["customers", "engaged", "orders", *(f"orders_{ch}" for ch in SALES_CHANNELS)]
    columns += ["online_share", "store_visits", "store_visitors", "home_store_visit_share"]
    return out[columns]


def churn_over_time(
    events: pd.DataFrame,
    cutoffs: Sequence[pd.Timestamp | str],
    lookback_days: int = 90,
    horizon_days: int = 60,
) -> pd.DataFrame:
    """Per cutoff (index ``as_of``): active customers (a purchase in the lookback before
    it), how many of them made no purchase in the horizon after it, and the churn rate:
    the churn model's label, cutoff by cutoff. Every horizon must end within the data."""
    end = events["ts"].max().floor("D") + pd.Timedelta(days=1)
    rows = []
    for cutoff in cutoffs:
        t = to_utc(cutoff)
        if t + pd.Timedelta(days=horizon_days) > end:
            raise ValueError(
                f"cutoff {t:%Y-%m-%d}: its {horizon_days}-day horizon runs past the end of the "
                f"data ({end:%Y-%m-%d}), so churn there is not known yet"
            )
        labels = churn_labels(events, t, lookback_days, horizon_days)
        rows.append({"as_of": t, "active": len(labels), "churned": int(labels["churned"].sum())})
    out = pd.DataFrame(rows, columns=["as_of", "active", "churned"]).set_index("as_of")
    out["churn_rate"] = out["churned"] / out["active"].where(out["active"] > 0)
    return out
