"""The online state in Redis: what one refresher computes, for every worker to apply
(``OMNI_ONLINE_STORE=redis://...``; issue 17).

Keys, under the journal's namespace:

- ``<ns>:state``: a Redis Stream, one entry per refresh of the lease holder, in the
  order every worker applies them: the refresh (:mod:`serving.live.state_codec`), the
  snapshot it is for, the journal entry it covers the events up to (``covers``), and
  whether it is a *base* (every customer live events changed since the snapshot, not
  only the last round's).
- ``<ns>:state:customer:<id>``: per customer, the latest fresh row, churn probability
  and next-best-channel probabilities as JSON (for tools and other hosts:
  ``omni events show``), with the clock and journal position they are as of.
- ``<ns>:state:cursor:<worker>``: how far each running worker applied the stream
  (expires with the journal's cursor); the stream is trimmed to what all applied.
- ``<ns>:state:rebase``: set by a worker that starts (or switches snapshot): the
  leader's next round writes a base it can start from.

An entry and its customers' hashes are written in one ``MULTI``/``EXEC``, fenced by the
refresh lease (``WATCH``: a leader that lost the lease writes nothing).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from serving.live.ingest import _entry_key
from serving.live.redis_journal import CURSOR_TTL_S, RedisJournal
from serving.live.state import Refresh
from serving.live.state_codec import encode

ROLE = "refresh"
"""The lease (:meth:`RedisJournal.leads`) whose holder runs the refresh process."""


class LeaseLost(RuntimeError):
    """The refresh lease passed to another worker: this one must stop writing."""


class RedisState:
    """The state stream and the per-customer hashes of one namespace."""

    def __init__(self, journal: RedisJournal) -> None:
        self.journal = journal
        ns = journal.namespace
        self.stream = f"{ns}:state"
        self.customer_prefix = f"{ns}:state:customer:"
        self.cursor_prefix = f"{ns}:state:cursor:"
        self.rebase_key = f"{ns}:state:rebase"
        self.lease_key = f"{ns}:lead:{ROLE}"

    @property
    def redis(self):
        return self.journal.redis

    def publish(
        self, refresh: Refresh, snapshot: str, covers: str, base: bool, channels: list[str]
    ) -> tuple[str, int]:
        """Write ``refresh`` (portable) and its customers' hashes in one transaction, if
        this worker still holds the lease (else :class:`LeaseLost`). Returns the entry's
        id and the bytes written."""
        import redis

        fields = encode(refresh)
        fields |= {"snapshot": snapshot.encode(), "covers": covers.encode()}
        fields["base"] = b"1" if base else b"0"
        hashes = customer_hashes(refresh, snapshot, covers, channels)
        lock = self.journal._leases.get(ROLE)
        token = None if lock is None else lock.local.token
        written = sum(map(len, fields.values())) + sum(
            len(k) + sum(map(len, h.values())) for k, h in hashes.items()
        )
        with self.journal._calls(), self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.lease_key)
                if token is None or pipe.get(self.lease_key) != token:
                    raise LeaseLost("the refresh lease is another worker's")
                pipe.multi()
                pipe.xadd(self.stream, fields)
                for key, mapping in hashes.items():
                    pipe.hset(self.customer_prefix + key, mapping=mapping)
                if refresh.update.removed:
                    pipe.delete(*(self.customer_prefix + c for c in refresh.update.removed))
                if base:
                    pipe.delete(self.rebase_key)
                entry = pipe.execute()[0]
            except redis.WatchError:
                raise LeaseLost("the refresh lease passed to another worker") from None
        return entry.decode(), written

    def read_after(self, cursor: str, count: int = 16) -> list[tuple[str, dict]]:
        """Up to ``count`` entries after ``cursor`` ("0": from the start), in order."""
        with self.journal._calls():
            entries = self.redis.xrange(self.stream, min=f"({cursor}", count=count)
        return [(entry.decode(), fields) for entry, fields in entries]

    def last(self) -> str:
        """The id of the stream's newest entry ("0": empty)."""
        with self.journal._calls():
            entries = self.redis.xrevrange(self.stream, count=1)
        return entries[0][0].decode() if entries else "0"

    def lease_holder(self) -> bytes | None:
        """The refresh lease's token (None: free); ``JournalUnavailable`` when Redis
        does not answer."""
        with self.journal._calls():
            return self.redis.get(self.lease_key)

    def ask_rebase(self) -> None:
        """Ask the leader for a base (a worker that starts, or switched snapshot)."""
        with self.journal._calls():
            self.redis.set(self.rebase_key, self.journal.worker, ex=CURSOR_TTL_S)

    def rebase_asked(self) -> bool:
        with self.journal._calls():
            return bool(self.redis.exists(self.rebase_key))

    def mark_applied(self, entry: str, covers: str | None) -> None:
        """Record this worker's position in the state stream and in the journal (what
        compaction keeps, as :meth:`RedisJournal.mark_applied`), in one round trip."""
        worker = self.journal.worker
        with self.journal._calls():
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.cursor_prefix + worker, entry, ex=CURSOR_TTL_S)
            if covers is not None:
                pipe.set(self.journal.cursor_prefix + worker, covers, ex=CURSOR_TTL_S)
            pipe.execute()

    def trim(self) -> None:
        """Delete the entries every running worker has applied."""
        with self.journal._calls():
            keys = list(self.redis.scan_iter(match=self.cursor_prefix + "*", count=100))
            values = [v.decode() for v in self.redis.mget(keys) if v is not None] if keys else []
            if not values:
                return
            ms, seq = min(map(_entry_key, values))
            if (ms, seq) > (0, 0):
                self.redis.xtrim(self.stream, minid=f"{ms}-{seq + 1}", approximate=False)

    def customer(self, customer_id: str) -> dict[str, str] | None:
        """The customer's latest state as the leader wrote it (None: no live change)."""
        with self.journal._calls():
            values = self.redis.hgetall(self.customer_prefix + customer_id)
        return {k.decode(): v.decode() for k, v in values.items()} or None


def customer_hashes(
    refresh: Refresh, snapshot: str, covers: str, channels: list[str]
) -> dict[str, dict[str, str]]:
    """Per customer of ``refresh``: the feature row, churn probability and consented
    next-channel probabilities as JSON (NaN: null), and what they are as of."""
    update = refresh.update
    if not update.ids:
        return {}
    rows = refresh.rows.reindex(pd.Index(update.ids, dtype="str"))
    features = rows.to_json(
        orient="records", lines=True, date_format="iso", double_precision=15
    ).splitlines()
    churn_values = _floats(np.asarray(update.churn, dtype=float))  # exact, as /score has them
    shape = (len(update.ids), len(channels))
    proba = _floats(np.asarray(update.channel, dtype=float).reshape(shape))
    channel = [json.dumps(dict(zip(channels, p, strict=True))) for p in proba]
    as_of = refresh.as_of.isoformat()
    return {
        customer: {
            "features": features[i],
            "churn": json.dumps(churn_values[i]),
            "channels": channel[i],
            "as_of": as_of,
            "snapshot": snapshot,
            "covers": covers,
        }
        for i, customer in enumerate(update.ids)
    }


def _floats(values: np.ndarray) -> list:
    """Python floats (exact through JSON), None for NaN."""
    return np.where(np.isnan(values), None, values.astype(object)).tolist()
