"""Small contract frames shared by the feature tests: a hand-made log and random logs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract.schema import CHANNELS, CUSTOMERS, EVENT_TYPES, EVENTS, as_contract_frame

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")
COLS = ["customer_id", "ts", "channel", "event_type", "order_id", "store_id", "amount", "discount"]


def _events(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for col in ("customer_id", "order_id", "store_id"):
        frame[col] = frame[col].astype("str")
    return as_contract_frame(frame, EVENTS)


def _customers(rows: list[dict]) -> pd.DataFrame:
    return as_contract_frame(pd.DataFrame(rows), CUSTOMERS)


# One customer ("a") touching every family, one known only from the customers table
# ("b"), one signed up after the cutoff ("c"), one with store visits only ("d").
TINY = _events(
    [
        ("a", "2025-02-27 12:00", "web", "purchase", "o1", None, 10.0, 5.0),
        ("a", "2025-02-27 12:00", "web", "purchase", "o1", None, 20.0, None),
        ("a", "2025-02-10 00:00", "store", "purchase", "o2", "s1", 30.0, None),
        ("a", "2025-02-10 00:00", "store", "store_visit", None, "s1", None, None),
        ("a", "2025-02-28 00:00", "web", "return", "o1", None, -6.0, None),
        ("a", "2025-02-26 00:00", "web", "view", None, None, None, None),
        ("a", "2024-12-01 00:00", "app", "view", None, None, None, None),
        ("a", "2025-02-20 00:00", "email", "message_sent", None, None, None, None),
        ("a", "2025-02-21 00:00", "email", "open", None, None, None, None),
        ("a", "2025-01-15 00:00", "email", "message_sent", None, None, None, None),
        ("a", "2025-03-01 00:00", "web", "purchase", "o3", None, 99.0, None),  # at T: ignored
        ("a", "2024-01-01 00:00", "web", "purchase", "o0", None, 99.0, None),  # before lookback
        ("d", "2025-02-22 10:00", "store", "store_visit", None, "s2", None, None),  # Saturday
        ("d", "2025-02-24 10:00", "store", "store_visit", None, "s3", None, None),  # Monday
        (None, "2025-02-25 00:00", "web", "view", None, None, None, None),  # unresolved
    ]
)
CUSTOMERS_TINY = _customers(
    [
        {
            "customer_id": "a",
            "signup_ts": "2024-03-01",
            "loyalty_tier": "silver",
            "home_store_id": "s1",
            "consent_email": True,
        },
        {"customer_id": "b", "signup_ts": "2024-03-01", "loyalty_tier": "gold"},
        {"customer_id": "c", "signup_ts": "2025-04-01"},
    ]
)


def random_log(seed: int, n: int = 300, n_customers: int = 12):
    """A messy random log around AS_OF: every channel x type, shared order ids, nulls."""
    rng = np.random.default_rng(seed)
    ts = AS_OF - pd.to_timedelta(rng.integers(-40 * 86_400, 400 * 86_400, n), unit="s")
    ids = np.array([f"c{i}" for i in range(n_customers)], dtype=object)
    cust = ids[rng.integers(0, n_customers, n)]
    cust[rng.random(n) < 0.05] = None
    n_orders = max(n // 4, 1)
    orders = np.array([f"o{i}" for i in range(n_orders)], dtype=object)[
        rng.integers(0, n_orders, n)
    ]
    orders[rng.random(n) < 0.2] = None
    stores = np.array(["s1", "s2", "s3"], dtype=object)[rng.integers(0, 3, n)]
    stores[rng.random(n) < 0.4] = None
    amount = np.round(rng.normal(20, 15, n), 2)
    amount[rng.random(n) < 0.1] = np.nan
    discount = np.where(rng.random(n) < 0.3, np.round(rng.random(n) * 5, 2), np.nan)
    events = _events(
        list(
            zip(
                cust,
                ts,
                rng.choice(CHANNELS, n),
                rng.choice(EVENT_TYPES, n, p=[0.3, 0.05, 0.15, 0.05, 0.1, 0.15, 0.1, 0.05, 0.05]),
                orders,
                stores,
                amount,
                discount,
                strict=True,
            )
        )
    )
    # a few orders whose lines share one timestamp, as real baskets do
    dup = events.sample(n=n // 10, random_state=seed)
    events = pd.concat([events, dup], ignore_index=True)
    m = n_customers + 3
    customers = _customers(
        [
            {
                "customer_id": f"c{i}",
                "signup_ts": None if i % 5 == 0 else AS_OF - pd.Timedelta(days=int(d)),
                "loyalty_tier": ["none", "bronze", "silver", "gold", None][i % 5],
                "home_store_id": ["s1", "s2", None][i % 3],
                "consent_email": bool(i % 2),
                "consent_sms": None if i % 3 == 0 else bool(i % 3 == 1),
            }
            for i, d in zip(range(2, m), rng.integers(-30, 900, m), strict=False)
        ]
    )
    return events, customers
