"""Stage one: a few hundred candidate products per customer, each flagged with its sources.

Sources: ALS top-N among products the customer has not bought ("similar customers"),
the customer's own purchases ("buy again", most bought recently first), the products
they viewed or put in the cart in the last ``session_hours`` ("you looked at this", most
recent first), and popularity in the customer's store, region and channel and overall
(the last = "trending": most bought over the last ``popularity_days``). A product from
several sources is one row with several flags.

Served lists leave out the products a customer is resting from: bought fewer days ago
than their usual gap between buying it (see :func:`resting`), so a product just bought
leaves the list (issue 17). A rule of what is shown now, like an exclusion: training
and the offline evaluation (which asks what is bought over the next days) keep them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.recs.als import top_n
from training.recs.cutoff_state import CutoffState
from training.recs.data import Catalogue
from training.recs.product_tables import repurchase_gap
from training.recs.tables import csr_rows, run_starts

SOURCES: tuple[str, ...] = (
    "als",
    "buy_again",
    "store",
    "region",
    "channel",
    "trending",
    "session",
)
BIT = {name: np.uint8(1 << i) for i, name in enumerate(SOURCES)}
REASONS: tuple[str, ...] = (
    "buy again",
    "similar customers",
    "popular in your store",
    "popular in your region",
    "popular on your channel",
    "trending",
    "you looked at this",
)
"""Why an item is recommended (codes are positions: new reasons are appended, so the
codes in stored lists keep their meaning). See :func:`reasons` for which one applies."""
REASON_OF_SOURCE: dict[str, int] = {
    "buy_again": 0,
    "als": 1,
    "store": 2,
    "region": 3,
    "channel": 4,
    "trending": 5,
    "session": 6,
}


def reasons(sources: np.ndarray, bought_before: np.ndarray) -> np.ndarray:
    """Reason code (index into REASONS) per candidate: buy again when the customer bought
    it before, else "you looked at this" for a product from their session, else its most
    personal source."""
    out = np.full(len(sources), REASON_OF_SOURCE["trending"], np.int8)
    for name in ("channel", "region", "store", "als", "session"):  # least to most personal
        out[(sources & BIT[name]) > 0] = REASON_OF_SOURCE[name]
    out[bought_before] = REASON_OF_SOURCE["buy_again"]
    return out


@dataclass(frozen=True)
class CandidateParams:
    """How many candidates each source contributes per customer."""

    als: int = 50
    buy_again: int = 200
    segment: int = 20
    trending: int = 30
    session: int = 0


@dataclass
class Customers:
    """The customers of one request: codes (-1 unknown) and resolved store / channel."""

    code: np.ndarray  # int32 catalogue code, -1 unknown
    store: np.ndarray  # int32 store code for "your store", -1 unknown
    region: np.ndarray  # int32 region code, -1 unknown
    channel: np.ndarray  # int32 channel code, -1 unknown

    def __len__(self) -> int:
        return len(self.code)


@dataclass
class Candidates:
    """Candidate rows: ``pos`` indexes the request's customers, sorted by (pos, item)."""

    pos: np.ndarray  # int32
    item: np.ndarray  # int32
    sources: np.ndarray  # uint8 bit flags (BIT)
    als_rank: np.ndarray  # int16 rank in the ALS list, -1 when not from ALS

    def __len__(self) -> int:
        return len(self.pos)

    def has(self, source: str) -> np.ndarray:
        return (self.sources & BIT[source]) > 0


def resolve_customers(
    state: CutoffState,
    catalogue: Catalogue,
    codes: np.ndarray,
    store: np.ndarray | None = None,
    channel: np.ndarray | None = None,
) -> Customers:
    """Each customer's store (request context, else their usual store, else the customers
    table's home store) and channel (context, else their usual purchase channel)."""
    known = codes >= 0
    safe = np.maximum(codes, 0)
    usual = np.where(known, state.main_store[safe], -1)
    home = np.where(known, catalogue.home_store[safe], -1) if len(catalogue.home_store) else usual
    best = np.where(usual >= 0, usual, home)
    if store is not None:
        best = np.where(store >= 0, store, best)
    region = np.where(best >= 0, catalogue.store_region[np.maximum(best, 0)], -1)
    ch = np.where(known, state.main_channel[safe], -1).astype(np.int32)
    if channel is not None:
        ch = np.where(channel >= 0, channel, ch)
    return Customers(codes.astype(np.int32), best.astype(np.int32), region.astype(np.int32), ch)


def generate(state: CutoffState, customers: Customers, params: CandidateParams) -> Candidates:
    """Candidate rows for every customer of the request (unknown customers get only the
    popularity sources): :func:`personal` and :func:`contextual` merged."""
    n_items = max(len(state.items["buyers"]), 1)
    return merge(
        [personal(state, customers.code, params), contextual(state, customers, params)], n_items
    )


def personal(state: CutoffState, codes: np.ndarray, params: CandidateParams) -> Candidates:
    """The request-independent sources of the customers ``codes`` (-1 unknown): ALS, buy
    again and the session. ``pos`` indexes ``codes``; rows are not merged (see
    :func:`merge`).

    The online snapshot precomputes these for every customer, so a request only adds
    :func:`contextual` rows and re-ranks."""
    parts = _Parts()
    known = codes >= 0
    if state.user_factors is not None and params.als > 0:
        has_factors = known & state.active[np.maximum(codes, 0)]
        if state.als_customers is not None:  # a live overlay: new customers have none
            has_factors &= state.als_customers[np.maximum(codes, 0)]
        warm = np.flatnonzero(has_factors)
        if len(warm):
            items, _ = top_n(
                state.user_factors,
                state.item_factors,
                codes[warm],
                params.als,
                exclude=_bought_matrix(state, codes[warm]),
            )
            ranks = np.broadcast_to(np.arange(items.shape[1]), items.shape)
            parts.add(np.repeat(warm, items.shape[1]), items.ravel(), "als", ranks.ravel())
    if params.buy_again > 0:
        owner, at = state.bought.slices(np.where(known, codes, -1))
        if len(at):
            score = state.bought.columns["decayed"][at]
            order = np.lexsort((state.bought.col_of(at), -score, owner))
            owner, at = owner[order], at[order]
            first = np.searchsorted(owner, owner, side="left")
            keep = (np.arange(len(owner)) - first) < params.buy_again
            parts.add(owner[keep], state.bought.col_of(at[keep]), "buy_again")
    session = state.session  # None in a state pickled before issue 17 (the default)
    if params.session > 0 and session is not None:
        owner, at = session.slices(np.where(known, codes, -1))
        if len(at):
            order = np.lexsort((session.col_of(at), session.columns["hours_ago"][at], owner))
            owner, at = owner[order], at[order]
            first = np.searchsorted(owner, owner, side="left")
            keep = (np.arange(len(owner)) - first) < params.session
            parts.add(owner[keep], session.col_of(at[keep]), "session")
    return parts.candidates()


def resting(state: CutoffState, codes: np.ndarray, items: np.ndarray) -> np.ndarray:
    """bool per (customer code, item) pair: the customer bought the product fewer days
    ago than their usual gap between buying it (their own when they bought it on two
    days or more, else the product's median gap over its repeat buyers; a product
    nobody rebuys has no gap and never rests)."""
    at = state.bought.find(codes, items)
    got = at >= 0
    out = np.zeros(len(codes), bool)
    if not got.any():
        return out
    b, pairs = state.bought.columns, at[got]
    since = b["days_since_last_bought"][pairs].astype(np.float32)
    own = repurchase_gap(b["days_bought"][pairs], since, b["first_day_ago"][pairs])
    item_gap = state.item_gap  # None in a state pickled before issue 17 (the default)
    typical = item_gap[items[got]] if item_gap is not None else np.nan
    gap = np.where(np.isnan(own), typical, own)
    out[got] = since < gap  # NaN gap: False
    return out


def without_resting(state: CutoffState, codes: np.ndarray, cand: Candidates) -> Candidates:
    """``cand`` (``pos`` indexes ``codes``) without the customers' resting products."""
    if len(cand) == 0:
        return cand
    keep = ~resting(state, codes[cand.pos], cand.item)
    return Candidates(cand.pos[keep], cand.item[keep], cand.sources[keep], cand.als_rank[keep])


def contextual(state: CutoffState, customers: Customers, params: CandidateParams) -> Candidates:
    """The sources that depend on where the list is shown: popularity in the customer's
    store, region and channel, and trending. ``pos`` indexes ``customers``; not merged."""
    parts = _Parts()
    for name, seg in (
        ("store", customers.store),
        ("region", customers.region),
        ("channel", customers.channel),
    ):
        top_items = state.segment_top[name][0][:, : params.segment]
        has = np.flatnonzero(seg >= 0)
        if len(has) and top_items.shape[1]:
            items = top_items[seg[has]]
            parts.add(np.repeat(has, items.shape[1]), items.ravel(), name)
    n = len(customers)
    trend = state.trending[: params.trending]
    parts.add(np.repeat(np.arange(n), len(trend)), np.tile(trend, n), "trending")
    return parts.candidates()


def merge(parts: list[Candidates], n_items: int) -> Candidates:
    """One row per (pos, item), sorted by (pos, item): source flags OR-ed, ALS rank kept."""
    pos = np.concatenate([p.pos for p in parts]) if parts else np.zeros(0, np.int32)
    item = np.concatenate([p.item for p in parts]) if parts else np.zeros(0, np.int32)
    bits = np.concatenate([p.sources for p in parts]) if parts else np.zeros(0, np.uint8)
    rank = np.concatenate([p.als_rank for p in parts]) if parts else np.zeros(0, np.int16)
    key = pos.astype(np.int64) * n_items + item
    order = np.argsort(key, kind="stable")
    key, bits, rank = key[order], bits[order], rank[order]
    if len(key) == 0:
        return Candidates(pos, item, bits, rank)
    start = np.flatnonzero(run_starts(key))
    merged = np.bitwise_or.reduceat(bits, start)
    best_rank = np.maximum.reduceat(rank, start)  # at most one ALS row per pair
    key = key[start]
    return Candidates(
        pos=(key // n_items).astype(np.int32),
        item=(key % n_items).astype(np.int32),
        sources=merged.astype(np.uint8),
        als_rank=best_rank.astype(np.int16),
    )


class _Parts:
    """Candidate rows collected source by source."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.item: list[np.ndarray] = []
        self.bits: list[np.ndarray] = []
        self.rank: list[np.ndarray] = []

    def add(self, pos: np.ndarray, item: np.ndarray, source: str, rank=None) -> None:
        ok = item >= 0
        n = int(ok.sum())
        self.pos.append(pos[ok].astype(np.int32))
        self.item.append(item[ok].astype(np.int32))
        self.bits.append(np.full(n, BIT[source], np.uint8))
        self.rank.append(np.full(n, -1, np.int16) if rank is None else rank[ok].astype(np.int16))

    def candidates(self) -> Candidates:
        if not self.pos:
            empty = np.zeros(0, np.int32)
            return Candidates(empty, empty, np.zeros(0, np.uint8), np.zeros(0, np.int16))
        return Candidates(
            np.concatenate(self.pos),
            np.concatenate(self.item),
            np.concatenate(self.bits),
            np.concatenate(self.rank),
        )


def _bought_matrix(state: CutoffState, codes: np.ndarray) -> sp.csr_matrix:
    """Rows = the given customers, 1 where they bought the product (ALS skips those)."""
    owner, at = state.bought.slices(codes)
    n_items = len(state.items["buyers"])
    data = np.ones(len(at), np.float32)
    m = sp.csr_matrix(
        (data, (owner, state.bought.col_of(at))), shape=(len(codes), n_items), dtype=np.float32
    )
    return m


@dataclass
class CandidateTable:
    """Precomputed :func:`personal` candidates of every customer, rows grouped by customer
    code (``indptr`` as in CSR): what the online snapshot keeps so requests skip ALS."""

    indptr: np.ndarray  # int64, n_customers + 1
    item: np.ndarray  # int32
    sources: np.ndarray  # uint8
    als_rank: np.ndarray  # int16

    def of_customers(self, codes: np.ndarray) -> CandidateTable:
        """The candidates of customers ``codes`` alone, numbered 0 .. len(codes) - 1 in
        that order."""
        indptr, rows = csr_rows(self.indptr, codes)
        return CandidateTable(indptr, self.item[rows], self.sources[rows], self.als_rank[rows])

    @classmethod
    def build(
        cls,
        state: CutoffState,
        n_customers: int,
        params: CandidateParams,
        codes: np.ndarray | None = None,
    ) -> CandidateTable:
        """Personal candidates of customers ``codes`` (default: every one of ``0 ..
        n_customers - 1``; -1 entries are skipped); the other customers have none. Batch
        scoring builds one per chunk: one ALS top-n call for thousands of customers."""
        if codes is None:
            codes = np.arange(n_customers, dtype=np.int32)
        else:
            codes = np.unique(codes[codes >= 0]).astype(np.int32)
        c = personal(state, codes, params)
        owner = codes[c.pos]
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=n_customers)
        indptr = np.zeros(n_customers + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, c.item[order], c.sources[order], c.als_rank[order])

    def rows_for(self, codes: np.ndarray) -> Candidates:
        """The rows of customers ``codes`` (-1: none); ``pos`` indexes ``codes``."""
        safe = np.maximum(codes, 0)
        start = self.indptr[safe]
        length = np.where(codes >= 0, self.indptr[safe + 1] - start, 0)
        pos = np.repeat(np.arange(len(codes), dtype=np.int32), length)
        offset = np.arange(len(pos)) - np.repeat(np.cumsum(length) - length, length)
        at = np.repeat(start, length) + offset
        return Candidates(pos, self.item[at], self.sources[at], self.als_rank[at])
