"""Features on the real Complete Journey data: every household, checked against pandas (issue 3)."""

from __future__ import annotations

import pandas as pd
import pytest
from feature_reference import reference_features

from features.customer_features import build_customer_features
from features.sources.complete_journey import load_complete_journey

AS_OF = pd.Timestamp("2017-10-01", tz="UTC")
pytestmark = pytest.mark.slow  # loading the data and the plain-pandas reference: ~40 s


@pytest.fixture(scope="module")
def cj():
    data = load_complete_journey()
    return data, build_customer_features(data.events, data.customers, AS_OF)


def test_every_household_gets_a_row(cj):
    data, features = cj
    assert len(features) == data.customers["customer_id"].nunique() == 2469
    assert features.index.is_monotonic_increasing


def test_spot_checks_against_direct_pandas(cj):
    data, features = cj
    ev = data.events
    ev = ev[(ev["ts"] < AS_OF) & (ev["ts"] >= AS_OF - pd.Timedelta(days=365))]
    buys = ev[ev["event_type"] == "purchase"]
    busiest = buys["customer_id"].value_counts().index[:3]
    for hh in busiest:
        mine = buys[buys["customer_id"] == hh]
        last30 = mine[mine["ts"] >= AS_OF - pd.Timedelta(days=30)]
        row = features.loc[hh]
        assert row["orders_30d"] == last30["order_id"].nunique()
        assert row["spend_30d"] == pytest.approx(last30["amount"].sum(), rel=1e-5)
        assert row["distinct_stores"] == mine["store_id"].nunique()
        since = (AS_OF - mine["ts"].max()) / pd.Timedelta(days=1)
        assert row["days_since_last_purchase"] == pytest.approx(since, rel=1e-5)


def test_whole_table_equals_the_plain_pandas_reference(cj):
    data, features = cj
    expected = reference_features(data.events, data.customers, AS_OF)
    pd.testing.assert_frame_equal(features, expected, check_exact=False, rtol=1e-5, atol=1e-6)
