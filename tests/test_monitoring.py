"""Drift checks (issue 19): PSI per feature and score, flagging a shifted table and
passing an unshifted one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.job_names import FAIL_ABOVE, WARN_ABOVE
from training.monitoring import drift_report, psi


def _table(rng: np.random.Generator, n: int = 4000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "orders_90d": rng.poisson(3, n).astype(float),
            "monetary_90d": rng.gamma(2.0, 40.0, n),
            "days_since_last_purchase": np.where(
                rng.random(n) < 0.1, np.nan, rng.exponential(30, n)
            ),
        }
    )


def test_psi_is_near_zero_for_the_same_population_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20_000), rng.normal(0, 1, 20_000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, b) < 0.01
    assert psi(a, b + 1.0) > FAIL_ABOVE
    with_nan = np.where(rng.random(20_000) < 0.3, np.nan, b)  # missing values are a bin
    assert psi(a, with_nan) > FAIL_ABOVE
    assert psi(np.full(100, 5.0), np.full(100, 5.0)) == pytest.approx(0.0, abs=1e-12)


def test_a_shifted_feature_table_is_flagged_and_an_unshifted_one_passes():
    rng = np.random.default_rng(1)
    reference, fresh = _table(rng), _table(rng)
    features = list(reference.columns)
    calm = drift_report(reference, fresh, features, cold_after_days=60)
    assert calm.above(WARN_ABOVE) == {}
    shifted = fresh.assign(monetary_90d=fresh["monetary_90d"] * 2.5)
    report = drift_report(reference, shifted, features, cold_after_days=60)
    assert list(report.above(FAIL_ABOVE)) == ["feature:monetary_90d"]
    assert report.features.index[0] == "monetary_90d"
    ref_cold, cur_cold = report.cold_share
    assert 0.1 <= ref_cold < 0.3 and abs(ref_cold - cur_cold) < 0.05


def test_scores_of_the_models_are_compared_too():
    rng = np.random.default_rng(2)
    reference, current = _table(rng), _table(rng)

    class Threshold:  # a stand-in model: probability from one column
        classes_ = np.array(["web", "email"])

        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            p = 1 / (1 + np.exp(-(X["orders_90d"].to_numpy() - 3)))
            return np.c_[1 - p, p]

    moved = current.assign(orders_90d=current["orders_90d"] + 3)
    report = drift_report(reference, moved, ["orders_90d"], Threshold(), Threshold())
    assert set(report.scores) == {"churn", "next_best_channel_web", "next_best_channel_email"}
    assert report.scores["churn"] > FAIL_ABOVE
    assert "score:churn" in report.above(FAIL_ABOVE)
