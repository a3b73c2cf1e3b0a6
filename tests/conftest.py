"""Shared fixtures: an isolated data home per test, and small contract frames."""

from __future__ import annotations

import pandas as pd
import pytest

from features.settings import Settings, get_settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings whose home (store, MLflow SQLite) lives in the test's tmp dir."""
    return get_settings({"OMNI_HOME": str(tmp_path / "home")})


@pytest.fixture
def raw_events() -> pd.DataFrame:
    """Five good events as a user's CSV would hold them (all text)."""
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", None, "c3"],
            "ts": [
                "2025-01-03T10:00:00Z",
                "2025-01-05 12:30:00",
                "2025-02-01",
                "2025-02-10T08:00:00+01:00",
                "2025-03-01",
            ],
            "channel": ["web", "store", "email", "app", "sms"],
            "event_type": ["view", "purchase", "open", "view", "click"],
            "product_id": ["p1", "p2", None, "p1", None],
            "quantity": [None, "2", None, None, None],
            "amount": [None, "9.5", None, None, None],
            "device_id": [None, None, None, "d9", None],
        }
    )
