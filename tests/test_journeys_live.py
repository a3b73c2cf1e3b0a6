"""issue 18 (journeys) in real time: a real `omni serve` decides the home's journeys as
live events arrive (a cart abandoned on the web becomes an e-mail in the outbox), with
the batch run's code; a bad journey file dropped in while it runs is refused and the
journeys loaded before stay in use."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import requests
from service_helpers import omni_serve, stop

from features.settings import get_settings
from serving.journeys.decisions import read_decisions

pytestmark = pytest.mark.slow
TIMEOUT = 10
DECIDED_WITHIN = 30.0  # seconds (a round every 5 s, after the refresh)

CART = """
name: cart_live
trigger: {kind: cart_abandoned, within_hours: 1, lookback_hours: 24}
channel: {choose: fixed, allowed: [email]}
content: {source: trigger, k: 2}
holdout: 0
priority: 10
"""
POLICY = """
global_holdout: 0
quiet_hours: null
caps: {}
suppress_after_purchase_hours: 0
max_share_per_run: 1.0
"""


@pytest.fixture
def home(trained_home, tmp_path, snapshot):
    copy = tmp_path / "home"
    shutil.copytree(trained_home, copy)
    (copy / "journeys").mkdir()
    (copy / "journeys" / "cart.yaml").write_text(CART)
    (copy / "journeys" / "policy.yaml").write_text(POLICY)
    return copy


def _emailable(snapshot, n: int) -> list[str]:
    features = snapshot.features
    return features.index[features["consent_email"].astype(bool)][:n].astype(str).tolist()


def _event(customer: str, ts: str, event_type: str, product: str, tag: str) -> dict:
    return {
        "customer_id": customer,
        "ts": ts,
        "channel": "web",
        "event_type": event_type,
        "product_id": product,
        "event_id": f"journey-live-{tag}",
    }


def _decided(home, customer: str) -> dict:
    settings = get_settings({"OMNI_HOME": str(home)})
    deadline = time.monotonic() + DECIDED_WITHIN
    while time.monotonic() < deadline:
        d = read_decisions(settings.journeys_dir)
        mine = d[d["customer_id"] == customer]
        if len(mine):
            return mine.iloc[0].to_dict()
        time.sleep(0.5)
    raise AssertionError(f"no decision for {customer} within {DECIDED_WITHIN} s")


def test_an_abandoned_cart_becomes_an_email_in_the_outbox(home, tmp_path, snapshot):
    x, y, z = _emailable(snapshot, 3)
    proc, url = omni_serve(home, tmp_path / "logs")
    try:
        day = f"{snapshot.as_of:%Y-%m-%d}"
        events = [
            _event(x, f"{day}T10:00:00Z", "add_to_cart", "P000001", "x-cart"),
            _event(y, f"{day}T12:00:00Z", "view", "P000002", "y-view"),  # the clock moves on
        ]
        answer = requests.post(f"{url}/events", json={"events": events}, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        decision = _decided(home, x)
        assert decision["journey"] == "cart_live"
        assert (decision["status"], decision["reason"], decision["channel"]) == (
            "sent",
            "sent",
            "email",
        )
        assert list(decision["products"]) == ["P000001"]
        outbox = list((home / "journeys" / "outbox" / "email").glob("*.jsonl"))
        messages = [json.loads(line) for f in outbox for line in f.read_text().splitlines()]
        assert [m["customer_id"] for m in messages] == [x]

        # a bad file dropped in: refused, the loaded journey goes on deciding
        (home / "journeys" / "broken.yaml").write_text("name: broken\ntrigger: {kind: nope}\n")
        time.sleep(6)  # a round reads the folder again
        events = [
            _event(z, f"{day}T12:30:00Z", "add_to_cart", "P000003", "z-cart"),
            _event(y, f"{day}T14:00:00Z", "view", "P000004", "y-view-2"),
        ]
        answer = requests.post(f"{url}/events", json={"events": events}, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        assert _decided(home, z)["journey"] == "cart_live"
        d = read_decisions(get_settings({"OMNI_HOME": str(home)}).journeys_dir)
        assert (d["customer_id"] == x).sum() == 1, "a trigger decided twice"
    finally:
        stop(proc)
    log = (tmp_path / "logs" / "stdout.txt").read_text()  # BentoML logs to stdout
    assert "journeys not reloaded, the previous ones stay in use" in log
    assert "broken.yaml, journey 'broken', field 'trigger'" in log


def test_two_workers_sharing_redis_decide_each_trigger_once(home, tmp_path, snapshot, redis_server):
    # every worker applies every event (Redis Streams); one of them, the leader, decides
    x, y = _emailable(snapshot, 2)
    store = {"OMNI_ONLINE_STORE": redis_server.url}
    proc, url = omni_serve(home, tmp_path / "logs", "--workers", "2", **store)
    try:
        day = f"{snapshot.as_of:%Y-%m-%d}"
        for event in (
            _event(x, f"{day}T10:00:00Z", "add_to_cart", "P000001", "r-x-cart"),
            _event(y, f"{day}T12:00:00Z", "view", "P000002", "r-y-view"),
        ):  # one batch each, so both workers may take one
            with requests.Session() as session:
                answer = session.post(f"{url}/events", json={"events": [event]}, timeout=TIMEOUT)
            assert answer.status_code == 200, answer.text
        assert _decided(home, x)["journey"] == "cart_live"
        time.sleep(2 * 5 + 1)  # two more rounds of both workers
        d = read_decisions(get_settings({"OMNI_HOME": str(home)}).journeys_dir)
        assert (d["customer_id"] == x).sum() == 1, d[["customer_id", "run_id"]]
    finally:
        stop(proc)
