"""issue 18 (journeys): the uplift model recovers a planted response and its targeting
beats contacting everyone; the Qini curve and uplift-at-k on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.uplift.metrics import qini_curve, uplift_at_k
from training.uplift.model import TwoModelUplift

TRUE_UPLIFT = np.array([0.15, 0.05, 0.0])  # segment 0 persuadable, 2 buys anyway
BASE_RATE = np.array([0.10, 0.15, 0.40])


def planted(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Customers in three segments (seen through a noisy feature too), half contacted at
    random; contact raises the purchase rate by the segment's TRUE_UPLIFT."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, 3, n)
    X = pd.DataFrame(
        {
            "loyalty_tier": segment.astype(np.float32),
            "spend_90d": (segment * 40 + rng.gamma(2.0, 20.0, n)).astype(np.float32),
            "noise": rng.normal(size=n).astype(np.float32),
        }
    )
    treated = rng.random(n) < 0.5
    p = BASE_RATE[segment] + treated * TRUE_UPLIFT[segment]
    return X, treated, rng.random(n) < p, segment


def test_the_planted_uplift_is_recovered_per_segment():
    X, treated, outcome, _ = planted(30_000, seed=1)
    model = TwoModelUplift().fit(X, treated, outcome)
    X_new, _, _, segment = planted(9_000, seed=2)
    predicted = model.predict_uplift(X_new)
    by_segment = np.array([predicted[segment == s].mean() for s in range(3)])
    assert np.abs(by_segment - TRUE_UPLIFT).max() < 0.04, by_segment
    assert by_segment[0] > by_segment[1] > by_segment[2]


def test_uplift_targeting_beats_contacting_everyone_and_random_on_a_later_period():
    X, treated, outcome, _ = planted(30_000, seed=3)
    model = TwoModelUplift().fit(X, treated, outcome)
    X_later, t_later, y_later, _ = planted(30_000, seed=4)  # the evaluation period
    score = model.predict_uplift(X_later)
    top_third = uplift_at_k(score, t_later, y_later, 1 / 3)
    everyone = uplift_at_k(score, t_later, y_later, 1.0)
    assert top_third > everyone + 0.05, (top_third, everyone)
    assert abs(top_third - TRUE_UPLIFT[0]) < 0.03  # the top third is segment 0
    random_score = np.random.default_rng(5).random(len(score))
    model_qini = qini_curve(score, t_later, y_later).coefficient
    assert model_qini > 0
    assert model_qini > 3 * abs(qini_curve(random_score, t_later, y_later).coefficient)


def test_qini_curve_by_hand():
    # scores 3 > 2 > 1 (twice, tied); contacted / holdout and outcomes below
    score = np.array([3.0, 2.0, 1.0, 1.0])
    treated = np.array([True, False, True, False])
    outcome = np.array([True, False, False, True])
    curve = qini_curve(score, treated, outcome)
    # after row 1: 1 contacted conversion, no holdout yet -> 1
    # after row 2: 1 - 0 * 1/1 = 1; after rows 3-4 (one tie): 1 - 1 * 2/2 = 0
    assert curve.share.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert curve.gain.tolist() == [0.0, 1.0, 1.0, 0.0]
    # trapezoids of the curve minus the random line (flat at 0 here, the gain ends at 0):
    # 0.25 * (0 + 1) / 2 + 0.25 * 1 + 0.5 * (1 + 0) / 2
    assert curve.coefficient == pytest.approx(0.125 + 0.25 + 0.25)
    assert qini_curve(np.zeros(4), treated, outcome).coefficient == 0.0  # no ranking at all


def test_uplift_at_k_by_hand_and_its_refusals():
    score = np.array([4.0, 3.0, 2.0, 1.0])
    treated = np.array([True, False, True, False])
    outcome = np.array([True, False, False, False])
    assert uplift_at_k(score, treated, outcome, 0.5) == 1.0  # top 2: 1/1 - 0/1
    assert uplift_at_k(score, treated, outcome, 1.0) == 0.5  # 1/2 - 0/2
    assert np.isnan(uplift_at_k(score, treated, outcome, 0.25))  # no holdout in the top 1
    with pytest.raises(ValueError, match="k must be a share"):
        uplift_at_k(score, treated, outcome, 0)


def test_a_group_without_both_outcomes_is_refused_by_name():
    X, treated, outcome, _ = planted(1_000, seed=6)
    outcome = outcome & treated  # the holdout never converts
    with pytest.raises(ValueError, match=r"the holdout group has .* rows and 0 conversions"):
        TwoModelUplift().fit(X, treated, outcome)


def test_a_decision_converts_on_a_purchase_inside_its_window_only():
    from training.uplift.job import _bought_within

    t = pd.Timestamp("2026-03-01", tz="UTC")
    day = pd.Timedelta(days=1)
    decisions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d"],
            "decided_at": [t, t + 10 * day, t, t, t],
        }
    )
    purchases = pd.DataFrame(
        {
            "customer_id": ["a", "b", "b", "c"],
            "ts": [t + 2 * day, t - day, t + 8 * day, t],  # b: before, then too late
        }
    )
    assert _bought_within(decisions, purchases, 7 * day).tolist() == [
        True,  # a: 2 days after
        False,  # a's second decision: no purchase after it
        False,  # b: one before the decision, one after the window
        True,  # c: at the decision's moment (inclusive)
        False,  # d: never bought
    ]


def test_the_time_split_keeps_later_moments_for_evaluation():
    from training.uplift.job import time_split

    moments = pd.Series(pd.date_range("2026-01-01", periods=8, freq="7D", tz="UTC").repeat(3))
    assert time_split(moments, 0.25) == pd.Timestamp("2026-02-12", tz="UTC")  # last 2 of 8
    with pytest.raises(ValueError, match="span 1 moment"):
        time_split(moments[:3], 0.25)


@pytest.mark.slow
def test_on_the_planted_journey_history_uplift_targeting_beats_contacting_everyone(tmp_path):
    """The generator plants the win-back's response (tier x the contact's channel); the
    job's model, trained on the earlier decisions, measured on the later ones, finds more
    incremental purchases per message in its top 30% than contacting everyone gives."""
    from typer.testing import CliRunner

    from serving.cli.main import app

    env = {"OMNI_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    synth = ["data", "synth", "--customers", "10000", "--days", "180", "--seed", "7"]
    res = runner.invoke(app, [*synth, "--journey-response"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["journeys", "train-uplift", "winback", "--json"], env=env)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    m = report["metrics"]
    assert m["uplift_top_30pct"] > m["uplift_everyone"] + 0.02, m
    assert m["qini"] > max(0.0, m["qini_random"]), m
    assert (tmp_path / "home" / "journeys" / "uplift" / "winback.pkl").exists()
    assert report["mlflow_run_id"]
