"""Item and customer-by-product features: hand-computed values, point in time (issue 3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from feature_frames import AS_OF

from features.contract.schema import EVENTS, as_contract_frame
from features.item_features import build_customer_item_features, build_item_features
from features.registry import customer_item_features, item_features

W = (7, 30)
COLS = ["customer_id", "ts", "channel", "event_type", "order_id", "store_id", "product_id"]


def _log(rows, quantity) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["quantity"] = pd.array(quantity, dtype="Int64")
    for col in ("customer_id", "order_id", "store_id", "product_id"):
        frame[col] = frame[col].astype("str")
    return as_contract_frame(frame, EVENTS)


LOG = _log(
    [
        ("a", "2025-02-27 12:00", "web", "purchase", "o1", None, "p1"),
        ("a", "2025-02-27 12:00", "web", "purchase", "o1", None, "p2"),
        ("a", "2025-02-10 00:00", "store", "purchase", "o2", "s1", "p1"),
        ("b", "2025-02-20 00:00", "store", "purchase", "o3", "s2", "p1"),
        ("b", "2025-02-25 00:00", "web", "view", None, None, "p2"),
        ("b", "2025-03-02 00:00", "web", "purchase", "o4", None, "p2"),  # after the cutoff
        ("a", "2025-01-01 00:00", "web", "purchase", "o5", None, "p4"),  # before the lookback
    ],
    quantity=[2, None, 1, 3, None, 5, 1],
)
PRODUCTS = pd.DataFrame({"product_id": ["p1", "p2", "p3"], "price": [1.0, 2.0, 3.0]})
STORES = pd.DataFrame({"store_id": ["s1", "s2"], "region": ["north", "north"]})


def _row(frame: pd.DataFrame, key, expected: dict) -> None:
    row = frame.loc[key]
    for name, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(row[name]), name
        else:
            assert row[name] == pytest.approx(value), (key, name, row[name], value)


def test_item_popularity():
    items = build_item_features(LOG, PRODUCTS, AS_OF, W)
    assert list(items.index) == ["p1", "p2", "p3"]
    assert list(items.columns) == [f.name for f in item_features(W)]
    assert [str(t) for t in items.dtypes] == [f.dtype for f in item_features(W)]
    _row(
        items,
        "p1",
        {
            "orders_7d": 1,
            "orders_30d": 3,
            "units_7d": 2,
            "units_30d": 6,
            "views_30d": 0,
            "buyers": 2,
            "repurchase_rate": 0.5,  # a bought it on two days, b on one
            "days_since_last_sold": 1.5,
        },
    )
    _row(items, "p2", {"orders_7d": 1, "units_7d": 1, "views_7d": 1, "buyers": 1})
    _row(
        items,
        "p3",  # in the catalogue, never sold: the registry's missing values
        {"orders_30d": 0, "buyers": 0, "repurchase_rate": math.nan, "days_since_last_sold": 30.0},
    )


def test_item_popularity_per_store_and_region():
    per_store = build_item_features(LOG, PRODUCTS, AS_OF, W, by="store")
    assert list(per_store.index) == [("s1", "p1"), ("s2", "p1")]  # web orders have no store
    _row(per_store, ("s1", "p1"), {"orders_30d": 1, "units_30d": 1, "buyers": 1})
    per_region = build_item_features(LOG, PRODUCTS, AS_OF, W, by="region", stores=STORES)
    assert list(per_region.index) == [("north", "p1")]
    _row(per_region, ("north", "p1"), {"orders_30d": 2, "buyers": 2, "repurchase_rate": 0.0})
    with pytest.raises(ValueError, match="region"):
        build_item_features(LOG, PRODUCTS, AS_OF, W, by="region")


def test_customer_by_product():
    pairs = build_customer_item_features(LOG, AS_OF, W)
    assert list(pairs.index) == [("a", "p1"), ("a", "p2"), ("b", "p1")]
    assert list(pairs.columns) == [f.name for f in customer_item_features(W)]
    _row(pairs, ("a", "p1"), {"times_bought": 2, "days_bought": 2, "units_bought": 3})
    _row(pairs, ("a", "p1"), {"days_since_last_bought": 1.5})
    _row(pairs, ("a", "p2"), {"times_bought": 1, "units_bought": 1})  # no quantity: one unit
    _row(pairs, ("b", "p1"), {"units_bought": 3, "days_since_last_bought": 9.0})


def test_point_in_time_and_row_order():
    rng = np.random.default_rng(0)
    later = LOG.copy()
    later["ts"] = AS_OF + pd.to_timedelta(rng.integers(0, 10**6, len(LOG)), unit="s")
    both = pd.concat([LOG, later], ignore_index=True)
    shuffled = both.sample(frac=1.0, random_state=1)
    for build in (
        lambda e: build_item_features(e, PRODUCTS, AS_OF, W),
        lambda e: build_item_features(e, None, AS_OF, W, by="store"),
        lambda e: build_customer_item_features(e, AS_OF, W),
    ):
        pd.testing.assert_frame_equal(build(shuffled), build(LOG))
