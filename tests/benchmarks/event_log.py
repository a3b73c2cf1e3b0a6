"""A fast, seeded, vectorised events frame in the contract dtypes, for benchmarks.

Not the synthetic source (features/sources/synthetic.py plants behaviour for models to find);
this only needs realistic shapes at 10M+ rows in seconds: heavy-tailed activity per
customer, orders of several lines sharing order_id / ts / channel / store, a store
visit per store basket, returns, web/app browsing, and outreach with opens, clicks
and redeems. Events are sorted by ts, as a month-partitioned store returns them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract.schema import CHANNELS, EVENT_TYPES, EVENTS, as_contract_frame

END = pd.Timestamp("2026-01-01", tz="UTC")
DAYS = 400
N_STORES = 500
N_PRODUCTS = 50_000
_CH = {c: i for i, c in enumerate(CHANNELS)}
_ET = {e: i for i, e in enumerate(EVENT_TYPES)}


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Fixed-width ``prefix + zero-padded number`` strings, built from raw buffers."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((numbers.astype(np.int64)[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    head = np.broadcast_to(np.frombuffer(prefix.encode(), np.uint8), (len(numbers), len(prefix)))
    chars = np.ascontiguousarray(np.concatenate([head, digits], axis=1))
    size = chars.shape[1]
    offsets = np.arange(len(numbers) + 1, dtype=np.int32) * size
    return pa.StringArray.from_buffers(len(numbers), pa.py_buffer(offsets), pa.py_buffer(chars))


def _with_nulls(values: pa.Array, valid: np.ndarray) -> pa.Array:
    """``values`` spread over ``valid`` positions, null elsewhere."""
    idx = np.full(len(valid), -1, dtype=np.int64)
    idx[valid] = np.arange(int(valid.sum()))
    return values.take(pa.array(idx, mask=~valid))


def _str_series(values: pa.Array) -> pd.Series:
    return pd.Series(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def make_events(n_events: int, n_customers: int, seed: int = 0) -> pd.DataFrame:
    """About ``n_events`` events of ``n_customers`` customers over 400 days before 2026."""
    rng = np.random.default_rng(seed)
    weight = rng.gamma(0.8, 1.0, n_customers)
    weight /= weight.sum()
    cum = np.cumsum(weight)

    def customers(k: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cum, rng.random(k)), n_customers - 1)

    span = DAYS * 86_400
    # Orders: 1 + Poisson(1.5) lines; store 50 %, web 30 %, app 15 %, call centre 5 %.
    n_orders = int(n_events * 0.115)
    o_cust = customers(n_orders)
    o_sec = rng.integers(0, span, n_orders)
    o_ch = rng.choice(
        [_CH["store"], _CH["web"], _CH["app"], _CH["call_center"]],
        n_orders,
        p=[0.5, 0.3, 0.15, 0.05],
    )
    store = o_ch == _CH["store"]
    o_store = np.where(
        store | (rng.random(n_orders) < 0.15), rng.integers(0, N_STORES, n_orders), -1
    )
    lines = 1 + rng.poisson(1.5, n_orders)
    order_of_line = np.repeat(np.arange(n_orders), lines)
    n_lines = len(order_of_line)
    qty = 1 + rng.poisson(0.35, n_lines)
    price = np.round(rng.lognormal(2.0, 0.8, n_lines), 2)
    discount = np.where(rng.random(n_lines) < 0.15, np.round(price * 0.2, 2), np.nan)
    amount = qty * price - np.nan_to_num(discount)
    # Returns: 3 % of lines, 1-30 days later.
    ret = rng.random(n_lines) < 0.03
    # Store visits: one per store basket, at the basket's time and store.
    visit_orders = np.flatnonzero(store)

    n_rest = max(n_events - n_lines - int(ret.sum()) - len(visit_orders), 0)
    n_browse = int(n_rest * 0.45)
    n_out = n_rest - n_browse
    b_et = np.where(rng.random(n_browse) < 0.8, _ET["view"], _ET["add_to_cart"])
    b_ch = np.where(rng.random(n_browse) < 0.6, _CH["web"], _CH["app"])
    out_ch = rng.choice(
        [_CH["email"], _CH["sms"], _CH["push"], _CH["direct_mail"]], n_out, p=[0.5, 0.2, 0.2, 0.1]
    )
    out_et = rng.choice(
        [_ET["message_sent"], _ET["open"], _ET["click"], _ET["redeem"]],
        n_out,
        p=[0.68, 0.22, 0.08, 0.02],
    )

    parts = {
        "cust": [o_cust[order_of_line], o_cust[order_of_line][ret], o_cust[visit_orders]],
        "sec": [
            o_sec[order_of_line],
            o_sec[order_of_line][ret] + rng.integers(86_400, 30 * 86_400, int(ret.sum())),
            o_sec[visit_orders],
        ],
        "ch": [o_ch[order_of_line], o_ch[order_of_line][ret], o_ch[visit_orders]],
        "et": [
            np.full(n_lines, _ET["purchase"]),
            np.full(int(ret.sum()), _ET["return"]),
            np.full(len(visit_orders), _ET["store_visit"]),
        ],
        "order": [order_of_line, order_of_line[ret], np.full(len(visit_orders), -1)],
        "store": [o_store[order_of_line], o_store[order_of_line][ret], o_store[visit_orders]],
        "product": [
            rng.zipf(1.3, n_lines) % N_PRODUCTS,
            (rng.zipf(1.3, n_lines) % N_PRODUCTS)[ret],
            np.full(len(visit_orders), -1),
        ],
        "qty": [qty, qty[ret], np.zeros(len(visit_orders), np.int64)],
        "amount": [amount, -amount[ret], np.full(len(visit_orders), np.nan)],
        "discount": [discount, np.full(int(ret.sum()), np.nan), np.full(len(visit_orders), np.nan)],
    }
    n_other = n_browse + n_out
    parts["cust"].append(customers(n_other))
    parts["sec"].append(rng.integers(0, span, n_other))
    parts["ch"].append(np.concatenate([b_ch, out_ch]))
    parts["et"].append(np.concatenate([b_et, out_et]))
    parts["order"].append(np.full(n_other, -1))
    parts["store"].append(np.full(n_other, -1))
    parts["product"].append(
        np.concatenate([rng.zipf(1.3, n_browse) % N_PRODUCTS, np.full(n_out, -1)])
    )
    parts["qty"].append(np.zeros(n_other, np.int64))
    parts["amount"].append(np.full(n_other, np.nan))
    parts["discount"].append(np.full(n_other, np.nan))
    col = {k: np.concatenate(v) for k, v in parts.items()}
    keep = col["sec"] < span  # returns pushed past the end fall off
    order = np.argsort(col["sec"][keep], kind="stable")
    col = {k: v[keep][order] for k, v in col.items()}
    n = len(col["sec"])

    ts = (END - pd.Timedelta(days=DAYS)).as_unit("us") + pd.to_timedelta(col["sec"], unit="s")
    has_order = col["order"] >= 0
    has_store = col["store"] >= 0
    has_product = col["product"] >= 0
    is_line = np.isin(col["et"], [_ET["purchase"], _ET["return"]])
    frame = pd.DataFrame(
        {
            "customer_id": _str_series(_ids("C", np.arange(n_customers), 7).take(col["cust"])),
            "ts": ts,
            "channel": pd.Categorical.from_codes(col["ch"].astype(np.int8), list(CHANNELS)),
            "event_type": pd.Categorical.from_codes(col["et"].astype(np.int8), list(EVENT_TYPES)),
            "order_id": _str_series(_with_nulls(_ids("O", col["order"][has_order], 9), has_order)),
            "product_id": _str_series(
                _with_nulls(_ids("P", col["product"][has_product], 6), has_product)
            ),
            "store_id": _str_series(_with_nulls(_ids("S", col["store"][has_store], 4), has_store)),
            "quantity": pd.array(np.where(is_line, col["qty"], 0), dtype="Int64"),
            "amount": col["amount"],
            "discount": col["discount"],
        }
    )
    frame["quantity"] = frame["quantity"].mask(~is_line)
    assert len(frame) == n
    return as_contract_frame(frame[[c for c in EVENTS.names if c in frame.columns]], EVENTS)


def make_customers(n_customers: int, seed: int = 0) -> pd.DataFrame:
    """The customers table for :func:`make_events` (signup, tier, home store, consent)."""
    rng = np.random.default_rng(seed + 1)
    signup = END - pd.to_timedelta(rng.integers(1, 3 * 365, n_customers), unit="D")
    return pd.DataFrame(
        {
            "customer_id": _str_series(_ids("C", np.arange(n_customers), 7)),
            "signup_ts": signup,
            "loyalty_tier": pd.Categorical.from_codes(
                rng.choice(4, n_customers, p=[0.4, 0.3, 0.2, 0.1]),
                ["none", "bronze", "silver", "gold"],
            ),
            "home_store_id": _str_series(_ids("S", rng.integers(0, N_STORES, n_customers), 4)),
            "consent_email": rng.random(n_customers) < 0.7,
            "consent_sms": rng.random(n_customers) < 0.4,
            "consent_push": rng.random(n_customers) < 0.35,
            "consent_direct_mail": rng.random(n_customers) < 0.6,
        }
    )
