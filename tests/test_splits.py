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


def test_too_little_history_is_refused_naming_the_minimum():
    # issue 16: only below one lookback plus one horizon each for train, valid and test
    with pytest.raises(ValueError, match=r"need at least 270 days of events .*, have 120"):
        temporal_split(
            pd.Timestamp("2025-01-01", tz="UTC"),
            pd.Timestamp("2025-04-30", tz="UTC"),
            horizon_days=60,
            lookback_days=90,
        )


UTC = "UTC"


def _split(days: int, **kw):
    first = pd.Timestamp("2025-01-01", tz=UTC)
    return temporal_split(first, first + pd.Timedelta(days=days - 1), **kw)


def _check_roles(s) -> None:
    h = pd.Timedelta(days=s.horizon_days)
    assert max(s.train) + h <= s.valid and s.valid + h <= s.test and s.test + h <= s.as_of
    assert list(s.train) == sorted(set(s.train))


@pytest.mark.parametrize("days", [270, 271, 280, 300, 330, 359, 360, 400])
def test_short_histories_get_cutoffs_chosen_from_what_there_is(days):
    # issue 16: eight months of data used to be refused ("need 360 days, have 273")
    s = _split(days, horizon_days=60, lookback_days=90, n_train=4, step_days=30)
    _check_roles(s)
    first = pd.Timestamp("2025-01-01", tz=UTC)
    assert s.train[0] >= first + pd.Timedelta(days=90)  # a full lookback before each
    assert (len(s.train) < 4 or (s.train[1] - s.train[0]).days < 30) == bool(s.note)
    if days == 270:
        assert len(s.train) == 1 and "1 of 4" in s.note
    if days >= 360:
        assert len(s.train) == 4 and s.note == ""


def test_closer_cutoffs_before_fewer():
    s = _split(300, horizon_days=60, lookback_days=90, n_train=4, step_days=30)
    assert len(s.train) == 4 and (s.train[1] - s.train[0]).days == 10
    assert "4 cutoffs 10 days apart" in s.note


def test_cdnow_length_history_trains_with_one_cutoff():
    # issue 16: CDNOW (546 days) with a 150-day horizon and 90-day lookback: 540 days needed
    s = _split(546, horizon_days=150, lookback_days=90, n_train=4, step_days=30)
    assert len(s.train) == 1
    _check_roles(s)


def test_test_cutoff_and_as_of_place_the_split():
    # issue 16: --test-cutoff reproduces a split whatever data came later
    test = pd.Timestamp("2025-09-01", tz=UTC)
    s, later = (
        _split(days, horizon_days=30, lookback_days=60, n_train=2, test_cutoff=test)
        for days in (500, 700)
    )
    assert s.test == test and s.valid == pd.Timestamp("2025-08-02", tz=UTC)
    assert later.train == s.train and later.valid == s.valid and later.test == s.test
    a = _split(500, horizon_days=30, lookback_days=60, as_of=pd.Timestamp("2025-10-01", tz=UTC))
    assert a.test == pd.Timestamp("2025-09-01", tz=UTC) and a.as_params()["as_of"] == "2025-10-01"
    _check_roles(a)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"test_cutoff": pd.Timestamp("2026-05-01", tz=UTC)}, "--test-cutoff 2026-05-01"),
        ({"as_of": pd.Timestamp("2027-01-01", tz=UTC)}, "--as-of 2027-01-01 is after the data"),
        (
            {
                "as_of": pd.Timestamp("2025-10-01", tz=UTC),
                "test_cutoff": pd.Timestamp("2025-09-15", tz=UTC),
            },
            "past --as-of",
        ),
    ],
)
def test_cutoffs_outside_the_data_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        _split(500, horizon_days=30, lookback_days=60, **kw)


def test_describe_names_the_weeks_of_the_test_window():
    s = _split(400, horizon_days=14, lookback_days=60, n_train=1)
    text = s.describe()
    assert f"{s.test:%Y-%m-%d} .. " in text and "ISO weeks" in text
