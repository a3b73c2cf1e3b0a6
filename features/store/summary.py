"""A short, human summary of what is in the events store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.store.events import read_events, read_table


@dataclass
class StoreSummary:
    """Counts that tell whether a load looks right."""

    n_events: int
    n_customers: int  # distinct customers on events (after identity resolution)
    n_customer_rows: int  # rows in the customers table
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    by_channel: pd.DataFrame  # channel x event_type counts, with totals
    customers_by_channel: pd.Series  # distinct customers active per channel


def summarize_store(store_dir: Path | str) -> StoreSummary:
    """Events per channel and event type, customers, and the time range of the store."""
    ev = read_events(store_dir, columns=["customer_id", "ts", "channel", "event_type"])
    if len(ev):
        table = pd.crosstab(ev["channel"], ev["event_type"], margins=True, margins_name="total")
        table = table.loc[table["total"] > 0]
    else:  # a store loaded with --allow-empty
        table = pd.DataFrame({"total": pd.Series(dtype="int64")})
    active = ev.groupby("channel", observed=True)["customer_id"].nunique()
    customers = read_table(store_dir, "customers")
    return StoreSummary(
        n_events=len(ev),
        n_customers=int(ev["customer_id"].nunique()),
        n_customer_rows=len(customers),
        first_ts=ev["ts"].min() if len(ev) else None,
        last_ts=ev["ts"].max() if len(ev) else None,
        by_channel=table,
        customers_by_channel=active.sort_values(ascending=False),
    )
