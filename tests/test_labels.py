"""Labels by hand on tiny logs, and the no-leakage rules (labels never read before the cutoff)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract.schema import EVENTS, as_contract_frame
from features.labels import churn_labels, next_channel_labels

T = pd.Timestamp("2025-06-01", tz="UTC")


def _log(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """rows: (customer_id, ts, channel, event_type)."""
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "channel", "event_type"])
    return as_contract_frame(
        df.assign(ts=pd.to_datetime(df["ts"], utc=True, format="ISO8601")), EVENTS
    )


def test_churn_label_by_hand():
    events = _log(
        [
            ("stays", "2025-05-10", "store", "purchase"),
            ("stays", "2025-06-20", "web", "purchase"),
            ("lapses", "2025-04-01", "store", "purchase"),
            ("lapses", "2025-06-05", "email", "open"),  # engaging is not buying
            ("late", "2025-05-01", "app", "purchase"),
            ("late", "2025-08-15", "app", "purchase"),  # after the 60-day horizon
            ("inactive", "2025-01-01", "store", "purchase"),  # outside the 90-day lookback
            ("inactive", "2025-06-02", "store", "purchase"),
            ("returner", "2025-05-30", "web", "purchase"),
            ("returner", "2025-06-03", "web", "return"),  # a return is not a purchase
        ]
    )
    labels = churn_labels(events, T).set_index("customer_id")["churned"].to_dict()
    assert labels == {"late": 1, "lapses": 1, "returner": 1, "stays": 0}


def test_churn_label_boundaries():
    events = _log(
        [
            ("at_cutoff", "2025-05-01", "store", "purchase"),
            ("at_cutoff", "2025-06-01", "store", "purchase"),  # ts == T is in the horizon
            ("horizon_end", "2025-05-01", "store", "purchase"),
            ("horizon_end", "2025-07-31", "store", "purchase"),  # T + 60 d: outside
            ("lookback_start", "2025-03-03", "store", "purchase"),  # T - 90 d: inside
        ]
    )
    labels = churn_labels(events, T).set_index("customer_id")["churned"].to_dict()
    assert labels == {"at_cutoff": 0, "horizon_end": 1, "lookback_start": 1}


def test_next_channel_label_by_hand():
    events = _log(
        [
            # e-mail click 2 days before the next purchase: e-mail carried it.
            ("a", "2025-06-03", "email", "click"),
            ("a", "2025-06-05", "web", "purchase"),
            ("a", "2025-06-20", "store", "purchase"),  # not the next purchase
            # last engagement wins: sms open, then a web view, then the purchase.
            ("b", "2025-06-02", "sms", "open"),
            ("b", "2025-06-04", "web", "view"),
            ("b", "2025-06-04 10:00", "web", "purchase"),
            # engagement 8 days before: outside the 7-day window -> purchase channel.
            ("c", "2025-06-02", "push", "click"),
            ("c", "2025-06-10", "app", "purchase"),
            # the basket's own store visit (same time) is not what led to it: an e-mail
            # click the day before carried this store purchase.
            ("d", "2025-06-06", "email", "click"),
            ("d", "2025-06-07", "store", "store_visit"),
            ("d", "2025-06-07", "store", "purchase"),
            # message_sent is not an engagement.
            ("e", "2025-06-06", "direct_mail", "message_sent"),
            ("e", "2025-06-07", "web", "purchase"),
            # no purchase in the horizon: no label.
            ("f", "2025-06-07", "email", "open"),
        ]
    )
    out = next_channel_labels(events, T).set_index("customer_id")
    assert out["channel"].to_dict() == {
        "a": "email",
        "b": "web",
        "c": "app",
        "d": "email",
        "e": "web",
    }
    assert out.loc["a", "source"] == "engagement"
    assert out.loc["c", "source"] == "purchase"


def test_labels_never_read_before_the_cutoff():
    """Engagement just before the cutoff must not label a purchase just after it."""
    events = _log(
        [
            ("a", "2025-05-31 23:00", "email", "click"),  # before T: invisible to labels
            ("a", "2025-06-01 01:00", "web", "purchase"),
        ]
    )
    assert next_channel_labels(events, T)["channel"].tolist() == ["web"]
    # Changing anything before the cutoff except who was active never changes a label.
    base = churn_labels(events, T)
    noisy = pd.concat([events, _log([("a", "2025-05-20", "sms", "open")])], ignore_index=True)
    pd.testing.assert_frame_equal(churn_labels(noisy, T), base)
    pd.testing.assert_frame_equal(next_channel_labels(noisy, T), next_channel_labels(events, T))


def test_bad_windows_are_rejected():
    events = _log([("a", "2025-06-02", "web", "purchase")])
    with pytest.raises(ValueError, match="horizon_days must be a positive"):
        churn_labels(events, T, horizon_days=0)
    with pytest.raises(ValueError, match="attribution_days must be a positive"):
        next_channel_labels(events, T, attribution_days=-1)
