"""End to end through the real CLI: the main job and the Complete Journey load."""

from __future__ import annotations

import pytest
from cli_helpers import omni

from features.store.events import read_events, read_table

pytestmark = pytest.mark.slow


def test_main_job_on_the_embedded_default(trained_home):
    """`omni run --customers 800` (run once per session by the trained_home fixture)."""
    import json

    out = (trained_home.parent / "omni_run.txt").read_text()
    assert "events per channel" in out
    assert "identity resolution vs ground truth: pairwise precision" in out
    assert "churn v1 -> @champion" in out
    # issue 16: every test metric of the model and of each baseline, not only the gate's
    for line in ("baseline recency", "baseline frequency", "baseline bgnbd", "baseline most_used"):
        assert line in out, line
    churn_rows = [row for row in out.splitlines() if "baseline recency" in row]
    assert "roc_auc" in churn_rows[0] and "average_precision" in churn_rows[0]
    assert "next_best_channel v1 -> @champion" in out
    assert "recommender v1 -> @champion" in out
    listed = omni("models", "list", home=trained_home)
    assert listed.returncode == 0, listed.stderr
    assert "churn" in listed.stdout and "champion" in listed.stdout
    events = read_events(trained_home / "store")
    assert events["customer_id"].notna().all()
    assert set(events["channel"].unique()) >= {"web", "app", "store", "email"}
    assert (trained_home / "raw" / "synthetic" / "truth" / "customers.parquet").exists()
    # the finished flow: snapshot, batch scores, the service asked for one customer
    assert "customers scored" in out and (trained_home / "scores" / "latest").is_dir()
    assert "The service answered on port" in out and "curl -s http://127.0.0.1:" in out
    log = trained_home / "service.log"  # what to read when the service does not come up
    assert f"the service's log: {log}" in out and log.stat().st_size > 0
    start = out.index("\n{", out.index("curl -s")) + 1
    answer = json.loads(out[start : out.rindex("}") + 1])
    assert len(answer["items"]) == 3 and answer["churn"]["band"] in {"low", "medium", "high"}
    assert "omni serve" in out.splitlines()[-1]


def test_complete_journey_loads_every_household(tmp_path):
    res = omni("data", "complete-journey", home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "2,469 customers with events" in res.stdout
    store = tmp_path / "store"
    assert read_table(store, "customers")["customer_id"].nunique() == 2469
    # A time range reads only its months: 2017-03 holds purchases, visits and mailers.
    march = read_events(store, start="2017-03-01", end="2017-04-01")
    assert march["ts"].dt.month.eq(3).all() and len(march) > 100_000


def test_the_service_starts_on_another_port_when_its_port_is_taken_as_it_binds(
    trained_home, tmp_path, monkeypatch
):
    """`omni run` checks that port 3000 is free, then starts the service there; another
    process may take it in between (seen beside other test sessions): the service then
    starts once more on a port the system picks, and the log said why."""
    import socket

    import requests

    from features.settings import get_settings
    from serving.cli import run
    from serving.online import latest_snapshot
    from serving.process import free_port

    snapshot = latest_snapshot(get_settings({"OMNI_HOME": str(trained_home)}))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        asked = iter([taken])  # the check says free; the bind then finds it taken
        monkeypatch.setattr(run, "free_port", lambda preferred=0: next(asked, None) or free_port())
        log = tmp_path / "service.log"
        proc, port = run._start_service(snapshot, log)
    try:
        assert port != taken
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        assert run.PORT_TAKEN not in log.read_text()  # the log of the start that worked
    finally:
        proc.terminate()
        proc.wait(timeout=30)
