"""issue 17: the live loop's round starts as soon as POST /events has taken events
(``EventsTaken``), not at the next tick: the refresh process idled half the time. In the
refresh process, a round of many events does not wait for the quarter second either
(``_rounds``), a trickle does."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import pandas as pd

from serving.live.ingest import EventsTaken
from serving.live.refresher import STOP, _rounds


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
    [(kind, events, _, covers)] = _next_round(rounds)
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
    [(_, events, _, covers)] = waiting
    assert (len(events), covers) == (30, 2)
