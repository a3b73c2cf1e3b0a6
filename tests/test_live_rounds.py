"""issue 17: the live loop's round starts as soon as POST /events has taken events
(``EventsTaken``), not at the next tick: the refresh process idled half the time."""

from __future__ import annotations

import asyncio
import time

from serving.live.ingest import EventsTaken


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
