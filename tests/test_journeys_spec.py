"""issue 18 (journeys): declarations and the contact policy are validated on load, and a
bad file is refused with its path, the journey and the field named."""

from __future__ import annotations

from datetime import time

import pytest

from features.registry import feature_names
from serving.journeys.spec import (
    ContactPolicy,
    JourneyError,
    check_features,
    load_journeys,
    load_policy,
    read_journey_file,
)

CART = """
name: cart_abandonment
trigger: {kind: cart_abandoned, within_hours: 4, lookback_hours: 48}
channel: {choose: next_best, allowed: [email, sms]}
content: {source: trigger, k: 3}
priority: 10
"""


def test_a_journey_file_loads_with_defaults(tmp_path):
    (tmp_path / "cart.yaml").write_text(CART)
    (journey,) = load_journeys(tmp_path)
    assert journey.name == "cart_abandonment"
    assert journey.trigger.kind == "cart_abandoned" and journey.trigger.within_hours == 4
    assert journey.channel.allowed == ("email", "sms")
    assert journey.holdout == 0.1 and journey.delay_hours == 0 and journey.enabled


def test_several_journeys_in_one_file_sorted_by_name(tmp_path):
    (tmp_path / "two.yml").write_text(
        "journeys:\n"
        "  - {name: winback, trigger: {kind: churn_risk}}\n"
        "  - {name: cross_sell, trigger: {kind: purchase, after_days: 3}}\n"
    )
    assert [j.name for j in load_journeys(tmp_path)] == ["cross_sell", "winback"]


def test_every_problem_names_file_journey_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "journeys:\n"
        "  - name: winback\n"
        "    trigger: {kind: churn_risk}\n"
        "    channel: {allowed: [email, web]}\n"
        "    audience: {where: [{feature: orders_365d, op: '>=', value: many}]}\n"
        "  - name: Bad-Name\n"
        "    trigger: {kind: nope}\n"
    )
    with pytest.raises(JourneyError) as caught:
        read_journey_file(bad)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{bad}, journey '") for line in lines), lines
    text = str(caught.value)
    assert "journey 'winback', field 'channel.allowed': ['web'] are not outreach" in text
    assert "journey 'winback', field 'audience.where.0.value'" in text
    assert "journey 'Bad-Name', field 'name'" in text
    assert "journey 'Bad-Name', field 'trigger'" in text and "'nope'" in text


def test_unknown_keys_and_impossible_windows_are_refused(tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text("name: j\ntrigger: {kind: cart_abandoned, within_hours: 50}\ndelay: 3\n")
    with pytest.raises(JourneyError) as caught:
        read_journey_file(f)
    text = str(caught.value)
    assert "field 'trigger'" in text and "lookback_hours must be larger" in text
    assert "field 'delay': Extra inputs are not permitted" in text


def test_broken_yaml_names_the_line(tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text("name: j\ntrigger: {kind: churn_risk\n")
    with pytest.raises(JourneyError, match=rf"^{f}, line \d+: not valid YAML"):
        read_journey_file(f)


def test_a_name_used_twice_is_refused_and_nothing_is_returned(tmp_path):
    (tmp_path / "a.yaml").write_text(CART)
    (tmp_path / "b.yaml").write_text(CART)
    with pytest.raises(JourneyError, match=r"field 'name': already used in .*a\.yaml"):
        load_journeys(tmp_path)


def test_audience_features_are_checked_against_the_registry(tmp_path):
    (tmp_path / "j.yaml").write_text(
        "name: j\ntrigger: {kind: churn_risk}\n"
        "audience: {where: [{feature: orders_365d, op: '>=', value: 2},"
        " {feature: shoe_size, op: '<', value: 9}]}\n"
    )
    journeys = load_journeys(tmp_path)
    with pytest.raises(JourneyError) as caught:
        check_features(journeys, feature_names())
    assert str(caught.value) == (
        "journey 'j', field 'audience.where.1.feature': unknown feature 'shoe_size' "
        "(see `omni features list`)"
    )


def test_the_policy_defaults_and_its_validation(tmp_path):
    assert load_policy(tmp_path) == ContactPolicy()
    (tmp_path / "policy.yaml").write_text(
        "timezone: Europe/London\ncaps: {per_day: 2}\nchannel_caps: {sms: {per_week: 1}}\n"
        "quiet_hours: {start: '22:00', end: '07:30'}\n"
    )
    policy = load_policy(tmp_path)
    assert policy.caps.per_day == 2 and policy.caps.per_week is None
    assert policy.quiet_hours.end == time(7, 30)
    assert load_journeys(tmp_path) == []  # the policy is not a journey
    (tmp_path / "policy.yaml").write_text("timezone: Mars/Base\nchannel_caps: {web: {}}\n")
    with pytest.raises(JourneyError) as caught:
        load_policy(tmp_path)
    text = str(caught.value)
    assert "policy.yaml, field 'timezone': unknown time zone 'Mars/Base'" in text
    assert "field 'channel_caps': ['web'] are not outreach channels" in text


def test_a_customers_time_zone_is_checked_on_load():
    # issue 18: caps and quiet hours count in the customer's zone; a bad one names its row
    import pandas as pd

    from features.contract.schema import CUSTOMERS
    from features.contract.validate import DataError, validate_frame

    raw = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "time_zone": ["Europe/London", "Mars/Base", ""]}
    )
    result = validate_frame(raw, CUSTOMERS, "customers.csv", on_error="quarantine")
    assert result.good["customer_id"].tolist() == ["a", "c"]
    assert result.good["time_zone"].tolist()[0] == "Europe/London"
    assert pd.isna(result.good["time_zone"].tolist()[1])  # empty: the shop's zone
    with pytest.raises(DataError) as caught:
        validate_frame(raw, CUSTOMERS, "customers.csv")
    assert "customers.csv, row 2, column 'time_zone': unknown time zone" in str(caught.value)
