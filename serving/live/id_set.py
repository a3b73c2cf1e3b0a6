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
        hi, lo = fingerprints(ids)
        out = self._holds(hi, lo)
        if self._shared is not None:
            out |= self._shared._holds(hi, lo)
        return out

    def _holds(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """bool per fingerprint: among this set's own."""
        left = np.searchsorted(self._hi, hi, side="left")
        n = np.searchsorted(self._hi, hi, side="right") - left
        out = np.zeros(len(hi), bool)
        one = np.flatnonzero(n == 1)  # all but a 64-bit collision among the stored ids
        out[one] = self._lo[left[one]] == lo[one]
        many = np.flatnonzero(n > 1)
        if len(many):  # compare with every stored id of the same first 64 bits
            counts = n[many]
            firsts = np.cumsum(counts) - counts
            at = np.repeat(left[many] - firsts, counts) + np.arange(counts.sum())
            same = self._lo[at] == np.repeat(lo[many], counts)
            out[many] = np.add.reduceat(same, firsts) > 0
        return out


class GrowingEventIdSet:
    """Event ids added batch by batch while a service runs (the journal's, the live events
    since a fold), as fingerprints in sorted runs, each more than twice the size of the
    next (a new batch's run merges with the last while that is not): a lookup searches
    at most log2(ids) + 1 runs, and an id is merged again only when its run doubles (a
    merge is one stable sort of two sorted runs, linear).

    A Python set of the ids took 129 bytes an id (24-character ids), here 12: the
    journal's set grows for as long as the service runs (5,000 events/s: 2.3 GB an hour
    as strings, 0.2 GB as fingerprints), the live events' until the next fold."""

    def __init__(self, ids: pd.Series | np.ndarray | Sequence[str] = ()) -> None:
        self._runs: list[EventIdSet] = []
        self.add(ids)

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs)

    def contains(self, ids: pd.Series | np.ndarray | Sequence[str]) -> np.ndarray:
        """bool per id: in the set."""
        return self._holds(*fingerprints(ids))

    def _holds(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        out = np.zeros(len(hi), bool)
        for run in self._runs:
            out |= run._holds(hi, lo)
        return out

    def add(self, ids: pd.Series | np.ndarray | Sequence[str]) -> None:
        """Add the ids the set does not hold yet (each once, so ``len`` counts distinct
        ids)."""
        hi, lo = fingerprints(ids)
        new = ~self._holds(hi, lo)
        new[new] = ~pd.DataFrame({"hi": hi[new], "lo": lo[new]}).duplicated().to_numpy()
        if not new.any():
            return
        run = EventIdSet(hi[new], lo[new])
        while self._runs and len(self._runs[-1]) <= 2 * len(run):
            run = EventIdSet.union([self._runs.pop(), run])
        self._runs.append(run)


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
