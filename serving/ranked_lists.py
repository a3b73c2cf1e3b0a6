"""What the online snapshot precomputes for real-time requests (``serving/``): every
customer's personal candidates and every warm customer's ranked lists.

Its own module so that the snapshot (:mod:`serving.online`, which builds these arrays)
and the scorer (:mod:`serving.scoring`, which reads them) both import it, not each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.contract.schema import CHANNELS
from training.recs.base import _top_k
from training.recs.candidates import CandidateTable, resolve_customers
from training.recs.coldstart import popularity_rows
from training.recs.cutoff_state import customer_arrays
from training.recs.tables import csr_rows

PERSONAL_PARTS = ("indptr", "item", "sources", "als_rank")
"""The arrays of a :class:`~training.recs.candidates.CandidateTable`, stored as
``personal_<part>``."""
LIST_PARTS = ("indptr", "item", "score", "reason")
"""The arrays of :class:`RankedLists`, stored as ``lists_<part>_<channel context>``."""
AHEAD_PARTS = ("ranked", "indptr", "item", "score", "reason")
"""The arrays of :class:`AheadLists`, in its fields' order."""


Allows = Callable[[np.ndarray], np.ndarray]
"""A request's filter over item codes: bool per item (see ``ItemRules.allows``)."""

REST_KEY = "lists_rest_bought"
"""Marks stored lists built with resting products left out (snapshots before issue 17
lack it: their lists are rebuilt at start)."""


def serving_arrays(recommender, depth: int) -> dict[str, Any]:
    """Every customer's personal candidates and ranked lists, so that the service starts
    by reading them instead of ranking every customer (minutes on a large catalogue),
    and the recommender's per-customer state, which workers map instead of holding
    (:func:`~training.recs.cutoff_state.customer_arrays`)."""
    personal = recommender.personal_candidates()
    arrays = {f"personal_{name}": getattr(personal, name) for name in PERSONAL_PARTS}
    lists = RankedLists.build(recommender, personal, depth).to_arrays()
    return arrays | lists | customer_arrays(recommender.state_)


def stored_lists_usable(stored: dict, depth: int) -> bool:
    """Whether a snapshot's stored lists are what :meth:`RankedLists.build` would give."""
    return int(stored.get("lists_depth", -1)) == depth and REST_KEY in stored


class RankedLists:
    """Every warm customer's ranked list, ``depth`` deep, for each channel context (none,
    then each contract channel) in their default store: what a real-time request reads
    instead of ranking when its context is the default one. Lists are what is shown:
    products resting after a purchase are left out (``rest_bought``).

    Exact, not an approximation: the ranker scores each (customer, product) row on its
    own, so filtering a deeper list gives the rows the full path would return, as long
    as at least k rows survive the filters or the list holds every candidate; otherwise
    :meth:`lookup` returns None and the caller ranks in full (a test checks both agree).
    """

    def __init__(self, depth, default_store, indptr, item, score, reason) -> None:
        """Item codes are kept in the smallest integer type the lists' codes fit (int16
        below 32,768 products) and offsets in int32 when they fit: about a quarter of the
        lists' bytes, the largest structure of the service worker (issue 17)."""
        self.depth = depth
        self.default_store = default_store
        self.indptr = [np.asarray(p, _offset_dtype(p)) for p in indptr]
        self.item = [np.asarray(i, _code_dtype(i)) for i in item]
        self.score, self.reason = score, reason

    @classmethod
    def build(cls, recommender, personal: CandidateTable, depth: int) -> RankedLists:
        state, cat = recommender.state_, recommender.catalogue_
        n = cat.n_customers
        codes = np.flatnonzero(state.active[:n]).astype(np.int32)
        default_store = resolve_customers(state, cat, np.arange(n, dtype=np.int32)).store
        no_store = np.full(len(codes), -1, np.int32)
        indptr, items, scores, reasons = [], [], [], []
        for channel in range(-1, len(CHANNELS)):
            pos, item, score, reason, _rank = recommender.recommend_codes(
                codes,
                no_store,
                np.full(len(codes), channel, np.int32),
                depth,
                np.zeros(0, np.int64),
                personal=personal,
                rest_bought=True,
            )
            counts = np.bincount(codes[pos], minlength=n)
            ptr = np.zeros(n + 1, np.int64)
            np.cumsum(counts, out=ptr[1:])
            indptr.append(ptr)
            items.append(item.astype(np.int32))
            scores.append(score.astype(np.float32))
            reasons.append(reason.astype(np.int8))
        return cls(depth, default_store, indptr, items, scores, reasons)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays, one file each in the snapshot (start-up maps them: no ranking)."""
        out = {
            "lists_depth": np.array(self.depth),
            "lists_default_store": self.default_store,
            REST_KEY: np.array(True),
        }
        for c in range(len(self.indptr)):
            out[f"lists_indptr_{c}"] = self.indptr[c]
            out[f"lists_item_{c}"] = self.item[c]
            out[f"lists_score_{c}"] = self.score[c]
            out[f"lists_reason_{c}"] = self.reason[c]
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RankedLists:
        n = len(CHANNELS) + 1
        parts = [[arrays[f"lists_{name}_{c}"] for c in range(n)] for name in LIST_PARTS]
        return cls(int(arrays["lists_depth"]), arrays["lists_default_store"], *parts)

    def lookup(
        self, code: int, channel: int, store: int, allows: Allows | None, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(items, scores, reasons) of a warm customer's top k, or None when the request
        needs the full path (another store, or too few rows left after the filters)."""
        if store >= 0 and store != self.default_store[code]:
            return None
        c = channel + 1
        lo, hi = self.indptr[c][code], self.indptr[c][code + 1]
        item, score, reason = self.item[c][lo:hi], self.score[c][lo:hi], self.reason[c][lo:hi]
        return allowed_top(item, score, reason, allows, k, complete=hi - lo < self.depth)


@dataclass
class AheadLists:
    """Lists the live refresh ranked ahead (:meth:`serving.scoring.Scorer.rank_ahead`)
    for some customers of a live ranking, as a request without channel or store ranks
    them: rows grouped by the ranking's customer codes, as in CSR. Flat arrays, so that a
    round's lists cross to the worker in five arrays, not a few thousand. A customer's
    list of 50 takes ~0.35 KB; the worker keeps it while the ranking ranks them."""

    ranked: np.ndarray  # bool per code: has a list here
    indptr: np.ndarray  # int64, codes + 1
    item: np.ndarray  # item codes (int16 for fewer than 32,768 products), best first
    score: np.ndarray  # float32
    reason: np.ndarray  # int8 codes into REASONS

    @classmethod
    def of_rows(cls, n_codes: int, code: np.ndarray, rows: tuple[np.ndarray, ...]) -> AheadLists:
        """From ranked rows (item, score, reason) of customers ``code`` (one code per row,
        a customer's rows together and best first), for a ranking of ``n_codes``."""
        item, score, reason = rows
        order = np.argsort(code, kind="stable")  # customers by code, each list in its order
        counts = np.bincount(code, minlength=n_codes)
        indptr = np.zeros(n_codes + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        ranked = np.zeros(n_codes, bool)
        ranked[code] = True
        return cls(
            ranked,
            indptr,
            item[order].astype(_code_dtype(item)),
            score[order].astype(np.float32),
            reason[order].astype(np.int8),
        )

    def get(self, code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(items, scores, reasons) of customer ``code``'s list, or None: not ranked ahead."""
        if not self.ranked[code]:
            return None
        lo, hi = self.indptr[code], self.indptr[code + 1]
        return self.item[lo:hi], self.score[lo:hi], self.reason[lo:hi]

    def of_customers(self, codes: np.ndarray) -> AheadLists:
        """The lists of customers ``codes``, who are codes 0, 1, ... of the result."""
        indptr, rows = csr_rows(self.indptr, codes)
        return AheadLists(
            self.ranked[codes], indptr, self.item[rows], self.score[rows], self.reason[rows]
        )


class PopularLists:
    """The list a customer without history gets in each (store, channel) context, built
    on first use by the recommender's own popularity step and kept: it depends on the
    context alone, so a new customer's request filters it (~20 µs) instead of ranking
    (~0.7 ms).

    Exact: it holds every row the full path reads when a request filters (each popularity
    segment ``popular_depth`` deep, merged and sorted as the full path's top-k sorts them,
    none cut), so a filtered list is the full path's answer however few rows survive; and
    unfiltered its first k rows are the full path's (each segment is read in order). A
    test checks both agree. (Cut at ``popular_depth`` rows, store requests whose store
    sold few of them were ranked in full: 2% of bench_service.py's mix, issue 21.) A
    context's list holds up to four segments x ``popular_depth`` rows (800, ~7 KB)."""

    def __init__(self, recommender, personal: CandidateTable | None) -> None:
        self.recommender, self.personal = recommender, personal
        self.depth = recommender.state_.params.popular_depth
        self._lists: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def lookup(
        self, store: int, channel: int, allows: Allows | None, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(items, scores, reasons) of an unknown customer's top k in this context, or
        None when the caller must rank in full (too few rows left after the filters)."""
        if k > self.depth:
            return None
        ranked = self._lists.get((store, channel))
        if ranked is None:
            ranked = self._lists[(store, channel)] = self._rank(store, channel)
        return allowed_top(*ranked, allows, k, complete=True)

    def _rank(self, store: int, channel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every popularity row of an unknown customer in this context, best first: what
        ``Recommender._score`` reads for one under a filter, sorted by ``_top_k``."""
        state, cat = self.recommender.state_, self.recommender.catalogue_
        one = np.array([-1], np.int32)
        customers = resolve_customers(
            state, cat, one, np.array([store], np.int32), np.array([channel], np.int32)
        )
        pos, item, score, reason = popularity_rows(
            state, customers, np.zeros(1, np.int64), self.depth
        )
        _pos, item, score, reason, _rank = _top_k(
            pos, item, score, reason, np.zeros(0, np.int64), cat.n_items, len(item)
        )
        return item, score, reason


def _code_dtype(codes: np.ndarray) -> type:
    """int16 for codes of a catalogue of fewer than 32,768 products, else int32."""
    return np.int16 if len(codes) == 0 or int(codes.max()) <= np.iinfo(np.int16).max else np.int32


def _offset_dtype(indptr: np.ndarray) -> type:
    """int32 for offsets into fewer than 2**31 rows, else int64."""
    fits = len(indptr) == 0 or int(indptr[-1]) <= np.iinfo(np.int32).max
    return np.int32 if fits else np.int64


def allowed_top(
    item: np.ndarray,
    score: np.ndarray,
    reason: np.ndarray,
    allows: Allows | None,
    k: int,
    complete: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The first k rows of a ranked list that ``allows`` keeps (None: all), or None when
    fewer are left and the list was cut short (not ``complete``): rows past its end might
    qualify."""
    if allows is not None:
        keep = allows(item)
        item, score, reason = item[keep], score[keep], reason[keep]
    if len(item) < k and not complete:
        return None
    return item[:k], score[:k], reason[:k]
