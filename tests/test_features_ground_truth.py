"""Features recover the synthetic generator's planted structure (issue 3).

Identity resolution is not under test here: events carry the true person as customer_id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.customer_features import build_customer_features
from features.sources.synthetic import generate

END = pd.Timestamp("2026-01-01", tz="UTC")
AS_OF = END - pd.Timedelta(days=120)
WINDOWS = (7, 30, 90, 180)


@pytest.fixture(scope="module")
def planted():
    data = generate(n_customers=4000, days=365, seed=11, end=END)
    events = data.events.copy()
    events["customer_id"] = data.truth["event_person"]["person_id"].astype("str").to_numpy()
    features = build_customer_features(events, data.customers, AS_OF, WINDOWS)
    truth = data.truth["customers"].assign(customer_id=lambda t: t["customer_id"].astype(str))
    return features, truth.set_index("customer_id").reindex(features.index)


def test_lapsing_customers_stand_out_before_they_lapse(planted):
    """Customers who lapse in the 30 days after T were already slowing down as of T."""
    f, truth = planted
    active = f["orders_180d"] >= 3
    soon = truth["lapse_ts"].between(AS_OF, AS_OF + pd.Timedelta(days=30), inclusive="left")
    lapsing = f[active & truth["churned"] & soon]
    staying = f[active & ~truth["churned"]]
    assert len(lapsing) >= 40 and len(staying) >= 1000
    trend = "orders_trend_30d_90d"
    assert lapsing[trend].mean() < 0.8 * staying[trend].mean()  # seen: 0.65 vs 0.99
    assert lapsing["orders_30d"].mean() < 0.7 * staying["orders_30d"].mean()  # 0.98 vs 1.72
    overdue = "purchase_overdue"
    assert lapsing[overdue].median() > 1.5 * staying[overdue].median()  # 1.41 vs 0.69


@pytest.mark.parametrize("channel", ["web", "app", "store", "email", "sms", "push", "direct_mail"])
def test_engagement_mix_tracks_planted_affinity(planted, channel):
    f, truth = planted
    engaged = f["engagements_180d"] >= 5
    share = f.loc[engaged, f"share_engagements_{channel}"]
    affinity = truth.loc[engaged, f"affinity_{channel}"]
    assert np.corrcoef(share, affinity)[0, 1] > 0.6  # seen: 0.75 .. 0.85
