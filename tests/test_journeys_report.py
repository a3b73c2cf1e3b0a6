"""The journeys report (issue 18): conversion within the attribution window, contacted vs
journey holdout, Newcombe interval, incremental purchases and revenue."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serving.journeys.report import (
    attributed_outcomes,
    cumulative_uplift,
    journey_report,
    newcombe,
    plot_cumulative,
    report_metrics,
)

T0 = pd.Timestamp("2026-11-01", tz="UTC")
WEEK = pd.Timedelta(days=7)


def _decision(customer: str, status: str, reason: str, day: int = 0, journey: str = "winback"):
    return {
        "customer_id": customer,
        "journey": journey,
        "channel": "email",
        "status": status,
        "reason": reason,
        "decided_at": T0 + pd.Timedelta(days=day),
    }


def _tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    decisions = pd.DataFrame(
        [
            _decision("a", "sent", "sent"),
            _decision("b", "delayed", "quiet_hours"),
            _decision("c", "sent", "sent"),
            _decision("d", "not_sent", "holdout_journey"),
            _decision("e", "not_sent", "holdout_journey"),
            _decision("f", "not_sent", "capped"),  # neither group
        ]
    )
    purchases = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d", "e", "f"],
            "ts": [
                T0 + pd.Timedelta(days=1),  # a: two purchases in the window
                T0 + pd.Timedelta(days=2),
                T0 + WEEK,  # b: at the window's end: outside
                T0 - pd.Timedelta(hours=1),  # c: before the decision: does not count
                T0 + pd.Timedelta(days=6),  # d: inside
                T0 + pd.Timedelta(days=30),  # e: long after
                T0 + pd.Timedelta(days=1),
            ],
            "amount": [10.0, 30.0, 99.0, 99.0, 20.0, 5.0, 7.0],
        }
    )
    return decisions, purchases


def test_conversion_counts_the_window_only_and_once_per_decision():
    decisions, purchases = _tiny()
    rows = attributed_outcomes(decisions, purchases, WEEK).set_index("customer_id")
    assert list(rows.index) == ["a", "b", "c", "d", "e"]
    assert rows["converted"].to_dict() == {"a": True, "b": False, "c": False, "d": True, "e": False}
    assert rows["revenue"].to_dict() == {"a": 40.0, "b": 0.0, "c": 0.0, "d": 20.0, "e": 0.0}
    assert rows["group"].to_dict() == {
        "a": "contacted",
        "b": "contacted",
        "c": "contacted",
        "d": "holdout",
        "e": "holdout",
    }


def test_report_by_hand():
    decisions, purchases = _tiny()
    (row,) = journey_report(decisions, purchases, WEEK).to_dict("records")
    assert (row["journey"], row["channel"]) == ("winback", "email")
    assert (row["contacted"], row["holdout"]) == (3, 2)
    assert row["conversion_contacted"] == pytest.approx(1 / 3)
    assert row["conversion_holdout"] == pytest.approx(1 / 2)
    assert row["uplift"] == pytest.approx(1 / 3 - 1 / 2)
    assert row["incremental_purchases"] == pytest.approx((1 / 3 - 1 / 2) * 3)
    assert row["revenue_per_customer_contacted"] == pytest.approx(40 / 3)
    assert row["revenue_per_customer_holdout"] == pytest.approx(10.0)
    assert row["incremental_revenue"] == pytest.approx((40 / 3 - 10) * 3)
    # Welch: sample variances of [40, 0, 0] and [20, 0]
    half = 1.959964 * math.sqrt(np.var([40, 0, 0], ddof=1) / 3 + np.var([20, 0], ddof=1) / 2)
    assert row["revenue_ci_low"] == pytest.approx(40 / 3 - 10 - half, rel=1e-5)
    assert row["revenue_ci_high"] == pytest.approx(40 / 3 - 10 + half, rel=1e-5)
    assert row["ci_low"] < row["uplift"] < row["ci_high"]


def test_newcombe_by_hand():
    # Newcombe (1998), table II example 1: 56/70 vs 48/80 -> 0.0524 .. 0.3339
    low, high = newcombe(np.array([56]), np.array([70]), np.array([48]), np.array([80]))
    assert low[0] == pytest.approx(0.0524, abs=5e-4)
    assert high[0] == pytest.approx(0.3339, abs=5e-4)


def test_groups_without_holdout_have_no_difference():
    decisions, purchases = _tiny()
    decisions = decisions[decisions["reason"] != "holdout_journey"]
    (row,) = journey_report(decisions, purchases, WEEK).to_dict("records")
    assert row["holdout"] == 0 and math.isnan(row["uplift"]) and math.isnan(row["ci_low"])


def test_cumulative_and_plot(tmp_path):
    decisions, purchases = _tiny()
    later = decisions.assign(decided_at=decisions["decided_at"] + pd.Timedelta(days=1))
    frame = cumulative_uplift(pd.concat([decisions, later]), purchases, WEEK)
    assert list(frame["period"].dt.day) == [1, 2]
    assert list(frame["contacted"]) == [3, 6] and list(frame["holdout"]) == [2, 4]
    assert frame["uplift"].iloc[0] == pytest.approx(1 / 3 - 1 / 2)
    path = plot_cumulative(frame, tmp_path / "uplift.png")
    assert path.stat().st_size > 1000


def test_metrics_are_flat_names():
    decisions, purchases = _tiny()
    metrics = report_metrics(journey_report(decisions, purchases, WEEK))
    assert metrics["winback.email.contacted"] == 3.0
    assert metrics["winback.email.uplift"] == pytest.approx(-1 / 6)


def test_report_recovers_the_planted_uplift():
    # issue 18: the synthetic generator plants a known response to the win-back journey
    from features.sources.synthetic import generate

    data = generate(n_customers=3000, days=180, seed=7, journey_response=True)
    person = data.truth["event_person"]["person_id"]
    buys = data.events.loc[data.events["event_type"].eq("purchase"), ["ts", "amount"]]
    buys = buys.assign(customer_id=person[buys.index].to_numpy())
    truth = data.truth["customers"].set_index("customer_id")
    decisions = data.truth["journey_decisions"]
    decisions = decisions.assign(
        tier=truth["tier"].reindex(decisions["customer_id"]).astype(str).to_numpy(),
        on_best_channel=truth["best_channel"]
        .reindex(decisions["customer_id"])
        .astype(str)
        .to_numpy()
        == decisions["channel"].to_numpy(),
    )
    report = journey_report(
        decisions, buys, pd.Timedelta(days=7), by=("journey", "tier", "on_best_channel")
    )
    planted = data.truth["journey_response"]
    both = report.merge(planted, on=["journey", "tier", "on_best_channel"], validate="1:1")
    assert len(both) == 8 and (both["holdout"] > 150).all()
    inside = (both["ci_low"] <= both["expected_uplift"]) & (
        both["expected_uplift"] <= both["ci_high"]
    )
    assert inside.all(), both[["tier", "on_best_channel", "expected_uplift", "ci_low", "ci_high"]]
    large = both["planted_lift"] >= 0.1
    assert large.sum() == 3 and (both.loc[large, "ci_low"] > 0).all()
    gold = both["tier"].eq("gold")
    assert ((both.loc[gold, "ci_low"] < 0) & (both.loc[gold, "ci_high"] > 0)).all()
    # the contacted got their message_sent, the holdout none
    sent = data.events[data.events["campaign_id"].eq("JR-winback")]
    assert len(sent) == decisions["status"].eq("sent").sum()


def test_journey_response_off_leaves_the_output_alone():
    from features.sources.synthetic import generate

    plain = generate(n_customers=300, days=60, seed=3)
    assert "journey_decisions" not in plain.truth
    assert not plain.events["campaign_id"].eq("JR-winback").any()


def _cli(tmp_path, monkeypatch, decisions=None):
    import typer
    from typer.testing import CliRunner

    from features.settings import get_settings
    from serving.cli import journeys_report
    from serving.journeys.decisions import SCHEMA, write_decisions

    settings = get_settings({"OMNI_HOME": str(tmp_path / "home")})
    if decisions is not None:
        full = decisions.reset_index(drop=True).assign(
            decision_id=lambda d: "r1-" + d.index.astype(str),
            run_id="r1",
            trigger_ts=decisions["decided_at"].to_numpy(),
            send_at=pd.NaT,
            products=[[] for _ in range(len(decisions))],
            churn_probability=np.nan,
            channel_probability=np.nan,
            uplift=np.nan,
            priority=np.int32(0),
        )
        write_decisions(settings.journeys_dir, full[SCHEMA.names], "r1")
    _, purchases = _tiny()
    monkeypatch.setattr(journeys_report, "_purchases", lambda _s, _start: purchases)
    app = typer.Typer()
    app.command()(journeys_report.report)
    return lambda *args: CliRunner().invoke(app, list(args), obj=settings)


def test_cli_report_json_table_and_plot(tmp_path, monkeypatch):
    import json

    decisions, _ = _tiny()
    run = _cli(tmp_path, monkeypatch, decisions)
    res = run("--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["window_days"] == 7.0 and doc["decisions"] == 6  # the policy's default
    (row,) = doc["rows"]
    assert (row["contacted"], row["holdout"]) == (3, 2)
    res = run("--by", "journey", "--plot", str(tmp_path / "p.png"), "--window-days", "1.5")
    assert res.exit_code == 0, res.output
    assert "winback" in res.stdout and (tmp_path / "p.png").exists()


def test_cli_report_without_decisions_or_with_bad_options(tmp_path, monkeypatch):
    run = _cli(tmp_path, monkeypatch)
    res = run()
    assert res.exit_code == 1 and "no journey decisions" in res.output
    assert run("--by", "tier").exit_code == 2
    assert run("--since", "2026-12-02", "--until", "2026-12-01").exit_code == 2


def test_cli_report_logs_to_mlflow(tmp_path, monkeypatch):
    import json

    import mlflow

    decisions, _ = _tiny()
    run = _cli(tmp_path, monkeypatch, decisions)
    res = run("--json", "--mlflow")
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.stdout)["mlflow_run_id"]
    from features.settings import get_settings

    client = mlflow.MlflowClient(get_settings({"OMNI_HOME": str(tmp_path / "home")}).tracking_uri)
    logged = client.get_run(run_id)
    assert logged.data.metrics["winback.email.contacted"] == 3.0
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"journey_report.csv", "journeys_cumulative_uplift.png"}


def test_loading_synthetic_with_the_response_fills_the_decision_log(tmp_path):
    from typer.testing import CliRunner

    from features.settings import get_settings
    from serving.cli.main import app
    from serving.journeys.decisions import read_decisions

    settings = get_settings({"OMNI_HOME": str(tmp_path / "home")})
    res = CliRunner().invoke(
        app,
        [
            "data",
            "synth",
            "--customers",
            "300",
            "--days",
            "60",
            "--seed",
            "3",
            "--journey-response",
        ],
        env={"OMNI_HOME": str(settings.home)},
    )
    assert res.exit_code == 0, res.output
    assert "planted journey history ->" in res.output
    decisions = read_decisions(settings.journeys_dir)
    assert len(decisions) > 100
    assert set(decisions["reason"]) == {"sent", "holdout_journey"}
