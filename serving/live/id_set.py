"""The store's recent event ids, for duplicate checks at ingest: 96-bit fingerprints, sorted
by their first 64 bits.

A pandas Index of a year's event ids held every id as a Python string plus a hash table
(about 100 bytes an event, in the worker and again in the refresh process); the
fingerprints take 12 bytes (a uint64 and a uint32 array) and a batch's ids are looked
up by binary search (``np.searchsorted``), all vectorised.

96 bits is the certainty the store already works with: a derived event id is itself a
96-bit hash of the event (:mod:`features.store.event_ids`), so two different events
whose ids share a fingerprint are as unlikely (about 1e-21 per id checked against 100M
stored ones) as two different events sharing a derived id.

The worker and its live refresh process both check duplicates against the same store
ids. The process writes its set once to a temporary file that is unlinked from the start
(:func:`share`) and hands the worker the descriptor over their socket: both map the same
pages (:meth:`EventIdSet.mapped`), 12 bytes an event once on the host instead of in each
process, and nothing is left on disk whenever either ends. A set that holds a shared one
keeps it as it is when more ids join it (:meth:`EventIdSet.union`): only the new ids are
the process's own.

The ids that grow while a service runs (the journal's, the live events' until a fold)
are fingerprints too, in sorted runs merged as they double (:class:`GrowingEventIdSet`).
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

_KEYS = ("omni-id-fprint-1", "omni-id-fprint-2")  # pandas' keyed hash takes 16 bytes


def fingerprints(ids: pd.Series | np.ndarray | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(uint64, uint32) per id: 96 bits of two keyed hashes of its text."""
    values = pd.Series(ids, dtype="str")
    if values.isna().any():
        raise ValueError("event ids must not be missing")
    text = values.to_numpy(dtype=object)
    hi = pd.util.hash_array(text, hash_key=_KEYS[0], categorize=False)
    lo = (pd.util.hash_array(text, hash_key=_KEYS[1], categorize=False) >> 32).astype(np.uint32)
    return hi, lo


class EventIdSet:
    """A fixed set of event ids: which of a batch's ids it holds (see the module doc)."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, shared: EventIdSet | None = None) -> None:
        """``hi`` / ``lo``: the ids' fingerprints (any order; sorted here by ``hi``, which is
        all :meth:`contains` needs). A stable sort: the sets of :meth:`union`, each sorted
        already, are merged run by run (a year's 500,000 ids and 50,000 more: 1.4 ms,
        against 99 ms for a ``lexsort`` of both halves). ``shared``: a mapped set
        (:meth:`mapped`) this one holds too, kept apart."""
        order = np.argsort(hi, kind="stable")
        self._hi, self._lo = hi[order], lo[order]
        self._shared = shared

    @classmethod
    def of(cls, ids: pd.Series | np.ndarray | Sequence[str]) -> EventIdSet:
        """The set of ``ids``."""
        return cls(*fingerprints(ids))

    @classmethod
    def union(cls, sets: Sequence[EventIdSet]) -> EventIdSet:
        """One set holding every id of ``sets``. A shared set among them (at most one) is
        kept as it is, the others' own ids merged beside it."""
        shared = {id(s._shared): s._shared for s in sets if s._shared is not None}
        if len(shared) > 1:
            raise ValueError("a union of sets that hold different shared sets")
        hi = np.concatenate([s._hi for s in sets]) if sets else np.zeros(0, np.uint64)
        lo = np.concatenate([s._lo for s in sets]) if sets else np.zeros(0, np.uint32)
        return cls(hi, lo, next(iter(shared.values()), None))

    @classmethod
    def mapped(cls, fd: int, n: int) -> EventIdSet:
        """The set of ``n`` ids that :func:`share` wrote to the file ``fd``, mapped
        read-only (the caller may close ``fd`` then): the pages of a set shared with
        another process, not a copy."""
        pages = mmap.mmap(fd, 12 * n, prot=mmap.PROT_READ) if n else b""
        hi = np.frombuffer(pages, np.uint64, count=n)
        lo = np.frombuffer(pages, np.uint32, count=n, offset=8 * n)
        empty = cls(np.zeros(0, np.uint64), np.zeros(0, np.uint32))
        shared = cls.__new__(cls)
        shared._hi, shared._lo, shared._shared = hi, lo, None  # sorted when it was written
        empty._shared = shared
        return empty

    @property
    def shares(self) -> bool:
        """Whether the set holds a shared one (:meth:`mapped`)."""
        return self._shared is not None

    @classmethod
    def read(cls, store_dir: Path, start: pd.Timestamp) -> EventIdSet:
        """The ids of the store's events from ``start`` on (read a batch at a time)."""
        from features.store.events import map_event_batches

        def batch(events: pd.DataFrame) -> EventIdSet:
            return cls.of(events["event_id"])

        return cls.union(map_event_batches(store_dir, batch, start=start, columns=["event_id"]))

    def __len__(self) -> int:
        return len(self._hi) + (len(self._shared) if self._shared is not None else 0)

    @property
    def nbytes(self) -> int:
        """Bytes of the process's own ids (a shared set's pages are the file's)."""
        return self._hi.nbytes + self._lo.nbytes

    def contains(self, ids: pd.Series | np.ndarray | Sequence[str]) -> np.ndarray:
        """bool per id: in the set."""
        return _contains([self, *([self._shared] if self._shared is not None else [])], ids)

    def _holds(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """bool per fingerprint: among this set's own (:func:`positions_of`)."""
        return positions_of(self._hi, self._lo, hi, lo) >= 0


def positions_of(
    held_hi: np.ndarray, held_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray
) -> np.ndarray:
    """Position of each fingerprint (``hi``, ``lo``) among the held ones (sorted by
    ``held_hi``), -1 where not held. One binary search per fingerprint; only those whose
    first 64 bits meet a held one with other last 32 bits (a 64-bit collision among the
    held ones, or a new one's) are compared with every held one of those first 64 bits."""
    if not len(held_hi):
        return np.full(len(hi), -1, np.int64)
    left = np.searchsorted(held_hi, hi, side="left")
    at = np.minimum(left, len(held_hi) - 1)
    same_hi = (left < len(held_hi)) & (held_hi[at] == hi)
    found = same_hi & (held_lo[at] == lo)
    out = np.where(found, at, -1)
    many = np.flatnonzero(same_hi & ~found)
    if len(many):  # compare with every held one of the same first 64 bits
        counts = np.searchsorted(held_hi, hi[many], side="right") - left[many]
        firsts = np.cumsum(counts) - counts
        at = np.repeat(left[many] - firsts, counts) + np.arange(counts.sum())
        same = held_lo[at] == np.repeat(lo[many], counts)
        out[many] = np.maximum.reduceat(np.where(same, at, -1), firsts)
    return out


MAX_RUN = 1 << 20
"""Ids at which a :class:`GrowingEventIdSet`'s runs stop merging (1,048,576), so that a
merge on the ingest path stays short (see the class); beyond it each 1M ids add one run
to search."""


class GrowingEventIdSet:
    """Event ids added batch by batch while a service runs (the journal's, the live events
    since a fold), as fingerprints in sorted runs: a batch's run merges with the last one
    while that is at most twice its size (up to :data:`MAX_RUN`), like a binary counter's
    digits, so a lookup searches few runs and an id is copied again only when its run
    doubles.

    The journal's set grows for as long as the service runs, the live events' until the
    next fold. As a Python set of strings it took 116 bytes of resident memory an id
    (24-character ids, 2M of them: ~2 GB an hour at 5,000 events/s), here 34 (12 of
    fingerprints, the rest what the merges leave on the heap). Checking a batch of 1,000
    against 2M ids costs more (1.7 ms against 0.44: binary searches in 4 runs against one
    hash lookup an id), adding it less (0.53 against 0.64); the slowest add, a merge into
    a run of 1M, took 57-81 ms against the set's resize at 49-52
    (``tests/benchmarks/bench_id_sets.py``)."""

    def __init__(
        self, ids: pd.Series | np.ndarray | Sequence[str] = (), max_run: int = MAX_RUN
    ) -> None:
        self.max_run = max_run
        self._runs: list[EventIdSet] = []
        self.add(ids)

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs)

    def contains(self, ids: pd.Series | np.ndarray | Sequence[str]) -> np.ndarray:
        """bool per id: in the set."""
        return _contains(self._runs, ids)

    def add(self, ids: pd.Series | np.ndarray | Sequence[str]) -> None:
        """Add ids the set does not hold yet (its callers add only new events' ids)."""
        if not len(ids):
            return
        run = EventIdSet(*fingerprints(ids))
        while self._runs and (
            len(self._runs[-1]) <= 2 * len(run) and len(self._runs[-1]) + len(run) <= self.max_run
        ):
            run = EventIdSet.union([self._runs.pop(), run])
        self._runs.append(run)


def _contains(
    sets: Sequence[EventIdSet], ids: pd.Series | np.ndarray | Sequence[str]
) -> np.ndarray:
    """bool per id: held by one of ``sets`` (their own ids). The batch is searched in the
    order of its fingerprints, so its binary searches share their first steps' pages (a
    batch of 1,000 against 2M ids in 11 runs of 233,000: 2.8 -> 1.6 ms)."""
    hi, lo = fingerprints(ids)
    order = np.argsort(hi)
    hi, lo = hi[order], lo[order]
    found = np.zeros(len(hi), bool)
    for held in sets:
        found |= held._holds(hi, lo)
    out = np.empty(len(hi), bool)
    out[order] = found
    return out


def share(ids: EventIdSet) -> tuple[IO[bytes], EventIdSet]:
    """``ids`` written to a temporary file unlinked from the start (the system frees it
    when the last descriptor or mapping of it goes, whoever ends first): the open file,
    whose descriptor another process maps with :meth:`EventIdSet.mapped`, and the set
    mapped from it here (the same ids; ``ids``' own arrays can go)."""
    whole = ids  # sorted already, unless it holds a shared set too
    if ids._shared is not None:
        whole = EventIdSet(
            np.concatenate([ids._hi, ids._shared._hi]), np.concatenate([ids._lo, ids._shared._lo])
        )
    file = tempfile.TemporaryFile()  # noqa: SIM115 - the caller holds it open while it shares it
    whole._hi.tofile(file)
    whole._lo.tofile(file)
    file.flush()
    return file, EventIdSet.mapped(file.fileno(), len(whole))
