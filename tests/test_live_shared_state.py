"""issue 17: the online state itself in Redis (``OMNI_ONLINE_STORE``), against a real
redis-server: one worker (the refresh lease's holder) runs the refresh process and writes
each refresh to a state stream and per-customer hashes; every worker applies the stream.
In process here (two workers: their own scorer, state and connection); the
`omni serve --workers 2` checks are in tests/test_live_service.py."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pandas as pd
import pytest
from test_live_redis import batches, stored  # noqa: F401 (the module's fixture)

from serving.live.identity import OnlineIdentity
from serving.live.ingest import LiveEvents
from serving.live.redis_journal import RedisJournal
from serving.live.redis_state import RedisState
from serving.live.shared import LEASE_TTL_S, SharedState
from serving.live.state import LiveState
from serving.live.state_codec import StateFormatError, decode, encode
from serving.online import LIST_DEPTH
from serving.ranked_lists import AHEAD_PARTS
from serving.scoring import Scorer


def settings_for(stored, url: str):  # noqa: F811
    home = stored["home"]
    return type(home)(**{**home.__dict__, "online_store": url, "online_namespace": "shared"})


def shared_worker(stored, url: str, wait_s: float = 120) -> LiveEvents:  # noqa: F811
    """One service worker with the state in Redis: its scorer, graph and connection."""
    scorer = Scorer(stored["snapshot"], num_threads=1, ranked_lists=LIST_DEPTH)
    journal = RedisJournal(url, "shared")
    state = SharedState(settings_for(stored, url), scorer, journal, wait_s=wait_s)
    identity = OnlineIdentity(stored["graph"], stored["home"].max_identity_component)
    return LiveEvents(state, identity, journal)


def rounds_until(workers, done, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "the state stream did not reach every worker"
        for w in workers:
            w.state.round()
        time.sleep(0.05)


def churn_of(live: LiveEvents, ids: list[str]) -> np.ndarray:
    return live.state.scorer.churn(live.state.scorer.positions(ids))


def test_a_refresh_survives_the_safe_formats(stored):  # noqa: F811
    scorer = Scorer(stored["snapshot"], num_threads=1, ranked_lists=LIST_DEPTH)
    state = LiveState(scorer, stored["window"], stored["customers"], scorer.as_of)
    from serving.live.ingest import checked

    events = checked([e for b in batches(stored) for e in b if "customer_id" in e])
    refreshed = state.refresh(events)
    assert scorer.rank_ahead(refreshed.update.ranking, LIST_DEPTH, chunk=3) > 0  # in chunks
    refresh = refreshed.portable()
    back = decode(encode(refresh), scorer)
    pd.testing.assert_frame_equal(back.rows, refresh.rows)
    assert back.update.ids == refresh.update.ids and back.as_of == refresh.as_of
    for name in ("consent", "churn", "channel"):
        np.testing.assert_array_equal(getattr(back.update, name), getattr(refresh.update, name))
    assert refresh.update.X_churn is None and back.update.X_churn is None  # never sent
    sent, got = refresh.update.ranking, back.update.ranking
    assert got.codes == sent.codes and got.alive == sent.alive
    for name in ("indptr", "item", "sources", "als_rank"):
        np.testing.assert_array_equal(getattr(got.personal, name), getattr(sent.personal, name))
    for name in AHEAD_PARTS:  # the lists ranked ahead
        np.testing.assert_array_equal(getattr(got.ahead, name), getattr(sent.ahead, name))
    # the worker's lists from the decoded parts equal those from the sent ones
    one, two = (Scorer(stored["snapshot"], ranked_lists=LIST_DEPTH) for _ in range(2))
    one.apply_rows(refresh.update)
    two.apply_rows(back.update)
    ids = refresh.update.ids
    for asked in (ids, *([c] for c in ids)):  # together: ranked in full; one: ranked ahead
        a, b = one.recommend(asked, k=10), two.recommend(asked, k=10)
        np.testing.assert_array_equal(a.item, b.item)
        np.testing.assert_allclose(a.score, b.score)


def test_an_entry_that_would_need_pickle_is_refused(stored):  # noqa: F811
    scorer = Scorer(stored["snapshot"], num_threads=1, ranked_lists=LIST_DEPTH)
    state = LiveState(scorer, stored["window"], stored["customers"], scorer.as_of)
    fields = encode(state.refresh(state.live.frame.iloc[:0].assign(raw_customer_id=[])))
    evil = io.BytesIO()
    np.savez(evil, consent=np.array([object()], dtype=object))  # pickled inside the .npy
    fields = {k.encode(): v for k, v in fields.items()} | {b"arrays": evil.getvalue()}
    with pytest.raises(StateFormatError, match="not a state entry"):
        decode(fields, scorer)
    meta = json.loads(fields[b"meta"]) | {"format": 99}
    with pytest.raises(StateFormatError, match="format 99"):
        decode({**fields, b"meta": json.dumps(meta).encode()}, scorer)


# issue 17: one refresher computes, every worker applies; the leader killed, the other
# takes over within the lease's TTL and nothing acknowledged is lost
def test_one_refresher_every_worker_applies_and_a_new_leader_takes_over(stored, redis_server):  # noqa: F811
    a = shared_worker(stored, redis_server.url)
    b = shared_worker(stored, redis_server.url, wait_s=0)  # a leads in its rounds
    assert a.state.process is not None and b.state.process is None  # one refresh process
    receipts = [(a if i % 2 else b).accept(r) for i, r in enumerate(batches(stored)[:3])]
    touched = sorted({c for r in receipts for c in r.customer_ids})
    rounds_until([a, b], lambda: a.state.n_applied == b.state.n_applied == 12)
    np.testing.assert_array_equal(churn_of(a, touched), churn_of(b, touched))
    assert (b.state.scorer.positions(touched) >= 0).all()  # new customers too

    # the per-customer hash holds the fresh row and predictions the worker answers from
    store = RedisState(b.journal)
    owner = receipts[-1].customer_ids[-1]
    kept = store.customer(owner)
    pos = b.state.scorer.positions([owner])
    assert json.loads(kept["churn"]) == pytest.approx(float(b.state.scorer.churn(pos)[0]))
    channels = json.loads(kept["channels"])
    np.testing.assert_allclose(
        [channels[c] or 0.0 for c in b.state.scorer.channels],
        np.nan_to_num(b.state.scorer.next_channel(pos)[0]),
    )
    # the hash's features are the row the churn model read: from them the model gives
    # the worker's churn (the worker keeps predictions, not the rows)
    features = json.loads(kept["features"])
    model = b.state.scorer.churn_model
    row = [np.nan if features[n] is None else features[n] for n in model.features_]
    again = model.predict_matrix(np.array([row], np.float64), num_threads=1)
    assert again[0] == pytest.approx(float(b.state.scorer.churn(pos)[0]), rel=1e-6)

    # the leader dies (stops renewing its lease, its process gone)
    a.state.close()
    more = b.accept(batches(stored)[3])  # taken while nobody refreshes: journaled
    assert more.accepted == len(batches(stored)[3])
    t0 = time.monotonic()
    rounds_until([b], lambda: b.state.process is not None, within=LEASE_TTL_S + 60)
    assert time.monotonic() - t0 < LEASE_TTL_S + 60
    rounds_until([b], lambda: b.state.n_applied == 16)
    # a worker starting now catches up from a base: the same state
    c = shared_worker(stored, redis_server.url, wait_s=0)
    rounds_until([b, c], lambda: c.state.n_applied == 16)
    touched = sorted(set(touched) | set(more.customer_ids))
    np.testing.assert_array_equal(churn_of(b, touched), churn_of(c, touched))
    assert c.state.process is None
    # the stream is trimmed to what every running worker applied
    rounds_until([b, c], lambda: b.state.cursor == c.state.cursor)
    b.journal.redis.delete(store.cursor_prefix + a.journal.worker)  # a's expiry, 30 s on
    b.state.store.trim()
    assert b.journal.redis.xlen(store.stream) <= 1
    for w in (b, c):
        w.state.close()


def test_an_unreadable_state_entry_makes_the_worker_catch_up_from_a_base(stored, redis_server):  # noqa: F811
    a = shared_worker(stored, redis_server.url)
    b = shared_worker(stored, redis_server.url, wait_s=0)
    first = b.accept(batches(stored)[0])
    rounds_until([a, b], lambda: a.state.n_applied == b.state.n_applied == 4)
    # an entry b cannot read (another version's format), then more events
    store = RedisState(b.journal)
    good = b.journal.redis.xrevrange(store.stream, count=1)[0][1]
    meta = json.loads(good[b"meta"]) | {"format": 99}
    b.journal.redis.xadd(store.stream, {**good, b"meta": json.dumps(meta).encode()})
    second = a.accept(batches(stored)[1])
    # b skips it, asks for a base, and ends with a's state, the later events in
    rounds_until([a, b], lambda: b.state.n_applied == a.state.n_applied == 8)
    touched = sorted(set(first.customer_ids) | set(second.customer_ids))
    np.testing.assert_array_equal(churn_of(a, touched), churn_of(b, touched))
    for w in (a, b):
        w.state.close()
