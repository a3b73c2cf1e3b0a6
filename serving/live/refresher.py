"""The online state's refresh in a process of its own, beside each service worker.

A refresh is a few hundred milliseconds of pandas, numpy and model calls for a few
thousand customers. Inside the worker it held the GIL against the requests and against
the ingest itself: during an ingest of 3,700 events/s, /recommend's median went from
1.1 to 2.6 ms and events took 1.4 s to show. In a process of its own it has its own
interpreter (and the machine's other core); the worker only sends it the events it took
and applies the rows it gets back (a few milliseconds).

The process holds the :class:`serving.live.state.LiveState` (the store's recent events,
every live event) and a scorer of the same snapshot without its precomputed lists; the
worker keeps the journal, the identities and the scorer requests read. Recommendations
come back as :class:`serving.scoring.LiveRanking` without their recommender (it shares
the snapshot's product parts): the worker's scorer rebuilds it from the customers' parts.

Live events stream to the process: the worker sends each batch it takes at once
(:meth:`RemoteState.send`), and the process starts a round on everything it has received
as soon as the last one ends (a few events wait for :data:`ROUND_EVERY_S`, many do not:
:data:`ROUND_NOW_AT`), so it never waits for the worker between rounds; each answer says
how many batches it covers (:meth:`RemoteState.receive`). Waiting for the worker to
apply a round, take the next batch and pipe it over left the process idle 14% of an
ingest beside reads (issue 17).

The store's recent event ids, which both check duplicates against, are held once for
the two: the process writes them to an unlinked temporary file after its start and sends
the worker its descriptor, and both map it (:mod:`serving.live.id_set`).

The process is derived state only: if it dies, nothing acknowledged is lost (the journal
has it) and the worker starts a new one, which replays the journal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from features.settings import Settings
from serving.live.id_set import EventIdSet, share
from serving.live.state import Refresh
from serving.online import LIST_DEPTH
from serving.scoring import Scorer

START_TIMEOUT_S = 600.0
"""How long the worker waits for the process's first refresh (loading the snapshot and
the store's recent events, replaying the journal)."""
ROUND_EVERY_S = 0.25
"""How often at most the process starts a round on the events streamed to it (one
refresh for every customer they touch). Under a steady ingest rounds follow each other
without a pause; a trickle of events is refreshed every quarter second, not per batch (a
round costs ~40 ms of fixed work, however few its events)."""
ROUND_NOW_AT = 500
"""Events received that start the next round at once, before :data:`ROUND_EVERY_S` has
passed: with this many the fixed ~40 ms is a small part of the round (~90 ms at 500).
Rounds shorter than the quarter second left the process idle under an ingest: on 2
cores, batches of 1,000, an ingest alone took 5,200-6,000 events/s on ~0.75 of a core,
and 6,650-7,550 on a whole one with this; beside back-to-back reads, with the cores full,
4,750 against 4,920 (medians of 8 runs each, alternated; issue 17, stop 41)."""


REFRESH_NICE = 5
"""How much lower than the worker's the process's CPU priority is (``os.nice``). The
worker is on every read's path and on every event's (it takes the batch, and applies the
round that releases back-pressure); a round is bulk work that can wait a time slice. On 2
cores shared with the load, ``/recommend``'s p50 during an ingest went from 4.34 to
3.32 ms, the ingest rate and the event-to-visible p99 staying within the runs' spread
(issue 17, stop 38: ``bench_live.py``, 6 repeats each, alternated)."""


RANK_AHEAD_WITHIN_S = 0.5
"""How long after the process received a round's first events it may still be ranking
lists ahead for them (:func:`_rank_ahead`): half the event-to-visible goal (1 s, issue
17), as the round's answer waits for it."""


class RefreshProcessError(RuntimeError):
    """The refresh process failed (the message has its traceback) or is gone."""


class RoundFailed(RefreshProcessError):
    """A refresh failed in the process (the message has its traceback), which goes on
    with the next message: ``batches`` were in it (journaled, they are applied at the
    next start)."""

    def __init__(self, message: str, batches: int) -> None:
        super().__init__(message)
        self.batches = batches


class RemoteState:
    """What the worker holds of the online state: the scorer it answers from, the store's
    recent event ids (for duplicates at ingest), and the process that refreshes the rows.
    The same calls as :class:`~serving.live.state.LiveState` (``refresh``, ``apply``,
    ``stored_known``) for :class:`~serving.live.ingest.LiveEvents` and the service."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        journaled: pd.DataFrame,
        apply_first: bool = True,
    ) -> None:
        """Start the process for ``scorer``'s snapshot with the journal's events, and wait
        for its first refresh (:attr:`first`, applied here unless ``apply_first`` is
        False: the state in Redis applies it from there): the customers whose stored
        events the snapshot lacks, and every journaled one."""
        self.scorer = scorer
        self.snapshot_as_of = scorer.as_of
        self.n_applied = 0
        self._conn, child = multiprocessing.Pipe()  # a private socket pair
        command = [sys.executable, "-m", "serving.live.refresher", str(child.fileno())]
        # Arrow on the system allocator: mimalloc kept the store read's transient buffers
        # (2.5x the encoded events at 20,000 customers) as the process's memory for good
        env = {"ARROW_DEFAULT_MEMORY_POOL": "system", **os.environ}
        self._proc = subprocess.Popen(
            command, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=env
        )
        child.close()  # the worker's copy: a dead process then reads as EOF here
        try:
            self._conn.send((settings, str(scorer.snapshot.path), journaled))
            self.first, _ = self._answer(START_TIMEOUT_S)
            self._stored_event_ids = self._shared_ids()
            if apply_first:
                self.apply(self.first)
        except BaseException:
            self.close()
            raise

    def stored_known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: the store holds the event (within the state's window)."""
        return self._stored_event_ids.contains(event_ids)

    @property
    def shares_event_ids(self) -> bool:
        """Whether the store's event ids are the pages the process shares (see the doc)."""
        return self._stored_event_ids.shares

    def _shared_ids(self) -> EventIdSet:
        """The store's event ids as the process shares them after its first answer: how
        many, then the descriptor of their file, mapped here."""
        try:
            n = self._conn.recv()
            fd = recv_handle(self._conn)
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        try:
            return EventIdSet.mapped(fd, n)
        finally:
            os.close(fd)

    def refresh(self, events: pd.DataFrame, also: pd.Index | None = None) -> Refresh:
        """Add live events and recompute the rows of the customers they touch (and of
        ``also``), in the process, and wait for them (not while batches stream)."""
        self._send(("refresh", events, also))
        return self._answer()[0]

    def rebased(self) -> Refresh:
        """Every customer live events changed, refreshed in the process
        (:meth:`~serving.live.state.LiveState.rebased`)."""
        self._send(("rebased",))
        return self._answer()[0]

    def send(self, events: pd.DataFrame) -> None:
        """Stream a batch of live events to the process: a round takes it with every
        other batch received by then (:meth:`receive` gives the answers, in order)."""
        self._send(("events", events))

    def receive(self) -> tuple[Refresh, int]:
        """The next streamed round's refresh and how many batches (:meth:`send`) it
        covers; :class:`RoundFailed` when the round failed, :class:`RefreshProcessError`
        when the process is gone."""
        return self._answer()

    def apply(self, refresh: Refresh) -> None:
        """Give the scorer a refresh's rows (one quick step on the request thread)."""
        self.scorer.apply_rows(refresh.update)
        self.n_applied += refresh.n_events

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        """Stop the process (it ends on its own when the worker is gone)."""
        with contextlib.suppress(OSError, ValueError):  # already gone
            self._conn.send(None)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._conn.close()

    def _send(self, message: tuple) -> None:
        """Send ``message`` to the process; :class:`RefreshProcessError` if it is gone."""
        try:
            self._conn.send(message)
        except (OSError, ValueError) as exc:
            raise self._gone() from exc

    def _answer(self, timeout: float | None = None) -> tuple[Refresh, int]:
        """The process's next answer and how many messages it covers;
        :class:`RoundFailed` for its failure, :class:`RefreshProcessError` when it is
        gone."""
        try:
            if timeout is not None and not self._conn.poll(timeout):
                why = f"the live refresh process gave no answer in {timeout:.0f} s"
                raise RefreshProcessError(why)
            kind, value, covers = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        if kind == "error":
            raise RoundFailed(f"the live refresh failed:\n{value}", covers)
        return value, covers

    def _gone(self) -> RefreshProcessError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=1)
        return RefreshProcessError(
            f"the live refresh process ended (exit code {self._proc.returncode})"
        )


def _serve(conn: Connection) -> None:
    """The process: read what to start from, build the state (answering with its first
    refresh), then answer every message in turn until ``None`` or the worker is gone:
    ``("refresh", events, also)`` and ``("rebased",)`` one by one, and streamed
    ``("events", events)`` in rounds (:func:`_rounds`).

    After each fold it takes, the process hands the freed heap back to the system: the
    stored and live events the fold replaced stayed resident between the blocks still in
    use. Over a minute of ingest beside reads at 5,000 customers it then held 205-232 MB
    after its first fold instead of 245-253 (``bench_live_sustained.py``, 2 runs each,
    alternated)."""
    from threadpoolctl import threadpool_limits

    from serving.collector import release_free_memory
    from serving.live.start import caught_up_state
    from serving.online import load_snapshot

    threadpool_limits(1)  # one refresh at a time: BLAS threads only contend with the worker
    os.nice(REFRESH_NICE)  # the worker's requests first (see REFRESH_NICE)
    try:
        settings, snapshot, journaled = conn.recv()
    except (EOFError, OSError):  # the worker is gone
        return
    try:
        scorer = Scorer(  # it scores fresh rows only, never the snapshot's own
            load_snapshot(Path(snapshot)),
            num_threads=1,
            precompute_candidates=False,
            snapshot_rows=False,
        )
        state, first = caught_up_state(settings, scorer, journaled)
        del journaled
        state.stored = state.stored.mapped(settings.home)  # the store's rows: file pages
        ids_file, state.stored.event_ids = share(state.stored.event_ids)
        release_free_memory()  # what loading freed (the snapshot's table, the reads, the ids)
    except BaseException:
        _send(conn, ("error", traceback.format_exc(), 1))
        return
    with ids_file:
        n_ids = len(state.stored.event_ids)
        if not _send(conn, ("ok", first.portable(), 1)) or not _send_ids(conn, ids_file, n_ids):
            return
    messages = _received(conn)
    for kind, events, also, covers, received in _rounds(messages):
        try:
            refresh = state.rebased() if kind == "rebased" else state.refresh(events, also)
            if kind == "events":
                _rank_ahead(scorer, refresh, messages, received)
            answer = ("ok", refresh.portable(), covers)
        except Exception:  # the worker logs it and goes on: the events are journaled
            answer = ("error", traceback.format_exc(), covers)
        if not _send(conn, answer):
            return
        stored = state.stored
        state.fold_if_due(background=True)  # the next rounds do not wait for it either
        if state.stored is not stored:  # a fold was taken: hand what it replaced back
            release_free_memory()  # (glibc kept it resident: issue 17, stop 43, ~10%)


def _rank_ahead(
    scorer: Scorer, refresh: Refresh, messages: queue.SimpleQueue, received: float
) -> None:
    """Rank ahead the lists of ``refresh``'s customers (:meth:`Scorer.rank_ahead`) while
    the process has nothing else to do: no message waits, and the round's first events
    (``received``) are younger than :data:`RANK_AHEAD_WITHIN_S`. An ingest that keeps the
    process busy never waits for lists a read may not ask for; the customers it could
    not rank are ranked on their first read, as before."""
    ranking = refresh.update.ranking
    if ranking is None:
        return

    def idle() -> bool:
        return messages.empty() and time.monotonic() - received < RANK_AHEAD_WITHIN_S

    scorer.rank_ahead(ranking, LIST_DEPTH, idle)


def _send_ids(conn: Connection, file: IO[bytes], n: int) -> bool:
    """Give the worker the ``n`` store event ids written to ``file`` (their number, then
    the file's descriptor); False when the worker is gone."""
    try:
        conn.send(n)
        send_handle(conn, file.fileno(), os.getppid())
    except OSError:
        return False
    return True


STOP = ("stop",)
"""What :func:`_received` gives once the worker said stop or is gone."""


def _received(conn: Connection) -> queue.SimpleQueue:
    """The worker's messages, read as they come by a thread of their own (so that a
    batch streamed during a round waits in memory, not in the pipe, and the worker's
    sends never block on a full pipe); :data:`STOP` last."""
    messages: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the worker is gone
                message = None
            if message is not None and message[0] == "events":  # when it came
                message = (*message, time.monotonic())
            messages.put(STOP if message is None else message)
            if message is None:
                return

    threading.Thread(target=read, name="refresh-messages", daemon=True).start()
    return messages


def _rounds(messages: queue.SimpleQueue, every: float = ROUND_EVERY_S, now_at: int = ROUND_NOW_AT):
    """What to refresh next, as ``(kind, events, also, messages it covers, when the
    first was received)`` (``time.monotonic``), until :data:`STOP`: ``refresh`` and
    ``rebased`` messages one by one; a streamed round takes every ``events`` message
    received by its start, which is ``every`` seconds after the last one's, or as soon as
    ``now_at`` events are in (:data:`ROUND_NOW_AT`). An ``events`` message may carry the
    time it was received third (:func:`_received`)."""
    held, last_start = None, time.monotonic() - every
    while True:
        message, held = held or messages.get(), None
        if message is STOP:
            return
        if message[0] == "refresh":
            yield (*message, 1, time.monotonic())
            continue
        if message[0] == "rebased":
            yield "rebased", None, None, 1, time.monotonic()
            continue
        received = message[2] if len(message) > 2 else time.monotonic()
        batches = [message[1]]
        n_events = len(message[1])
        while held is None:  # until due (or now_at events are in), and whatever came by then
            until_due = last_start + every - time.monotonic()
            wait = until_due if n_events < now_at else 0.0
            try:
                message = messages.get(timeout=wait) if wait > 0 else messages.get_nowait()
            except queue.Empty:
                break
            if message[0] == "events":
                batches.append(message[1])
                n_events += len(message[1])
            else:  # after this round
                held = message
        last_start = time.monotonic()
        yield "events", pd.concat(batches, ignore_index=True), None, len(batches), received


def _send(conn: Connection, answer: tuple) -> bool:
    """Send ``answer``; False when the worker is gone."""
    try:
        conn.send(answer)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
