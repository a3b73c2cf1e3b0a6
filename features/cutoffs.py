"""Cutoffs and other points in time, always as UTC ``pd.Timestamp``s: the one place that
reads a user's date and normalises a time zone, so every comparison with event times
(stored in UTC) is like for like."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

TimeLike = str | datetime | pd.Timestamp


def to_utc(t: TimeLike) -> pd.Timestamp:
    """A point in time as a UTC timestamp: naive times are read as UTC, aware ones converted."""
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def parse_cutoff(value: TimeLike, name: str = "cutoff") -> pd.Timestamp:
    """A cutoff a user gave (``2025-06-01``, an ISO time, a timestamp) as UTC; naive dates
    are UTC midnight. A ValueError names ``name`` (the CLI passes its option, ``--as-of``)."""
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} {value!r} is not a date or time (e.g. 2025-06-01)") from exc
    if pd.isna(t):
        raise ValueError(f"{name} {value!r} is not a date or time (e.g. 2025-06-01)")
    return to_utc(t)
