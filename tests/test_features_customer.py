"""Customer features: hand-computed values per family, the plain-pandas reference on
random logs, point in time, row order, missing values and the registry contract (issue 3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from feature_frames import AS_OF, CUSTOMERS_TINY, TINY, random_log
from feature_reference import reference_features
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.customer_features import build_customer_features
from features.registry import customer_features, feature_names


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return build_customer_features(TINY, CUSTOMERS_TINY, AS_OF)


def _expect(row: pd.Series, expected: dict) -> None:
    for name, value in expected.items():
        got = row[name]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got), name
        else:
            assert got == pytest.approx(value, rel=1e-6), (name, got, value)


def test_who_gets_a_row(tiny):
    assert list(tiny.index) == ["a", "b", "d"]  # c signs up after T; no unresolved row
    assert tiny.index.name == "customer_id"


def test_recency(tiny):
    _expect(
        tiny.loc["a"],
        {
            "days_since_last_purchase": 1.5,
            "days_since_last_engagement": 3.0,
            "days_since_last_store_visit": 19.0,
            "days_since_last_online": 1.5,
            "days_since_last_web": 1.5,
            "days_since_last_app": 90.0,
            "days_since_last_store": 19.0,
            "days_since_last_email": 8.0,  # the open; a message sent is not the customer's act
            "days_since_last_sms": 365.0,
        },
    )


def test_frequency(tiny):
    _expect(
        tiny.loc["a"],
        {
            "orders_7d": 1,
            "orders_30d": 2,
            "orders_365d": 2,
            "online_days_7d": 2,  # purchase (day 1), view (day 3); the return is not activity
            "online_days_90d": 2,  # the app view is 90 days old: day 90 is outside 90 days
            "online_days_365d": 3,
            "views_7d": 1,
            "views_365d": 2,
            "engagements_7d": 1,
            "engagements_30d": 3,  # view, open, store visit
            "engagements_365d": 4,
            "messages_7d": 0,
            "messages_30d": 1,
            "messages_90d": 2,
            "opens_30d": 1,
            "clicks_365d": 0,
            "orders_trend_7d_30d": (1 * 30 / 7) / 2,
            "orders_trend_30d_90d": 3.0,
            "engagements_trend_7d_30d": (1 * 30 / 7) / 3,
            "purchase_gap_mean": 18.0,  # order days 1 and 19
            "purchase_gap_std": 0.0,
            "purchase_overdue": 1.5 / 18,
        },
    )


def test_monetary(tiny):
    _expect(
        tiny.loc["a"],
        {
            "spend_7d": 30.0,
            "spend_30d": 60.0,
            "aov_7d": 30.0,
            "aov_30d": 30.0,
            "return_share_7d": 0.2,
            "return_share_30d": 0.1,
            "discount_share_7d": 5 / 35,
            "discount_share_30d": 5 / 65,
        },
    )


def test_channel_mix(tiny):
    _expect(
        tiny.loc["a"],
        {
            "share_purchases_web": 0.5,
            "share_purchases_store": 0.5,
            "share_purchases_app": 0.0,
            "share_purchases_online": 0.5,
            "share_purchases_bopis": 0.0,
            "share_engagements_web": 0.25,
            "share_engagements_app": 0.25,
            "share_engagements_store": 0.25,
            "share_engagements_email": 0.25,
            "n_channels": 4,
            "messages_email": 2,
            "open_rate_email": 0.5,
            "click_rate_email": 0.0,
            "open_rate_sms": math.nan,  # no sms sent: a rate is undefined, not 0
        },
    )


def test_store_visits(tiny):
    _expect(
        tiny.loc["a"],
        {
            "store_visits_7d": 0,
            "store_visits_30d": 1,  # the store purchase and visit of one day: one visit
            "distinct_stores": 1,
            "home_store_share": 1.0,
            "weekend_visit_share": 0.0,
        },
    )
    _expect(
        tiny.loc["d"],
        {
            "days_since_last_store_visit": 4 + 14 / 24,
            "store_visits_7d": 2,  # Saturday's visit is 6.58 days old: day 6 is inside 7 days
            "store_visits_30d": 2,
            "distinct_stores": 2,
            "home_store_share": 0.0,  # home store unknown
            "weekend_visit_share": 0.5,
            "share_purchases_store": 0.0,
        },
    )


def test_customer_attributes(tiny):
    _expect(
        tiny.loc["a"],
        {"tenure_days": 365.0, "loyalty_tier": 2, "consent_email": True, "consent_sms": False},
    )
    _expect(tiny.loc["d"], {"tenure_days": math.nan, "loyalty_tier": -1, "consent_email": False})


def test_missing_values_follow_the_registry(tiny):
    """b has no event at all: every event feature is the registry's value, never a stray NaN."""
    b = tiny.loc["b"]
    for f in customer_features():
        if f.family == "customer":
            continue
        if isinstance(f.missing, float) and math.isnan(f.missing):
            assert math.isnan(b[f.name]), f.name
        else:
            assert b[f.name] == f.missing, f.name
    nan_allowed = {
        f.name
        for f in customer_features()
        if isinstance(f.missing, float) and math.isnan(f.missing)
    }
    stray = [c for c in tiny.columns if tiny[c].isna().any() and c not in nan_allowed]
    assert stray == []


def test_columns_and_dtypes_are_the_registry(tiny):
    spec = customer_features()
    assert list(tiny.columns) == [f.name for f in spec]
    assert [str(t) for t in tiny.dtypes] == [f.dtype for f in spec]


def test_windows_are_configurable():
    out = build_customer_features(TINY, CUSTOMERS_TINY, AS_OF, windows=(14, 3))
    assert list(out.columns) == feature_names((3, 14))
    assert "orders_14d" in out and "orders_30d" not in out
    assert out.loc["a", "orders_14d"] == 1  # the store order (19 days) is beyond the lookback
    assert out.loc["a", "days_since_last_store"] == 14.0


def test_empty_inputs():
    out = build_customer_features(TINY.iloc[:0], None, AS_OF)
    assert len(out) == 0 and list(out.columns) == feature_names()


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="as_of is required"):
        build_customer_features(TINY)
    with pytest.raises(ValueError, match="windows"):
        build_customer_features(TINY, None, AS_OF, windows=(0, 7))
    with pytest.raises(ValueError, match="lack required column"):
        build_customer_features(TINY.drop(columns="ts"), None, AS_OF)


# ------------------------------------------------------------------ random logs


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_plain_pandas_reference(seed):
    events, customers = random_log(seed)
    for windows in ((7, 30, 90, 365), (5, 60)):
        got = build_customer_features(events, customers, AS_OF, windows)
        _same(got, reference_features(events, customers, AS_OF, windows))


def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids like "c7" as fixed-width numbers, "c000007": the compiled digit-id path."""
    frame = frame.copy()
    for col in ("customer_id", "order_id", "store_id", "home_store_id"):
        if col in frame.columns:
            ids = frame[col].astype("str")
            frame[col] = ids.str[0] + ids.str[1:].str.zfill(6)
    return frame


@pytest.mark.parametrize("seed", range(3))
def test_numbered_ids_match_the_reference(seed):
    events, customers = (_numbered(f) for f in random_log(seed))
    assert events["customer_id"].dropna().str.len().nunique() == 1
    got = build_customer_features(events, customers, AS_OF)
    _same(got, reference_features(events, customers, AS_OF, (7, 30, 90, 365)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), shift=st.integers(0, 30 * 86_400), n_new=st.integers(1, 80))
def test_point_in_time_appending_later_events_changes_nothing(seed, shift, n_new):
    """Events at or after T (even from brand-new customers) never change features as of T."""
    events, customers = random_log(seed % 1000, n=150)
    before = build_customer_features(events, customers, AS_OF)
    later, _ = random_log(seed, n=n_new, n_customers=20)
    later["ts"] = AS_OF + pd.to_timedelta(shift + np.arange(len(later)), unit="s")
    both = pd.concat([events, later], ignore_index=True)
    pd.testing.assert_frame_equal(build_customer_features(both, customers, AS_OF), before)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_row_order_changes_nothing(seed):
    """Shuffled rows give the same table (sums may differ in the last float bit only)."""
    events, customers = random_log(seed % 1000, n=150)
    shuffled = events.sample(frac=1.0, random_state=seed % 2**32).reset_index(drop=True)
    _same(
        build_customer_features(shuffled, customers.iloc[::-1], AS_OF),
        build_customer_features(events, customers, AS_OF),
    )


def test_window_edges_are_open_at_the_old_end():
    """An event exactly w days old is outside the w-day window; a lookback old, outside all.

    (Regression: an event exactly one lookback old once indexed past the last band.)
    """
    log = _events_at(
        ["2025-02-22 00:00:00", "2025-01-30 00:00:00", "2024-03-01 00:00:00", "2024-03-01 00:00:01"]
    )
    out = build_customer_features(log, None, AS_OF)
    assert out.loc["e", "orders_7d"] == 0 and out.loc["e", "orders_30d"] == 1
    assert out.loc["e", "orders_90d"] == 2 and out.loc["e", "orders_365d"] == 3
    assert out.loc["e", "days_since_last_purchase"] == 7.0
    _same(out, reference_features(log, None, AS_OF))


def _events_at(times: list[str]) -> pd.DataFrame:
    from feature_frames import _events

    rows = [("e", t, "web", "purchase", f"o{i}", None, 1.0, None) for i, t in enumerate(times)]
    return _events(rows)
