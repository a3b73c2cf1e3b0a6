"""issue 17: the live loop's round starts as soon as POST /events has taken events
(``EventsTaken``), not at the next tick: the refresh process idled half the time. In the
refresh process, a round of many events does not wait for the quarter second either
(``_rounds``), a trickle does."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from types import SimpleNamespace

import pandas as pd

from serving.live.ingest import EventsTaken
from serving.live.refresher import RANK_AHEAD_WITHIN_S, STOP, _rank_ahead, _rounds


def test_a_note_wakes_the_waiting_round_at_once():
    async def scenario() -> tuple[bool, float]:
        taken = EventsTaken()
        asyncio.get_running_loop().call_later(0.05, taken.note)
        start = time.monotonic()
        woke = await taken.wait(lambda: False, timeout=5.0)
        return woke, time.monotonic() - start

    woke, waited = asyncio.run(scenario())
    assert woke
    assert waited < 2.0  # the note, not the 5 s timeout


def test_events_taken_before_the_wait_start_the_round_without_a_note():
    async def scenario() -> bool:
        taken = EventsTaken()
        return await taken.wait(lambda: True, timeout=5.0)

    assert asyncio.run(scenario())


def test_an_old_note_does_not_wake_a_later_wait():
    """A note the last round already served (its events taken) is cleared: without new
    events the next wait runs to its timeout."""

    async def scenario() -> bool:
        taken = EventsTaken()
        taken.note()
        return await taken.wait(lambda: False, timeout=0.05)

    assert not asyncio.run(scenario())


def _batch(n: int) -> tuple[str, pd.DataFrame]:
    return "events", pd.DataFrame({"event_id": [f"e{i}" for i in range(n)]})


def _next_round(rounds, limit_s: float = 5.0) -> list:
    """[the next round ``rounds`` yields], or [] while it has given none after ``limit_s``
    (the list is filled once it does)."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(next(rounds, None)), daemon=True)
    thread.start()
    thread.join(limit_s)
    return out


def test_a_round_of_many_events_starts_before_it_is_due():
    """Rounds due every minute: the second starts as soon as its events reach ``now_at``,
    with every batch received by then."""
    messages: queue.SimpleQueue = queue.SimpleQueue()
    rounds = _rounds(messages, every=60.0, now_at=500)
    messages.put(_batch(3))
    assert _next_round(rounds)[0][3] == 1  # the first round is due at once
    for n in (10, 300, 200):
        messages.put(_batch(n))
    [(kind, events, _, covers, _)] = _next_round(rounds)
    assert (kind, len(events), covers) == ("events", 510, 3)


def test_a_few_events_wait_until_the_round_is_due():
    messages: queue.SimpleQueue = queue.SimpleQueue()
    rounds = _rounds(messages, every=60.0, now_at=500)
    messages.put(_batch(3))
    _next_round(rounds)
    messages.put(_batch(10))
    messages.put(_batch(20))
    waiting = _next_round(rounds, limit_s=0.3)
    assert waiting == []  # not due for a minute: they wait
    messages.put(STOP)  # any other message ends the round at once
    deadline = time.monotonic() + 5.0
    while not waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    [(_, events, _, covers, _)] = waiting
    assert (len(events), covers) == (30, 2)


def test_a_round_is_as_old_as_its_first_batch():
    """A round says when its first batch was received (the reader thread's stamp, third
    in the message): how long rankings ahead may still hold its answer back."""
    messages: queue.SimpleQueue = queue.SimpleQueue()
    rounds = _rounds(messages, every=60.0, now_at=5)
    messages.put((*_batch(3), 100.0))
    [(_, events, _, covers, received)] = _next_round(rounds)
    assert (len(events), covers, received) == (3, 1, 100.0)  # the first round is due at once
    messages.put((*_batch(4), 200.0))
    messages.put((*_batch(1), 300.0))  # 5: now_at, the round starts
    [(_, events, _, covers, received)] = _next_round(rounds)
    assert (len(events), covers, received) == (5, 2, 200.0)


def test_lists_are_ranked_ahead_only_while_the_process_has_nothing_else_to_do():
    """The refresh process ranks lists ahead chunk by chunk while no message waits and the
    round's first events are younger than RANK_AHEAD_WITHIN_S (the scorer asks before
    each chunk; tests/test_live_state.py checks what it ranks)."""

    class Asked:
        def rank_ahead(self, ranking, depth, go_on) -> int:
            self.answer = go_on()
            return 0

    refresh = SimpleNamespace(update=SimpleNamespace(ranking=object()))
    messages: queue.SimpleQueue = queue.SimpleQueue()
    scorer = Asked()
    now = time.monotonic()
    _rank_ahead(scorer, refresh, messages, now)
    assert scorer.answer  # idle, the events just in
    _rank_ahead(scorer, refresh, messages, now - RANK_AHEAD_WITHIN_S)
    assert not scorer.answer  # the round's answer has waited long enough
    messages.put(_batch(1))
    _rank_ahead(scorer, refresh, messages, time.monotonic())
    assert not scorer.answer  # events wait for the next round
