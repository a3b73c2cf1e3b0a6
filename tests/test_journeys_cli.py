"""`omni journeys init / list / check` and the shipped examples (issue 18), in-process
with typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from features.registry import feature_names
from serving.cli.journeys import examples_dir
from serving.cli.main import app
from serving.journeys.spec import (
    POLICY_FILE,
    check_features,
    load_journeys,
    load_policy,
    read_journey_file,
)

EXAMPLES = ("cart_abandonment", "lapsed_store_visitor", "post_purchase_cross_sell", "winback_churn")


def _omni(home, *args: str):
    return CliRunner().invoke(app, ["--home", str(home), *args])


def test_examples_load_and_name_known_features():
    journeys = load_journeys(examples_dir())
    assert [j.name for j in journeys] == list(EXAMPLES)
    assert all(j.description for j in journeys)
    check_features(journeys, feature_names())
    policy = load_policy(examples_dir())
    assert set(policy.purchase_exempt) <= set(EXAMPLES)
    kinds = {j.trigger.kind for j in journeys}
    assert kinds == {"cart_abandoned", "churn_risk", "purchase", "purchase_overdue"}


def test_init_copies_the_examples_once(tmp_path):
    home = tmp_path / "home"
    assert "no journeys" in _omni(home, "journeys", "list").output
    first = _omni(home, "journeys", "init")
    assert first.exit_code == 0, first.output
    folder = home / "journeys"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{name}.yaml" for name in EXAMPLES] + [POLICY_FILE]
    )
    (folder / "winback_churn.yaml").write_text((folder / "winback_churn.yaml").read_text() + "\n")
    edited = (folder / "winback_churn.yaml").read_text()
    again = _omni(home, "journeys", "init")
    assert again.exit_code == 2
    assert "already holds journeys" in again.output
    assert (folder / "winback_churn.yaml").read_text() == edited  # never overwritten


def test_init_keeps_an_existing_policy(tmp_path):
    home = tmp_path / "home"
    (home / "journeys").mkdir(parents=True)
    (home / "journeys" / POLICY_FILE).write_text("timezone: Europe/Paris\n")
    result = _omni(home, "journeys", "init")
    assert result.exit_code == 0, result.output
    assert load_policy(home / "journeys").timezone == "Europe/Paris"
    assert len(load_journeys(home / "journeys")) == len(EXAMPLES)


def test_list_table_and_json(tmp_path):
    home = tmp_path / "home"
    _omni(home, "journeys", "init")
    table = _omni(home, "journeys", "list")
    assert table.exit_code == 0, table.output
    for name in EXAMPLES:
        assert name in table.output
    assert "cart_abandoned" in table.output and "direct_mail (fixed)" in table.output
    listed = _omni(home, "journeys", "list", "--json")
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.output)
    assert [j["name"] for j in document] == list(EXAMPLES)
    assert document[0]["trigger"] == {
        "kind": "cart_abandoned",
        "within_hours": 4.0,
        "lookback_hours": 48.0,
    }


def test_list_names_the_problems_of_a_bad_folder(tmp_path):
    home = tmp_path / "home"
    folder = home / "journeys"
    folder.mkdir(parents=True)
    (folder / "bad.yaml").write_text(
        "name: bad\ntrigger: {kind: cart_abandoned, within_hours: -1}\n"
    )
    (folder / "worse.yaml").write_text("name: [unclosed\n")
    result = _omni(home, "journeys", "list")
    assert result.exit_code == 2
    assert "bad.yaml, journey 'bad', field 'trigger.within_hours'" in result.output
    assert "worse.yaml" in result.output and "not valid YAML" in result.output


@pytest.mark.parametrize("name", EXAMPLES)
def test_check_accepts_each_example(name):
    result = CliRunner().invoke(app, ["journeys", "check", str(examples_dir() / f"{name}.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok: 1 journey" in result.output
    assert len(read_journey_file(examples_dir() / f"{name}.yaml")) == 1


def test_check_reports_problems(tmp_path):
    several = tmp_path / "several.yaml"
    several.write_text(
        "journeys:\n"
        "  - {name: one, trigger: {kind: purchase}}\n"
        "  - {name: two, trigger: {kind: churn_risk}}\n"
    )
    ok = CliRunner().invoke(app, ["journeys", "check", str(several)])
    assert ok.exit_code == 0 and "ok: 2 journeys" in ok.output
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        "name: one\ntrigger: {kind: purchase}\n"
        "audience: {where: [{feature: no_such_feature, op: '>', value: 1}]}\n"
    )
    result = CliRunner().invoke(app, ["journeys", "check", str(unknown)])
    assert result.exit_code == 2
    assert "unknown feature 'no_such_feature'" in result.output and "unknown.yaml" in result.output
    missing = CliRunner().invoke(app, ["journeys", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    policy = CliRunner().invoke(app, ["journeys", "check", str(examples_dir() / POLICY_FILE)])
    assert policy.exit_code == 0 and "valid contact policy" in policy.output
