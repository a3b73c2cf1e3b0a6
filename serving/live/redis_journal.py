"""The event journal in Redis, shared by every worker and host of a service
(``OMNI_ONLINE_STORE=redis://...``; issue 17).

Keys, under the namespace (``OMNI_ONLINE_NAMESPACE``, default ``omni``):

- ``<ns>:events``: a Redis Stream, one entry per accepted batch, its events as the file
  journal's JSON lines (:func:`serving.live.journal.lines`). The stream's order is the
  one order every worker applies the events in.
- ``<ns>:event_ids``: a set of every journaled event id (retries count once, also after
  compaction).
- ``<ns>:ingest``: a lock (redis-py's, released by token) that makes "resolve the
  identities, check the ids, append" one step across workers, so a batch resolves
  against the identities of every batch before it, wherever it was taken.
- ``<ns>:cursor:<worker>``: how far each running worker has applied the stream (expires
  when the worker stops); compaction trims only what every running worker has applied.

The batch and its ids are written in one ``MULTI``/``EXEC``; with ``appendfsync always``
Redis answers it only once the write is on disk, so a 200 means durable, as with the
file journal. :meth:`RedisJournal.durability` says when Redis is configured otherwise.
A Redis that does not answer raises :class:`JournalUnavailable` (an ``OSError``: the
service answers 503 and keeps scoring from the state it has).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import numpy as np
import pandas as pd

from serving.live.journal import JournalError, lines, parse_lines

TIMEOUT_S = 2.0
"""Socket timeout: a Redis that does not answer within it is down for this call."""
LOCK_S = 10.0
"""The ingest lock expires after this (a worker killed while holding it)."""
CURSOR_TTL_S = 30
"""A worker's cursor expires this long after its last apply round (it stopped)."""
READ_COUNT = 500
"""Stream entries read per call."""


class JournalUnavailable(OSError):
    """Redis did not answer (the message names the server and the error)."""


class RedisJournal:
    """The journal interface of :class:`serving.live.journal.Journal` over Redis."""

    shared = True

    def __init__(self, url: str, namespace: str = "omni") -> None:
        import redis

        self.url = url
        self.where = url.split("@")[-1]  # for messages: never a password
        self.redis = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self.namespace = namespace
        self.stream = f"{namespace}:events"
        self.ids_key = f"{namespace}:event_ids"
        self.lock_key = f"{namespace}:ingest"
        self.cursor_prefix = f"{namespace}:cursor:"
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases: dict = {}  # role -> its Redis lock (see leads)
        with self._calls():
            self.redis.ping()

    @contextmanager
    def _calls(self) -> Iterator[None]:
        """Redis's connection errors as :class:`JournalUnavailable` with one line."""
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise JournalUnavailable(f"Redis at {self.where} is not answering: {exc}") from None
        except redis.ResponseError as exc:
            raise JournalError(f"Redis at {self.where} refused: {exc}") from None

    def durability(self) -> str | None:
        """None when Redis syncs every write before answering, else why acknowledged
        events could be lost if Redis itself crashes (CONFIG may be refused: then None)."""
        import redis

        try:
            with self._calls():
                config = self.redis.config_get("append*")
        except (JournalError, redis.RedisError):
            return None
        if config.get("appendonly") == "yes" and config.get("appendfsync") == "always":
            return None
        return (
            f"Redis at {self.where} runs with appendonly={config.get('appendonly')} "
            f"appendfsync={config.get('appendfsync')}: events it acknowledged may be lost if "
            "Redis crashes (set appendonly yes, appendfsync always)"
        )

    @contextmanager
    def ingest_lock(self) -> Iterator[None]:
        """One batch at a time across every worker (see the module docstring)."""
        with self._calls():
            lock = self.redis.lock(self.lock_key, timeout=LOCK_S, blocking_timeout=LOCK_S)
            if not lock.acquire():
                raise JournalUnavailable(f"Redis at {self.where}: the ingest lock stayed taken")
        try:
            yield
        finally:
            import redis

            # expired meanwhile, or Redis gone after the append: the lock times out anyway,
            # and the batch, once appended, is acknowledged
            with suppress(redis.RedisError):
                lock.release()

    def append(self, events: pd.DataFrame) -> str | None:
        """Append the batch and its ids in one transaction; the new entry's id."""
        if not len(events):
            return None
        ids = events["event_id"].astype("str").tolist()
        with self._calls():
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(self.stream, {"lines": lines(events)})
            pipe.sadd(self.ids_key, *ids)
            entry, _ = pipe.execute()
        return entry.decode()

    def known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: already journaled (or compacted from the journal)."""
        ids = pd.Series(event_ids).astype("str").tolist()
        if not ids:
            return np.zeros(0, bool)
        with self._calls():
            return np.array(self.redis.smismember(self.ids_key, ids), dtype=bool)

    @property
    def count(self) -> int:
        """Events journaled, compacted ones included."""
        with self._calls():
            return int(self.redis.scard(self.ids_key))

    def read(self) -> pd.DataFrame:
        """Every event in the stream, in order."""
        return self.replay()[0]

    def replay(self) -> tuple[pd.DataFrame, str]:
        """Every event in the stream, in order, and the id of the last entry (the cursor
        to read on from)."""
        return self.read_after("0")

    def read_after(self, cursor: str, limit: int | None = None) -> tuple[pd.DataFrame, str]:
        """The events of the entries after ``cursor`` (an entry id, "0": from the start),
        in order, and the id of the last entry read (``cursor`` when none). ``limit``:
        read at most this many entries."""
        chunks: list[bytes] = []
        last = cursor
        with self._calls():
            while limit is None or len(chunks) < limit:
                count = READ_COUNT if limit is None else min(READ_COUNT, limit - len(chunks))
                entries = self.redis.xrange(self.stream, min=f"({last}", count=count)
                if not entries:
                    break
                chunks += [fields[b"lines"] for _, fields in entries]
                last = entries[-1][0].decode()
        return parse_lines(b"".join(chunks), f"Redis stream {self.stream}"), last

    def read_range(self, after: str, upto: str) -> pd.DataFrame:
        """The events of the entries after ``after`` up to ``upto`` (entry ids), in order."""
        with self._calls():
            entries = self.redis.xrange(self.stream, min=f"({after}", max=upto)
        data = b"".join(fields[b"lines"] for _, fields in entries)
        return parse_lines(data, f"Redis stream {self.stream}")

    def mark_applied(self, cursor: str) -> None:
        """Record this worker's applied position (compaction keeps what is after it)."""
        with self._calls():
            self.redis.set(self.cursor_prefix + self.worker, cursor, ex=CURSOR_TTL_S)

    def applied_by_all(self) -> str | None:
        """The entry every running worker has applied up to (None: no worker runs)."""
        with self._calls():
            keys = list(self.redis.scan_iter(match=self.cursor_prefix + "*", count=100))
            values = [v.decode() for v in self.redis.mget(keys) if v is not None] if keys else []
        if not values:
            return None
        return min(values, key=_entry_order)

    def compactable(self, upto: str | None) -> tuple[pd.DataFrame, str | None]:
        """Events up to entry ``upto`` (:meth:`applied_by_all`; None: all of them) and the
        last entry's id (None: nothing to compact)."""
        with self._calls():
            entries = self.redis.xrange(self.stream, max=upto or "+")
        if not entries:
            return parse_lines(b"", self.stream), None
        data = b"".join(fields[b"lines"] for _, fields in entries)
        return parse_lines(data, f"Redis stream {self.stream}"), entries[-1][0].decode()

    def remove_through(self, entry: str) -> None:
        """Delete the stream's entries up to ``entry`` (compacted into the store); their
        ids stay known."""
        ms, seq = (int(x) for x in entry.split("-"))
        with self._calls():
            self.redis.xtrim(self.stream, minid=f"{ms}-{seq + 1}", approximate=False)

    def seal(self) -> list:
        """Nothing to close: entries are compacted once every worker applied them."""
        return []

    def leads(self, role: str, ttl_s: float) -> bool:
        """Whether this worker holds ``role`` (e.g. deciding the journeys, which one
        worker of all does): taken when free, kept by renewing it within ``ttl_s``; a
        worker that stops renewing (killed) loses it to another after ``ttl_s``. Redis not
        answering: not the leader (nothing is decided twice)."""
        import redis

        lock = self._leases.get(role)
        if lock is None:
            lock = self.redis.lock(
                f"{self.namespace}:lead:{role}", timeout=ttl_s, blocking=False, thread_local=False
            )  # renewed from any thread (the refresh lease: while its process starts)
            self._leases[role] = lock
        try:
            if lock.owned():
                lock.reacquire()
                return True
            return bool(lock.acquire(blocking=False))
        except redis.RedisError:  # LockError is one
            return False

    def close(self) -> None:
        """Forget this worker's cursor and close the connections."""
        try:
            with self._calls():
                self.redis.delete(self.cursor_prefix + self.worker)
        except (JournalUnavailable, JournalError):
            pass
        self.redis.close()


def _entry_order(entry: str) -> tuple[int, int]:
    ms, seq = entry.split("-")
    return int(ms), int(seq)
