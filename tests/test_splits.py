"""Temporal splits: no label window overlaps another role's, and short data is refused."""

from __future__ import annotations

import pandas as pd
import pytest

from training.splits import temporal_split


def test_cutoffs_by_hand():
    s = temporal_split(
        pd.Timestamp("2025-01-01 08:00", tz="UTC"),
        pd.Timestamp("2025-12-31 17:00", tz="UTC"),
        horizon_days=60,
        lookback_days=90,
        n_train=3,
        step_days=30,
    )
    day = pd.Timestamp
    assert s.test == day("2025-11-02", tz="UTC")  # 2026-01-01 - 60 days
    assert s.valid == day("2025-09-03", tz="UTC")
    assert s.train == (
        day("2025-05-06", tz="UTC"),
        day("2025-06-05", tz="UTC"),
        day("2025-07-05", tz="UTC"),  # valid - 60 days
    )
    horizon = pd.Timedelta(days=60)
    assert max(s.train) + horizon <= s.valid  # training labels end before validation
    assert s.valid + horizon <= s.test  # validation labels end before test
    assert s.as_params()["test_cutoff"] == "2025-11-02"


def test_too_little_history_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match=r"need \d+ days of events, have 120"):
        temporal_split(
            pd.Timestamp("2025-01-01", tz="UTC"),
            pd.Timestamp("2025-04-30", tz="UTC"),
            horizon_days=60,
            lookback_days=90,
        )
