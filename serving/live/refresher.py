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

The process is derived state only: if it dies, nothing acknowledged is lost (the journal
has it) and the worker starts a new one, which replays the journal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import Settings
from serving.live.id_set import EventIdSet
from serving.live.state import Refresh, window_start
from serving.scoring import Scorer

START_TIMEOUT_S = 600.0
"""How long the worker waits for the process's first refresh (loading the snapshot and
the store's recent events, replaying the journal)."""


class RefreshProcessError(RuntimeError):
    """The refresh process failed (the message has its traceback) or is gone."""


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
            start = window_start(scorer.as_of)
            self._stored_event_ids = EventIdSet.read(settings.store_dir, start)
            self.first = self._answer(START_TIMEOUT_S)
            if apply_first:
                self.apply(self.first)
        except BaseException:
            self.close()
            raise

    def stored_known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: the store holds the event (within the state's window)."""
        return self._stored_event_ids.contains(event_ids)

    def refresh(self, events: pd.DataFrame, also: pd.Index | None = None) -> Refresh:
        """Add live events and recompute the rows of the customers they touch (and of
        ``also``), in the process."""
        try:
            self._conn.send((events, also))
        except (OSError, ValueError) as exc:
            raise self._gone() from exc
        return self._answer()

    def rebased(self) -> Refresh:
        """Every customer live events changed, refreshed in the process
        (:meth:`~serving.live.state.LiveState.rebased`)."""
        try:
            self._conn.send("rebased")
        except (OSError, ValueError) as exc:
            raise self._gone() from exc
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

    def _answer(self, timeout: float | None = None) -> Refresh:
        """The process's next answer; :class:`RefreshProcessError` for its failure."""
        try:
            if timeout is not None and not self._conn.poll(timeout):
                why = f"the live refresh process gave no answer in {timeout:.0f} s"
                raise RefreshProcessError(why)
            kind, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        if kind == "error":
            raise RefreshProcessError(f"the live refresh failed:\n{value}")
        return value

    def _gone(self) -> RefreshProcessError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=1)
        return RefreshProcessError(
            f"the live refresh process ended (exit code {self._proc.returncode})"
        )


def _serve(conn: Connection) -> None:
    """The process: read what to start from, build the state (answering with its first
    refresh), then answer each ``(events, also)`` with their refresh (``"rebased"``:
    every changed customer's) until ``None`` or the worker is gone."""
    from threadpoolctl import threadpool_limits

    from serving.live.start import caught_up_state
    from serving.online import load_snapshot

    threadpool_limits(1)  # one refresh at a time: BLAS threads only contend with the worker
    try:
        settings, snapshot, journaled = conn.recv()
    except (EOFError, OSError):  # the worker is gone
        return
    try:
        scorer = Scorer(load_snapshot(Path(snapshot)), num_threads=1, precompute_candidates=False)
        state, first = caught_up_state(settings, scorer, journaled)
        del journaled
    except BaseException:
        _send(conn, ("error", traceback.format_exc()))
        return
    answer = ("ok", first.portable())
    while _send(conn, answer):
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the worker is gone
            return
        if message is None:
            return
        try:
            refresh = state.rebased() if message == "rebased" else state.refresh(*message)
            answer = ("ok", refresh.portable())
        except Exception:  # the worker logs it and goes on: the events are journaled
            answer = ("error", traceback.format_exc())


def _send(conn: Connection, answer: tuple) -> bool:
    """Send ``answer``; False when the worker is gone."""
    try:
        conn.send(answer)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
