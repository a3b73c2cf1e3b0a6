"""issue 18 (journeys): `omni journeys run` over a trained home: every decision follows
the contact policy, the log and the outbox agree, a re-run decides nothing twice, a run
over the policy's share writes nothing without --yes, and bad journeys are refused."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from cli_helpers import omni

from features.settings import get_settings
from serving.journeys.decisions import read_decisions
from serving.journeys.holdout import holdout_share
from serving.journeys.spec import load_policy

pytestmark = pytest.mark.slow

WINBACK = """
name: winback_test
trigger: {kind: churn_risk, band: medium}
channel: {choose: next_best, allowed: [email, sms, push]}
content: {source: recommender, k: 3}
priority: 5
holdout: 0.2
"""
CROSS = """
name: cross_test
trigger: {kind: purchase, after_days: 0, lookback_days: 30}
channel: {choose: fixed, allowed: [email]}
content: {source: trigger, k: 2}
priority: 9
holdout: 0.1
"""


@pytest.fixture
def home(trained_home, tmp_path):
    """A copy of the trained home with two journeys that are sure to fire on it."""
    copy = tmp_path / "home"
    shutil.copytree(trained_home, copy)
    folder = copy / "journeys"
    folder.mkdir()
    (folder / "winback.yaml").write_text(WINBACK)
    (folder / "cross.yaml").write_text(CROSS)
    (folder / "policy.yaml").write_text(
        "timezone: Europe/London\ncaps: {per_day: 1, per_week: 3}\nmax_share_per_run: 1.0\n"
        "global_holdout: 0.05\n"
    )
    return copy


def _features(home):
    from serving.online import latest_snapshot, load_snapshot

    return load_snapshot(latest_snapshot(get_settings({"OMNI_HOME": str(home)}))).features


def test_a_run_follows_the_policy_and_fills_the_outbox(home):
    res = omni("journeys", "run", "--json", home=home)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout)
    settings = get_settings({"OMNI_HOME": str(home)})
    decisions = read_decisions(settings.journeys_dir)
    assert len(decisions) == sum(r["customers"] for r in report["decisions"]) > 0
    assert set(decisions["journey"]) == {"winback_test", "cross_test"}
    contacted = decisions[decisions["status"] != "not_sent"]
    assert len(contacted) > 0
    # one message per customer in a run (caps: 1 a day), on a consented channel
    assert not contacted["customer_id"].duplicated().any()
    features = _features(home).loc[contacted["customer_id"]]
    consented = [
        bool(features.iloc[i][f"consent_{ch}"]) for i, ch in enumerate(contacted["channel"])
    ]
    assert all(consented)
    # the global holdout is never contacted, and it is who the stable hash says
    policy = load_policy(settings.journeys_dir)
    share = holdout_share(decisions["customer_id"].to_numpy(), policy.holdout_salt)
    held = decisions["reason"] == "holdout_global"
    assert (
        held.to_numpy().tolist()
        == ((share < policy.global_holdout) & decisions["channel"].notna().to_numpy()).tolist()
    )
    # the cross-sell's content is the purchased products, at most 2
    cross = contacted[contacted["journey"] == "cross_test"]
    assert cross["products"].map(len).between(1, 2).all()
    # the outbox holds exactly the messages, per channel
    lines = []
    for f in (settings.journeys_dir / "outbox").glob("*/*.jsonl"):
        messages = [json.loads(line) for line in f.read_text().splitlines()]
        assert {m["channel"] for m in messages} == {f.parent.name}
        lines += messages
    assert sorted(m["decision_id"] for m in lines) == sorted(contacted["decision_id"])

    again = omni("journeys", "run", "--json", home=home)
    assert again.returncode == 0, again.stderr[-3000:]
    after = read_decisions(settings.journeys_dir)
    new = after[~after["decision_id"].isin(decisions["decision_id"])]
    keys = ["customer_id", "journey", "trigger_ts"]
    assert not new.merge(decisions[keys], on=keys).shape[0], "a trigger decided twice"


def test_over_the_share_nothing_is_written_without_yes(home):
    policy = home / "journeys" / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("max_share_per_run: 1.0", "max_share_per_run: 0.01")
    )
    res = omni("journeys", "run", home=home)
    assert res.returncode == 2, res.stdout[-2000:]
    assert "more than 1% of the" in res.stderr and "nothing was written" in res.stderr
    assert not (home / "journeys" / "decisions").exists()
    dry = omni("journeys", "run", "--dry-run", "--yes", home=home)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "nothing written (--dry-run)" in dry.stdout
    assert not (home / "journeys" / "decisions").exists()
    yes = omni("journeys", "run", "--yes", home=home)
    assert yes.returncode == 0, yes.stderr[-2000:]
    assert list((home / "journeys" / "decisions").glob("*.parquet"))


def test_a_bad_journey_file_is_refused_naming_file_journey_and_field(home):
    (home / "journeys" / "broken.yaml").write_text(
        "name: broken\ntrigger: {kind: churn_risk, band: low}\n"
    )
    res = omni("journeys", "run", home=home)
    assert res.returncode == 2
    assert "broken.yaml, journey 'broken', field 'trigger.band'" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (home / "journeys" / "decisions").exists()


def test_a_moment_before_the_history_reads_no_future(home):
    """Point in time: a run as of an earlier day decides from events before it only."""
    settings = get_settings({"OMNI_HOME": str(home)})
    from serving.online import after_last_event

    earlier = after_last_event(settings) - pd.Timedelta(days=20)
    res = omni("journeys", "run", "--as-of", f"{earlier:%Y-%m-%d}", "--yes", home=home)
    assert res.returncode == 0, res.stderr[-3000:]
    decisions = read_decisions(settings.journeys_dir)
    assert (decisions["trigger_ts"] <= earlier).all()
    assert (decisions["decided_at"] == earlier).all()
