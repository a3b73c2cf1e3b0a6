"""issue 17: the shared online state in Redis (``OMNI_ONLINE_STORE``), against a real
redis-server. Two in-process "workers" (each its own snapshot scorer, state, identity
graph and Redis connection) take batches in turn: both end with the rows and customer
ids one worker taking every batch gets; Redis going down refuses batches (nothing half
kept) while the state stays; back up, nothing acknowledged is lost. The service-level
checks (`omni serve --workers 2`, kill -9) are in tests/test_live_service.py."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from features.settings import get_settings
from features.store.events import read_events, read_identity_graph, read_table
from serving.live.identity import OnlineIdentity
from serving.live.ingest import LiveEvents
from serving.live.redis_journal import JournalUnavailable, RedisJournal
from serving.live.state import LiveState, window_start
from serving.online import LIST_DEPTH, latest_snapshot, load_snapshot
from serving.scoring import Scorer


@pytest.fixture(scope="module")
def stored(trained_home, tmp_path_factory):
    copy = tmp_path_factory.mktemp("redis") / "home"
    shutil.copytree(trained_home, copy)
    home = get_settings({"OMNI_HOME": str(copy)})
    snap = load_snapshot(latest_snapshot(home))
    start = window_start(snap.as_of)
    return {
        "home": home,
        "snapshot": snap,
        "window": read_events(home.store_dir, start=start),
        "customers": read_table(home.store_dir, "customers"),
        "graph": read_identity_graph(home.store_dir),
        "products": read_table(home.store_dir, "products")["product_id"].tolist(),
    }


def worker(stored, url: str) -> LiveEvents:
    """What one service worker holds: its scorer and state, its graph, its connection."""
    scorer = Scorer(stored["snapshot"], num_threads=1, ranked_lists=LIST_DEPTH)
    state = LiveState(scorer, stored["window"], stored["customers"], scorer.as_of)
    identity = OnlineIdentity(stored["graph"], stored["home"].max_identity_component)
    return LiveEvents(state, identity, RedisJournal(url, "test"))


def apply(live: LiveEvents) -> None:
    batch = live.take_pending()
    if batch is not None:
        live.state.scorer.apply_rows(live.state.refresh(batch).update)


def batches(stored) -> list[list[dict]]:
    """Batches that link identifiers across batches: a new device seen with a known
    customer's email, then events naming only that device; new customers; purchases."""
    graph = stored["graph"]
    email, owner = graph.loc[graph["email_hash"].notna(), ["email_hash", "resolved_id"]].iloc[0]
    t = stored["snapshot"].as_of + pd.Timedelta(minutes=1)
    view = {"channel": "web", "event_type": "view", "product_id": stored["products"][5]}
    out = []
    for i in range(6):
        ts = (t + pd.Timedelta(minutes=i)).isoformat()
        out.append(
            [
                {**view, "ts": ts, "email_hash": email, "device_id": f"DEV-NEW-{i}"},
                {**view, "ts": ts, "device_id": f"DEV-NEW-{max(i - 1, 0)}"},
                {**view, "ts": ts, "customer_id": f"REDIS-NEW-{i % 2}"},
                {"channel": "store", "event_type": "purchase", "ts": ts, "store_id": "S001",
                 "customer_id": str(owner), "product_id": stored["products"][i],
                 "order_id": f"R{i}", "quantity": 1, "amount": 2.0},
            ]
        )  # fmt: skip
    return out


def test_two_workers_end_with_one_workers_state(stored, redis_server):
    a, b = worker(stored, redis_server.url), worker(stored, redis_server.url)
    receipts = []
    for i, records in enumerate(batches(stored)):
        receipts.append((a if i % 2 == 0 else b).accept(records))
        apply(a if i % 3 else b)  # workers apply at their own pace
    apply(a)
    apply(b)
    # one worker taking every batch (a fresh Redis namespace)
    alone = LiveEvents(
        worker(stored, redis_server.url).state,
        OnlineIdentity(stored["graph"], stored["home"].max_identity_component),
        RedisJournal(redis_server.url, "alone"),
    )
    expected = [alone.accept(records) for records in batches(stored)]
    apply(alone)
    assert [r.customer_ids for r in receipts] == [r.customer_ids for r in expected]
    touched = pd.Index(sorted({c for r in expected for c in r.customer_ids}))
    for live in (a, b):
        pos = live.state.scorer.positions(list(touched))
        want = alone.state.scorer.positions(list(touched))
        assert (pos >= 0).all()
        np.testing.assert_allclose(
            live.state.scorer.churn(pos), alone.state.scorer.churn(want), rtol=1e-9
        )
        pd.testing.assert_frame_equal(
            live.state.rows_of(touched, live.state.clock),
            alone.state.rows_of(touched, alone.state.clock),
        )
    # a retry is a duplicate on the other worker too
    again = b.accept(batches(stored)[0])
    assert again.accepted == 0 and again.duplicates == len(batches(stored)[0])


def test_redis_down_refuses_batches_and_keeps_the_state(stored, redis_server):
    live = worker(stored, redis_server.url)
    first = batches(stored)[0]
    assert live.accept(first).accepted == len(first)
    apply(live)
    owner = live.accept(batches(stored)[1]).customer_ids[-1]
    apply(live)
    churn = live.state.scorer.churn(live.state.scorer.positions([owner]))
    redis_server.stop()
    with pytest.raises(JournalUnavailable, match="not answering"):
        live.accept(batches(stored)[2])
    with pytest.raises(JournalUnavailable):
        live.take_pending()
    np.testing.assert_array_equal(  # scoring goes on from the state it has
        live.state.scorer.churn(live.state.scorer.positions([owner])), churn
    )
    redis_server.start()  # the same data folder: what was synced is back
    journal = RedisJournal(redis_server.url, "test")
    assert journal.count == len(first) + len(batches(stored)[1])
    assert len(journal.read()) == journal.count
    assert live.accept(batches(stored)[2]).accepted == len(batches(stored)[2])


def test_compaction_keeps_what_a_running_worker_has_not_applied(stored, redis_server):
    from serving.live.compact import compact

    settings = stored["home"]
    settings = type(settings)(
        **{**settings.__dict__, "online_store": redis_server.url, "online_namespace": "test"}
    )
    live = worker(stored, redis_server.url)
    live.accept(batches(stored)[0])
    apply(live)  # applied (and its cursor recorded)
    live.accept(batches(stored)[1])  # not applied yet
    result = compact(settings)
    assert result.events == len(batches(stored)[0]) and result.service_running
    left = live.journal.read()
    assert len(left) == len(batches(stored)[1])
    assert compact(settings).events == 0  # nothing more until the worker applies it
    apply(live)
    assert compact(settings).events == len(batches(stored)[1])
    stored_ids = read_events(settings.store_dir)["event_id"]
    assert live.journal.known(stored_ids.iloc[-3:]).all()  # ids stay known after compaction


def test_each_worker_counts_what_it_took_until_its_state_applies_it(stored, redis_server):
    """Back-pressure counts a worker's own events until a refresh of its applied them
    (the other worker's batches, read from the stream, are not its own)."""
    first, second = worker(stored, redis_server.url), worker(stored, redis_server.url)
    one, two = batches(stored)[:2]
    first.accept(one)
    second.accept(two)
    assert (first.behind, second.behind) == (len(one), len(two))
    apply(first)  # reads both batches from the stream
    first.applied()
    assert (first.behind, second.behind) == (0, len(two))
    apply(second)
    second.applied()
    assert second.behind == 0
