"""Segment popularity: what customers without history get (and what fills short lists).

A customer with no product event in the lookback gets the most bought products of their
store (request context, else home store), then of the store's region, then of their
channel, then overall. Scores follow list position: 1 / (1 + position).
"""

from __future__ import annotations

import numpy as np

from training.recs.candidates import REASON_OF_SOURCE, Customers
from training.recs.cutoff_state import CutoffState
from training.recs.tables import run_starts

SEGMENTS: tuple[str, ...] = ("store", "region", "channel")


def popularity_rows(
    state: CutoffState, customers: Customers, rows: np.ndarray, depth: int, segments: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Popularity list of the customers at positions ``rows``: (pos, item, score, reason
    code into ``REASONS``), one row per product (the first segment that lists it wins).
    Without ``segments`` it is the overall ("trending") list alone."""
    pos_parts, item_parts, order_parts, reason_parts = [], [], [], []
    offset = 0
    plan = []
    if segments:
        for name in SEGMENTS:
            plan.append((getattr(customers, name)[rows], state.segment_top[name][0], name))
    trend = state.trending[:depth][None, :]
    plan.append((np.zeros(len(rows), np.int32), trend, "trending"))
    for seg, top, source in plan:
        has = seg >= 0
        top = top[:, :depth]
        if not has.any() or top.shape[1] == 0:
            continue
        items = top[seg[has]]
        width = items.shape[1]
        pos_parts.append(np.repeat(rows[has], width))
        item_parts.append(items.ravel())
        order_parts.append(np.tile(np.arange(width), int(has.sum())) + offset)
        reason_parts.append(np.full(items.size, REASON_OF_SOURCE[source], np.int8))
        offset += width
    if not pos_parts:
        empty = np.zeros(0, np.int32)
        return empty, empty, np.zeros(0, np.float32), np.zeros(0, np.int8)
    pos = np.concatenate(pos_parts)
    item = np.concatenate(item_parts)
    order = np.concatenate(order_parts)
    reason = np.concatenate(reason_parts)
    ok = item >= 0
    pos, item, order, reason = pos[ok], item[ok], order[ok], reason[ok]
    n_items = len(state.items["buyers"])
    key = pos.astype(np.int64) * n_items + item
    s = np.lexsort((order, key))
    key, order, reason = key[s], order[s], reason[s]
    first = run_starts(key)
    key, order, reason = key[first], order[first], reason[first]
    # position within the customer's merged list -> score
    s = np.lexsort((order, key // n_items))
    key, reason = key[s], reason[s]
    owner = key // n_items
    start = np.searchsorted(owner, owner, side="left")
    position = np.arange(len(owner)) - start
    score = (1.0 / (1.0 + position)).astype(np.float32)
    return owner.astype(np.int32), (key % n_items).astype(np.int32), score, reason
