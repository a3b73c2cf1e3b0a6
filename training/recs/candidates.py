"""Stage one: a few hundred candidate products per customer, each flagged with its sources.

Sources: ALS top-N among products the customer has not bought ("similar customers"),
the customer's own purchases ("buy again", most bought recently first), and popularity
in the customer's store, region and channel and overall (the last = "trending": most
bought over the last ``popularity_days``). A product from several sources is one row
with several flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.recs.als import top_n
from training.recs.data import Catalogue
from training.recs.snapshot import Snapshot

SOURCES: tuple[str, ...] = ("als", "buy_again", "store", "region", "channel", "trending")
BIT = {name: np.uint8(1 << i) for i, name in enumerate(SOURCES)}
REASONS: tuple[str, ...] = (
    "buy again",
    "similar customers",
    "popular in your store",
    "popular in your region",
    "popular on your channel",
    "trending",
)
"""Why an item is recommended; the first that applies, in this order."""
REASON_OF_SOURCE: dict[str, int] = {
    "buy_again": 0,
    "als": 1,
    "store": 2,
    "region": 3,
    "channel": 4,
    "trending": 5,
}


def reasons(sources: np.ndarray, bought_before: np.ndarray) -> np.ndarray:
    """Reason code (index into REASONS) per candidate: buy again when the customer bought
    it before, else its most personal source."""
    out = np.full(len(sources), REASON_OF_SOURCE["trending"], np.int8)
    for name in ("channel", "region", "store", "als"):  # least to most personal
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
    snap: Snapshot,
    catalogue: Catalogue,
    codes: np.ndarray,
    store: np.ndarray | None = None,
    channel: np.ndarray | None = None,
) -> Customers:
    """Each customer's store (request context, else their usual store, else the customers
    table's home store) and channel (context, else their usual purchase channel)."""
    known = codes >= 0
    safe = np.maximum(codes, 0)
    usual = np.where(known, snap.main_store[safe], -1)
    home = np.where(known, catalogue.home_store[safe], -1) if len(catalogue.home_store) else usual
    best = np.where(usual >= 0, usual, home)
    if store is not None:
        best = np.where(store >= 0, store, best)
    region = np.where(best >= 0, catalogue.store_region[np.maximum(best, 0)], -1)
    ch = np.where(known, snap.main_channel[safe], -1).astype(np.int32)
    if channel is not None:
        ch = np.where(channel >= 0, channel, ch)
    return Customers(codes.astype(np.int32), best.astype(np.int32), region.astype(np.int32), ch)


def generate(snap: Snapshot, customers: Customers, params: CandidateParams) -> Candidates:
    """Candidate rows for every customer of the request (unknown customers get only the
    popularity sources)."""
    parts_pos, parts_item, parts_bits, parts_rank = [], [], [], []

    def add(pos: np.ndarray, item: np.ndarray, source: str, rank: np.ndarray | None = None):
        ok = item >= 0
        parts_pos.append(pos[ok].astype(np.int32))
        parts_item.append(item[ok].astype(np.int32))
        parts_bits.append(np.full(int(ok.sum()), BIT[source], np.uint8))
        r = np.full(int(ok.sum()), -1, np.int16) if rank is None else rank[ok].astype(np.int16)
        parts_rank.append(r)

    n = len(customers)
    idx = np.arange(n)
    known = customers.code >= 0
    if snap.user_factors is not None and params.als > 0:
        warm = np.flatnonzero(known & snap.active[np.maximum(customers.code, 0)])
        if len(warm):
            items, _ = top_n(
                snap.user_factors,
                snap.item_factors,
                customers.code[warm],
                params.als,
                exclude=_bought_matrix(snap, customers.code[warm]),
            )
            ranks = np.broadcast_to(np.arange(items.shape[1]), items.shape)
            add(np.repeat(warm, items.shape[1]), items.ravel(), "als", ranks.ravel())
    if params.buy_again > 0:
        owner, at = snap.bought.slices(np.where(known, customers.code, -1))
        if len(at):
            score = snap.bought.columns["decayed"][at]
            order = np.lexsort((snap.bought.col_of(at), -score, owner))
            owner, at = owner[order], at[order]
            first = np.searchsorted(owner, owner, side="left")
            keep = (np.arange(len(owner)) - first) < params.buy_again
            add(owner[keep], snap.bought.col_of(at[keep]), "buy_again")
    for name, seg in (
        ("store", customers.store),
        ("region", customers.region),
        ("channel", customers.channel),
    ):
        top_items = snap.segment_top[name][0][:, : params.segment]
        has = np.flatnonzero(seg >= 0)
        if len(has) and top_items.shape[1]:
            items = top_items[seg[has]]
            add(np.repeat(has, items.shape[1]), items.ravel(), name)
    trend = snap.trending[: params.trending]
    add(np.repeat(idx, len(trend)), np.tile(trend, n), "trending")

    pos = np.concatenate(parts_pos) if parts_pos else np.zeros(0, np.int32)
    item = np.concatenate(parts_item) if parts_item else np.zeros(0, np.int32)
    bits = np.concatenate(parts_bits) if parts_bits else np.zeros(0, np.uint8)
    rank = np.concatenate(parts_rank) if parts_rank else np.zeros(0, np.int16)
    n_items = max(len(snap.items["buyers"]), 1)
    key = pos.astype(np.int64) * n_items + item
    order = np.argsort(key, kind="stable")
    key, bits, rank = key[order], bits[order], rank[order]
    if len(key) == 0:
        return Candidates(pos, item, bits, rank)
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    merged = np.bitwise_or.reduceat(bits, start)
    best_rank = np.maximum.reduceat(rank, start)  # at most one ALS row per pair
    key = key[start]
    return Candidates(
        pos=(key // n_items).astype(np.int32),
        item=(key % n_items).astype(np.int32),
        sources=merged.astype(np.uint8),
        als_rank=best_rank.astype(np.int16),
    )


def _bought_matrix(snap: Snapshot, codes: np.ndarray) -> sp.csr_matrix:
    """Rows = the given customers, 1 where they bought the product (ALS skips those)."""
    owner, at = snap.bought.slices(codes)
    n_items = len(snap.items["buyers"])
    data = np.ones(len(at), np.float32)
    m = sp.csr_matrix(
        (data, (owner, snap.bought.col_of(at))), shape=(len(codes), n_items), dtype=np.float32
    )
    return m
