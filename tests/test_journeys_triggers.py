"""Journey triggers (issue 18): each kind's rule on tiny hand-made events with known
answers, point in time (events at or after as_of never count), one row per customer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from features.contract.schema import (
    CUSTOMERS,
    EVENTS,
    PRODUCTS,
    STORES,
    as_contract_frame,
    empty_frame,
)
from features.sources.base import SourceData
from features.store.events import write_store
from serving.journeys.spec import Journey
from serving.journeys.triggers import COLUMNS, events_for, find_triggers

AS_OF = pd.Timestamp("2025-03-10 12:00", tz="UTC")


def _at(hours_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(hours=hours_before)


def _events(*rows: tuple) -> pd.DataFrame:
    """(customer, hours before AS_OF, event_type, product[, channel]) -> event rows."""
    frame = pd.DataFrame(
        [
            {
                "customer_id": r[0],
                "ts": _at(r[1]),
                "event_type": r[2],
                "product_id": r[3],
                "channel": r[4] if len(r) > 4 else "web",
            }
            for r in rows
        ],
        columns=COLUMNS,
    )
    return frame[COLUMNS]


def _journey(**trigger) -> Journey:
    return Journey(name="j", trigger=trigger)


def _found(journey: Journey, events: pd.DataFrame, **kw) -> dict[str, tuple]:
    frame = find_triggers(journey, events, kw.pop("features", pd.DataFrame()), AS_OF, **kw)
    assert list(frame.columns) == ["customer_id", "journey", "trigger_ts", "trigger_products"]
    assert frame["customer_id"].is_unique
    assert (frame["journey"] == journey.name).all()
    return {
        r.customer_id: (r.trigger_ts, list(r.trigger_products))
        for r in frame.itertuples(index=False)
    }


CART = _journey(kind="cart_abandoned", within_hours=4, lookback_hours=48)


def test_cart_abandoned_known_answers():
    found = _found(
        CART,
        _events(
            ("a", 10, "add_to_cart", "p1"),  # abandoned
            ("a", 6, "add_to_cart", "p2"),  # abandoned, the latest: the trigger
            ("b", 10, "add_to_cart", "p1"),
            ("b", 9, "purchase", "p9"),  # any purchase within 4 h cancels the cart
            ("c", 2, "add_to_cart", "p1"),  # its 4 h have not passed at as_of: not yet
            ("d", 60, "add_to_cart", "p1"),  # older than the lookback: not chased
            ("e", 10, "add_to_cart", "p1"),
            ("e", 10, "add_to_cart", "p2"),
            ("e", 3, "purchase", "p1"),  # bought later (after 4 h): p1 is not abandoned
            ("f", 10, "add_to_cart", "p1"),
            ("f", 6, "purchase", "p9"),  # exactly t + 4 h: within (t, t + 4 h], cancels
            ("g", 10, "view", "p1"),
        ),
    )
    assert set(found) == {"a", "e"}
    assert found["a"] == (_at(6), ["p2", "p1"])
    assert found["e"] == (_at(10), ["p2"])


def test_cart_window_edge_and_point_in_time():
    # a cart exactly within_hours before as_of has settled; a purchase at as_of is not read
    events = _events(("a", 4, "add_to_cart", "p1"), ("a", 0, "purchase", "p1"))
    assert _found(CART, events) == {"a": (_at(4), ["p1"])}
    # events after as_of never count: adding them changes nothing
    later = _events(("a", -1, "purchase", "p1"), ("z", -2, "add_to_cart", "p1"))
    assert _found(CART, pd.concat([events, later])) == {"a": (_at(4), ["p1"])}


def test_browse_abandoned():
    journey = _journey(kind="browse_abandoned", within_hours=6, lookback_hours=48, min_views=2)
    found = _found(
        journey,
        _events(
            ("a", 20, "view", "p1"),
            ("a", 10, "view", "p2"),
            ("a", 8, "view", "p1"),  # the last view: 8 h ago, settled
            ("b", 10, "view", "p1"),  # one view only
            ("c", 20, "view", "p1"),
            ("c", 10, "view", "p2"),
            ("c", 9, "add_to_cart", "p2"),  # acted after browsing
            ("d", 20, "view", "p1"),
            ("d", 2, "view", "p2"),  # still browsing: last view 2 h ago
            ("e", 30, "purchase", "p1"),
            ("e", 20, "view", "p3"),
            ("e", 10, "view", "p4"),  # views after the last purchase count
            ("f", 10, "view", None),
            ("f", 9, "view", None),  # views without a product do not count
        ),
    )
    assert found == {"a": (_at(8), ["p1", "p2"]), "e": (_at(10), ["p4", "p3"])}


def test_purchase_cross_sell_window():
    journey = _journey(kind="purchase", after_days=3, lookback_days=1)
    found = _found(
        journey,
        _events(
            ("a", 80, "purchase", "p1"),  # 3 d 8 h ago: in [as_of - 4 d, as_of - 3 d)
            ("a", 90, "purchase", "p2"),
            ("a", 80, "view", "p3"),
            ("b", 72, "purchase", "p1"),  # exactly 3 d ago: the window's open end
            ("c", 96, "purchase", "p1"),  # exactly 4 d ago: in
            ("d", 97, "purchase", "p1"),  # too early
        ),
    )
    assert found == {"a": (_at(80), ["p1", "p2"]), "c": (_at(96), ["p1"])}


def test_first_store_visit_needs_the_whole_history():
    journey = _journey(kind="first_store_visit", lookback_hours=24)
    found = _found(
        journey,
        _events(
            ("a", 5, "store_visit", None, "store"),
            ("a", 3, "purchase", "p1", "store"),
            ("b", 5, "store_visit", None, "store"),
            ("b", 2000, "purchase", "p1", "store"),  # visited a store long ago
            ("c", 5, "purchase", "p1", "web"),
            ("d", 30, "store_visit", None, "store"),  # first visit before the lookback
            ("e", -1, "store_visit", None, "store"),  # at/after as_of: not seen
        ),
    )
    assert found == {"a": (_at(5), [])}


def test_churn_risk_crossing_vs_staying():
    journey = _journey(kind="churn_risk", band="high")
    now = pd.Series([0.7, 0.9, 0.2, 0.65, np.nan], index=["a", "b", "c", "d", "e"])
    before = pd.Series([0.5, 0.8, 0.7], index=["a", "b", "c"])  # d: new customer
    found = _found(journey, _events(), churn=now, previous_churn=before)
    assert found == {"a": (AS_OF, []), "d": (AS_OF, [])}  # b stayed in the band
    everyone = _found(journey, _events(), churn=now)  # no previous run: all in the band
    assert set(everyone) == {"a", "b", "d"}
    medium = _found(_journey(kind="churn_risk", band="medium"), _events(), churn=now)
    assert set(medium) == {"a", "b", "d"}  # medium or higher
    custom = _journey(kind="churn_risk", min_probability=0.8)
    assert set(_found(custom, _events(), churn=now, previous_churn=before)) == set()
    with pytest.raises(ValueError, match="churn"):
        find_triggers(journey, _events(), pd.DataFrame(), AS_OF)


def test_purchase_overdue_fires_once_when_crossing():
    journey = _journey(kind="purchase_overdue", min_ratio=1.5)
    features = pd.DataFrame(
        {
            # a: 25 days since, gap 16 -> 1.5625 now, 1.5 yesterday: crossed a day ago
            # b: 24.5 / 16 = 1.53125 now, 1.46875 yesterday: crossed today
            "purchase_overdue": [1.5625, 1.53125, 3.0, 1.2, np.nan],
            "purchase_gap_mean": [16.0, 16.0, 10.0, 10.0, np.nan],
        },
        index=pd.Index(["a", "b", "c", "d", "e"], name="customer_id"),
    )
    assert _found(journey, _events(), features=features) == {"b": (AS_OF, [])}


def test_trigger_frame_types_and_empty():
    frame = find_triggers(CART, _events(("a", 10, "add_to_cart", "p1")), pd.DataFrame(), AS_OF)
    assert str(frame["trigger_ts"].dtype) == "datetime64[us, UTC]"
    assert frame["trigger_products"].tolist() == [["p1"]]
    empty = find_triggers(CART, pl.from_pandas(_events(("a", 1, "view", "p1"))), None, AS_OF)
    assert empty.empty and list(empty.columns) == list(frame.columns)


def test_events_for_reads_only_what_triggers_need(tmp_path):
    """The store read: the longest lookback before as_of, plus old store events for a
    first_store_visit journey, never events at or after as_of."""
    events = _events(
        ("a", 10, "add_to_cart", "p1"),
        ("a", 24 * 60, "purchase", "p1"),  # two months back, online
        ("a", 24 * 70, "store_visit", None, "store"),  # old store event
        ("a", -5, "purchase", "p2"),  # after as_of
        ("a", 1, "message_sent", None, "email"),  # a type no trigger here reads
    )
    frame = events.reindex(columns=EVENTS.names)
    dims = [empty_frame(t) for t in (CUSTOMERS, PRODUCTS, STORES)]
    write_store(SourceData(as_contract_frame(frame), *dims), tmp_path / "store")
    cart_only = events_for([CART], tmp_path / "store", AS_OF)
    assert cart_only["ts"].to_list() == [_at(10).to_pydatetime()]
    visits = _journey(kind="first_store_visit", lookback_hours=24)
    both = events_for([CART, visits], tmp_path / "store", AS_OF).sort("ts")
    assert both["event_type"].to_list() == ["store_visit", "add_to_cart"]
    assert events_for([_journey(kind="churn_risk")], tmp_path / "store", AS_OF).is_empty()


def test_arrow_input_and_missing_columns():
    events = _events(("a", 10, "add_to_cart", "p1"))
    table = pa.Table.from_pandas(events, preserve_index=False)
    assert find_triggers(CART, table, None, AS_OF)["customer_id"].tolist() == ["a"]
    with pytest.raises(ValueError, match="product_id"):
        find_triggers(CART, table.drop_columns(["product_id"]), None, AS_OF)
