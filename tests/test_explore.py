"""The exploration views (features/store/explore.py, used by notebooks/explore_data.ipynb):
hand-counted answers on tiny logs, and the same numbers as the features and labels."""

from __future__ import annotations

import pandas as pd
import pytest
from feature_frames import AS_OF, CUSTOMERS_TINY, TINY, _events

from features.labels import churn_labels
from features.store.explore import (
    activity_over_time,
    churn_over_time,
    cutoff_grid,
    ensure_events_store,
    events_per_month,
)


def _day(d: str) -> pd.Timestamp:
    return pd.Timestamp(d, tz="UTC")


def _purchases(rows: list[tuple[str, str]]) -> pd.DataFrame:
    lines = [(c, ts, "web", "purchase", f"o{i}", None, 1.0, None) for i, (c, ts) in enumerate(rows)]
    return _events(lines)


def test_cutoff_grid_steps_back_from_the_end_of_the_data():
    events = _purchases([("a", "2025-01-01 10:00"), ("a", "2025-03-31 23:00")])
    # the end is 2025-04-01 (first midnight after the last event)
    grid = ("2025-01-01", "2025-01-31", "2025-03-02", "2025-04-01")
    assert cutoff_grid(events, 30) == [_day(d) for d in grid]
    assert cutoff_grid(events, 30, after_days=31, before_days=30) == [_day("2025-03-02")]
    assert cutoff_grid(events.iloc[:0], 30) == []
    with pytest.raises(ValueError, match="step_days"):
        cutoff_grid(events, 0)


def test_events_per_month_by_channel_and_type():
    table = events_per_month(TINY)
    assert table.loc[pd.Timestamp("2025-02-01"), "web"] == 5  # 2 lines of o1, a return, 2 views
    assert table.loc[pd.Timestamp("2025-02-01"), "store"] == 4
    assert table.loc[pd.Timestamp("2024-01-01")].sum() == 1
    assert "sms" not in table.columns  # channels without events are left out
    assert table.to_numpy().sum() == len(TINY)
    by_type = events_per_month(TINY, by="event_type")
    assert by_type.loc[pd.Timestamp("2025-03-01"), "purchase"] == 1


def test_activity_over_time_counts_orders_and_visits_as_the_features_do():
    out = activity_over_time(TINY, CUSTOMERS_TINY, [AS_OF], window_days=30)
    row = out.loc[AS_OF]
    # a: web order o1 (two lines), store order o2 and a visit at home store s1 the same day;
    # d: visits to s2 and s3 (no home store); b: a row from the customers table, no activity.
    assert row["customers"] == 3
    assert row["engaged"] == 2
    assert (row["orders"], row["orders_web"], row["orders_store"], row["orders_app"]) == (
        2,
        1,
        1,
        0,
    )
    assert row["online_share"] == pytest.approx(0.5)
    assert (row["store_visits"], row["store_visitors"]) == (3, 2)
    assert row["home_store_visit_share"] == pytest.approx(1 / 3)


def test_activity_over_time_without_orders_or_visits_is_nan_not_an_error():
    out = activity_over_time(TINY, CUSTOMERS_TINY, [_day("2024-06-01")], window_days=7)
    row = out.iloc[0]
    assert row["orders"] == 0 and row["store_visits"] == 0
    assert pd.isna(row["online_share"]) and pd.isna(row["home_store_visit_share"])


def test_churn_over_time_is_the_churn_label_per_cutoff():
    events = _purchases(
        [("x", "2025-01-01"), ("x", "2025-02-10"), ("y", "2025-01-01"), ("z", "2025-04-20")]
    )
    cutoffs = [_day("2025-01-31"), _day("2025-03-01")]
    out = churn_over_time(events, cutoffs, lookback_days=90, horizon_days=30)
    # 01-31: x and y active, y buys nothing in the next 30 days; 03-01: x and y active,
    # neither buys before 03-31 (z's purchase is later).
    assert out["active"].tolist() == [2, 2]
    assert out["churned"].tolist() == [1, 2]
    assert out["churn_rate"].tolist() == [0.5, 1.0]
    for t in cutoffs:
        assert out.loc[t, "churned"] == churn_labels(events, t, 90, 30)["churned"].sum()


def test_churn_over_time_refuses_a_horizon_past_the_data():
    events = _purchases([("x", "2025-01-01"), ("x", "2025-02-10")])
    with pytest.raises(ValueError, match="runs past the end of the data"):
        churn_over_time(events, ["2025-02-01"], lookback_days=90, horizon_days=30)


def test_ensure_events_store_generates_once(settings):
    assert ensure_events_store(settings, customers=20, days=30, seed=1)
    assert settings.events_dir.exists()
    made = sorted(settings.events_dir.rglob("*.parquet"))
    assert not ensure_events_store(settings, customers=50, days=60)  # existing store kept
    assert sorted(settings.events_dir.rglob("*.parquet")) == made
