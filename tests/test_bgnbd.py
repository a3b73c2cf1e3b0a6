"""BG/NBD (issue 16): the fit recovers the published CDNOW parameters, P(alive) and expected
purchases equal the paper's closed forms, and degenerate input fails with a clear error.

The CDNOW data (2,357 customers, 39-week calibration) come from the ``lifetimes`` package, a
test-only dev dependency that ships them; only its data files are read, never imported
(the package itself no longer imports on current Python tooling).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.customer_models.bgnbd import BetaGeoModel, calibration_summary, churn_scores

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science.
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LOG_LIKELIHOOD = -9582.4


def _cdnow_dir() -> Path:
    spec = importlib.util.find_spec("lifetimes")  # locates the package without importing it
    assert spec is not None, "the dev dependency lifetimes (CDNOW data) is not installed"
    return Path(spec.submodule_search_locations[0]) / "datasets"


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    """Columns frequency, recency, T (weeks), one row per customer, index ID."""
    return pd.read_csv(_cdnow_dir() / "cdnow_customers_summary.csv", index_col="ID")


@pytest.fixture(scope="module")
def cdnow_events() -> pd.DataFrame:
    """The raw CDNOW 1/10 sample as a contract-shaped purchase log."""
    raw = pd.read_csv(
        _cdnow_dir() / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "quantity", "amount"],
        dtype={"customer_id": str, "date": str},
    )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d", utc=True),
            "event_type": "purchase",
        }
    )


def test_fit_recovers_the_published_cdnow_parameters(cdnow_summary):
    # Issue 16: maximum likelihood on the CDNOW summary gives FHL 2005's estimates.
    s = cdnow_summary
    assert len(s) == 2357
    model = BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])
    for name, value in PUBLISHED.items():
        assert model.params_[name] == pytest.approx(value, rel=0.05), (name, model.params_)
    assert model.log_likelihood_ == pytest.approx(PUBLISHED_LOG_LIKELIHOOD, abs=0.5)
    assert model.converged_


def test_summary_from_the_raw_log_equals_the_published_summary(cdnow_events, cdnow_summary):
    # Issue 16: purchase days before the cutoff (1997-10-01: weeks 1-39) give the published
    # x, t_x and T (in days here; the published table is in weeks, rounded to 2 decimals).
    summary = calibration_summary(cdnow_events, "1997-10-01")
    summary.index = summary.index.astype(int)
    summary = summary.sort_index()
    published = cdnow_summary.sort_index()
    assert summary.index.equals(published.index)
    np.testing.assert_array_equal(summary["frequency"], published["frequency"])
    np.testing.assert_allclose(summary["recency"] / 7, published["recency"], atol=0.006)
    np.testing.assert_allclose(summary["age"] / 7, published["T"], atol=0.006)
    # Days instead of weeks: the same shape parameters, alpha seven times larger.
    model = BetaGeoModel().fit(summary["frequency"], summary["recency"], summary["age"])
    assert model.params_["r"] == pytest.approx(PUBLISHED["r"], rel=0.05)
    assert model.params_["alpha"] == pytest.approx(7 * PUBLISHED["alpha"], rel=0.05)


def test_summary_counts_days_not_orders_and_ignores_other_events():
    ts = pd.to_datetime(
        [
            "2024-01-01 09:00",
            "2024-01-01 17:00",
            "2024-01-05 12:00",
            "2024-01-08 23:59",
            "2024-01-03 00:00",
        ],
        utc=True,
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "ts": ts,
            "event_type": ["purchase", "purchase", "view", "purchase", "purchase"],
        }
    )
    summary = calibration_summary(events, "2024-01-10")
    assert summary.loc["a"].tolist() == [1.0, 7.0, 8.0]  # two orders on day 0 are one purchase
    assert summary.loc["b"].tolist() == [0.0, 0.0, 6.0]
    # Events on or after the cutoff are not read.
    assert calibration_summary(events, "2024-01-02").index.tolist() == ["a"]


def _hyp2f1_series(a: float, b: float, c: float, z: float, terms: int = 4000) -> float:
    total, term = 1.0, 1.0
    for k in range(terms):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
    return total


def _closed_form(x: int, t_x: float, T: float, t: float) -> tuple[float, float]:
    """P(alive) (eq. 11) and E[Y(t) | x, t_x, T] (eq. 10) of FHL 2005, written out by hand."""
    r, alpha, a, b = (PUBLISHED[k] for k in ("r", "alpha", "a", "b"))
    odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    f21 = _hyp2f1_series(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    top = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * f21)
    return 1 / (1 + odds), top / (1 + odds)


@pytest.mark.parametrize(
    ("x", "t_x", "T"),
    [(0, 0.0, 38.86), (1, 1.71, 38.86), (2, 30.43, 38.86), (7, 35.14, 38.86), (3, 5.0, 30.0)],
)
def test_p_alive_and_expected_purchases_match_the_closed_form(x, t_x, T):
    # Issue 16: the vectorised formulas against the paper's, one customer at a time.
    model = BetaGeoModel()
    model.params_ = dict(PUBLISHED)
    p_alive, expected = _closed_form(x, t_x, T, t=39.0)
    assert model.p_alive([x], [t_x], [T])[0] == pytest.approx(p_alive, rel=1e-9)
    assert model.expected_purchases(39.0, [x], [t_x], [T])[0] == pytest.approx(expected, rel=1e-6)


def test_expected_purchases_of_the_papers_example_customer():
    # FHL 2005 section 5: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in the next 39 weeks.
    model = BetaGeoModel()
    model.params_ = dict(PUBLISHED)
    assert model.expected_purchases(39.0, [2], [30.43], [38.86])[0] == pytest.approx(
        1.226, abs=5e-4
    )
    # A customer silent since 2 weeks into the period is less likely alive than a recent one.
    alive = model.p_alive([2, 2], [2.0, 38.0], [38.86, 38.86])
    assert alive[0] < 0.5 < alive[1]


def test_score_table_covers_every_customer(cdnow_summary, cdnow_events):
    s = cdnow_summary.rename(columns={"T": "age"})
    model = BetaGeoModel().fit(s["frequency"], s["recency"], s["age"])
    scores = model.score(s, horizon=39.0)
    assert scores.index.equals(s.index)
    assert ((scores["p_alive"] > 0) & (scores["p_alive"] <= 1)).all()
    assert (scores["expected_purchases"] > 0).all()
    # Over the 39-week holdout (weeks 40-78) the model predicts about as many purchase days
    # as the customers made (measured: 1,653 predicted, 1,882 actual).
    start = pd.Timestamp("1997-10-01", tz="UTC")
    ts = cdnow_events["ts"]
    holdout = cdnow_events[(ts >= start) & (ts < start + pd.Timedelta(weeks=39))]
    actual = len(holdout.drop_duplicates(["customer_id", "ts"]))
    assert scores["expected_purchases"].sum() == pytest.approx(actual, rel=0.15)


@pytest.mark.parametrize(
    ("frequency", "recency", "age", "message"),
    [
        ([], [], [], "at least one customer"),
        ([0, 0, 0], [0, 0, 0], [10, 20, 30], "repeat buyers"),
        ([1, -1], [3, 0], [10, 10], "frequency"),
        ([1.5], [3], [10], "frequency"),
        ([1], [12], [10], "recency must not exceed age"),
        ([1], [np.nan], [10], "recency"),
        ([1, 2], [3], [10], "one value per customer"),
    ],
)
def test_degenerate_input_fails_with_a_clear_error(frequency, recency, age, message):
    # Issue 16: clear errors naming the field, not a NaN fit.
    with pytest.raises(ValueError, match=message):
        BetaGeoModel().fit(frequency, recency, age)


def test_predicting_before_fit_and_bad_horizon_fail_clearly():
    with pytest.raises(ValueError, match="not fitted"):
        BetaGeoModel().p_alive([1], [2], [3])
    model = BetaGeoModel()
    model.params_ = dict(PUBLISHED)
    with pytest.raises(ValueError, match="horizon"):
        model.expected_purchases(0, [1], [2], [3])


def test_churn_scores_rank_the_holdout_buyers_of_cdnow(cdnow_events):
    # Issue 16: the churn job's BG/NBD baseline on CDNOW's 39/39-week split. Customers who
    # buy nothing in the holdout have fewer expected purchases (measured ROC AUC 0.77).
    # 1 - P(alive) ranks only repeat buyers (0.70): BG/NBD gives every one-time buyer
    # P(alive) = 1, which is why the job picks the score on the validation cutoff.
    from sklearn.metrics import roc_auc_score

    cutoff = pd.Timestamp("1997-10-01", tz="UTC")
    ids = pd.Index(sorted(cdnow_events["customer_id"].unique()))
    scores, model = churn_scores(cdnow_events, cutoff, ids, horizon_days=273)
    assert scores.index.equals(ids)
    assert list(scores.columns) == ["1 - p_alive", "-expected_purchases"]
    ts = cdnow_events["ts"]
    after = cdnow_events[(ts >= cutoff) & (ts < cutoff + pd.Timedelta(days=273))]
    churned = ~ids.isin(after["customer_id"])
    assert roc_auc_score(churned, scores["-expected_purchases"]) > 0.72
    repeat = calibration_summary(cdnow_events, cutoff)["frequency"].reindex(ids).to_numpy() > 0
    assert roc_auc_score(churned[repeat], scores["1 - p_alive"][repeat]) > 0.65
    assert (scores["1 - p_alive"][~repeat] == 0).all()
    assert model.params_["alpha"] == pytest.approx(7 * PUBLISHED["alpha"], rel=0.05)


def test_churn_scores_name_the_cutoff_on_degenerate_data(cdnow_events):
    one_each = cdnow_events.drop_duplicates("customer_id")  # no repeat buyers
    with pytest.raises(ValueError, match=r"BG/NBD at cutoff 1998-07-01: .*repeat buyers"):
        churn_scores(one_each, "1998-07-01", pd.Index(["1"]), horizon_days=30)
    with pytest.raises(ValueError, match="no purchase before it"):
        churn_scores(cdnow_events, "1998-07-01", pd.Index(["1", "nobody"]), horizon_days=30)
