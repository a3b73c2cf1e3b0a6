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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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

    def __init__(self, hi: np.ndarray, lo: np.ndarray) -> None:
        """``hi`` / ``lo``: the ids' fingerprints (any order; sorted here by ``hi``, which is
        all :meth:`contains` needs). A stable sort: the sets of :meth:`union`, each sorted
        already, are merged run by run (a year's 500,000 ids and 50,000 more: 1.4 ms,
        against 99 ms for a ``lexsort`` of both halves)."""
        order = np.argsort(hi, kind="stable")
        self._hi, self._lo = hi[order], lo[order]

    @classmethod
    def of(cls, ids: pd.Series | np.ndarray | Sequence[str]) -> EventIdSet:
        """The set of ``ids``."""
        return cls(*fingerprints(ids))

    @classmethod
    def union(cls, sets: Sequence[EventIdSet]) -> EventIdSet:
        """One set holding every id of ``sets``."""
        hi = np.concatenate([s._hi for s in sets]) if sets else np.zeros(0, np.uint64)
        lo = np.concatenate([s._lo for s in sets]) if sets else np.zeros(0, np.uint32)
        return cls(hi, lo)

    @classmethod
    def read(cls, store_dir: Path, start: pd.Timestamp) -> EventIdSet:
        """The ids of the store's events from ``start`` on (read a batch at a time)."""
        from features.store.events import map_event_batches

        def batch(events: pd.DataFrame) -> EventIdSet:
            return cls.of(events["event_id"])

        return cls.union(map_event_batches(store_dir, batch, start=start, columns=["event_id"]))

    def __len__(self) -> int:
        return len(self._hi)

    @property
    def nbytes(self) -> int:
        return self._hi.nbytes + self._lo.nbytes

    def contains(self, ids: pd.Series | np.ndarray | Sequence[str]) -> np.ndarray:
        """bool per id: in the set."""
        hi, lo = fingerprints(ids)
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
