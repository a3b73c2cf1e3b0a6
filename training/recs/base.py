"""One interface for every recommender (the model and its baselines).

Every recommender is a scikit-learn estimator: ``__init__`` stores hyperparameters
(``get_params`` / ``clone`` work), ``fit`` returns self, learned state ends in ``_``, and
prediction before ``fit`` raises ``NotFittedError``. Subclasses implement ``fit`` and
``_score``: scored candidate rows for a request's customers. This base turns ids into
codes, applies the request context and exclusions, keeps each customer's ``k`` best and
returns one frame: customer_id, rank, product_id, score, reason. Customers are scored
independently (in chunks), so a batch gives the rows of one-by-one calls, within the
float32 rounding of ALS scores (a BLAS product rounds them by the shape of its block).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from features.contract.schema import CHANNELS
from training.recs.candidates import REASONS, CandidateTable, Customers, resolve_customers
from training.recs.cutoff_state import CutoffState
from training.recs.data import Catalogue, History
from training.recs.tables import run_starts

Exclude = str | Iterable[str] | pd.DataFrame | None
"""None; "purchased" (what each customer bought before the fitted cutoff); product ids to
drop for everyone; or a frame of (customer_id, product_id) pairs to drop."""
Context = Mapping[str, str] | pd.DataFrame | None
"""None; {"store_id": ..., "channel": ...} for the whole request; or a frame with
customer_id and store_id and/or channel columns, one row per customer."""

CHUNK = 2048
Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Scored candidate rows: (position in the request, item code, score, reason code)."""


class BaseRecommender(BaseEstimator):
    """Shared prediction path; see the module docstring."""

    name: str = "base"
    catalogue_: Catalogue
    state_: CutoffState

    def fit(
        self,
        events: pd.DataFrame | History,
        customers: pd.DataFrame | None = None,
        products: pd.DataFrame | None = None,
        stores: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
    ) -> BaseRecommender:
        raise NotImplementedError

    def _score(self, customers: Customers, k: int, excluded: np.ndarray) -> Rows:
        """(pos, item, score, reason code) rows; excluded = sorted pos * n_items + item keys
        the subclass may skip early (the base drops them anyway)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ prediction

    def recommend(
        self,
        customer_ids: Iterable[str],
        k: int = 10,
        exclude: Exclude = None,
        context: Context = None,
        rest_bought: bool = False,
    ) -> pd.DataFrame:
        """The ``k`` best products per customer (up to k), best first: customer_id, rank
        (1 = best), product_id, score (higher is better; compare within one customer),
        reason. Customers come back in request order (duplicates once); unknown or new
        customers get segment popularity. ``rest_bought``: leave out products bought
        within the customer's usual gap, as served lists do (the model's only)."""
        if not hasattr(self, "state_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ids = pd.Index(pd.unique(pd.Index(list(customer_ids), dtype="str")), dtype="str")
        cat = self.catalogue_
        codes = cat.customer_codes(ids)
        store, channel = self._context(ids, context)
        excluded = self._excluded(ids, codes, exclude)
        pos, item, score, reason, rank = self.recommend_codes(
            codes, store, channel, k, excluded, rest_bought=rest_bought
        )
        return pd.DataFrame(
            {
                "customer_id": pd.Series(ids.to_numpy()[pos], dtype="str"),
                "rank": (rank + 1).astype(np.int16),
                "product_id": pd.Series(cat.item_ids.to_numpy()[item], dtype="str"),
                "score": score.astype(np.float32),
                "reason": pd.Categorical.from_codes(reason, categories=list(REASONS)),
            }
        )

    def recommend_codes(
        self,
        codes: np.ndarray,
        store: np.ndarray,
        channel: np.ndarray,
        k: int,
        excluded: np.ndarray,
        personal: CandidateTable | None = None,
        allowed: np.ndarray | None = None,
        num_threads: int = 1,
        rest_bought: bool = False,
    ) -> tuple[np.ndarray, ...]:
        """The array form of :meth:`recommend` (what serving and batch scoring call):
        customer codes (-1 unknown), store / channel context codes (-1 none), sorted
        excluded ``pos * n_items + item`` keys; ``personal`` / ``allowed`` / ``num_threads``
        / ``rest_bought`` (what serving shows: products just bought left out) as in the
        model's ``_score``. Returns (pos, item, score,
        reason code, rank from 0), sorted by pos then rank, in chunks of ``CHUNK``
        customers."""
        if not hasattr(self, "state_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        n_items = self.catalogue_.n_items
        extra: dict = {"num_threads": num_threads} if num_threads != 1 else {}
        if allowed is not None:
            extra["allowed"] = allowed
        if rest_bought:
            extra["rest_bought"] = True
        parts = []
        for lo in range(0, len(codes), CHUNK):
            sl = slice(lo, lo + CHUNK)
            cust = resolve_customers(
                self.state_, self.catalogue_, codes[sl], store[sl], channel[sl]
            )
            bounds = np.searchsorted(excluded, [lo * n_items, (lo + CHUNK) * n_items])
            chunk_excluded = excluded[bounds[0] : bounds[1]] - lo * n_items
            if personal is not None:
                extra["personal"] = personal.rows_for(codes[sl])
            pos, item, score, reason = self._score(cust, k, chunk_excluded, **extra)
            pos, item, score, reason, rank = _top_k(
                pos, item, score, reason, chunk_excluded, n_items, k
            )
            parts.append((pos + lo, item, score, reason, rank))
        if not parts:
            empty = np.zeros(0, np.int64)
            return (
                empty,
                empty.astype(np.int32),
                empty.astype(np.float32),
                empty.astype(np.int8),
                empty,
            )
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))

    def _context(self, ids: pd.Index, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """Store and channel codes per customer from the request context (-1: none)."""
        n = len(ids)
        store = np.full(n, -1, np.int32)
        channel = np.full(n, -1, np.int32)
        if context is None:
            return store, channel
        if isinstance(context, pd.DataFrame):
            ctx = context.drop_duplicates("customer_id").set_index("customer_id")
            ctx.index = ctx.index.astype("str")
            ctx = ctx.reindex(ids)
            stores = ctx["store_id"] if "store_id" in ctx.columns else None
            channels = ctx["channel"] if "channel" in ctx.columns else None
        else:
            unknown = set(context) - {"store_id", "channel"}
            if unknown:
                raise ValueError(f"unknown context keys: {sorted(unknown)}")
            stores = pd.Series([context.get("store_id")] * n) if "store_id" in context else None
            channels = pd.Series([context.get("channel")] * n) if "channel" in context else None
        if stores is not None:
            store = self.catalogue_.store_codes(stores.astype("str").to_numpy())
        if channels is not None:
            values = channels.astype(object).where(channels.notna(), None)
            index = {c: i for i, c in enumerate(CHANNELS)}
            channel = values.map(index).fillna(-1).to_numpy(dtype=np.int32)
            bad = values[(channel < 0) & values.notna().to_numpy()]
            if len(bad):
                raise ValueError(f"unknown channel in context: {sorted(set(bad))}")
        return store, channel

    def _excluded(self, ids: pd.Index, codes: np.ndarray, exclude: Exclude) -> np.ndarray:
        """Sorted pos * n_items + item keys of the pairs to leave out."""
        n_items = self.catalogue_.n_items
        if exclude is None:
            return np.zeros(0, np.int64)
        if isinstance(exclude, str):
            if exclude != "purchased":
                raise ValueError('exclude must be None, "purchased", product ids or a frame')
            owner, at = self.state_.bought.slices(codes)
            keys = owner.astype(np.int64) * n_items + self.state_.bought.col_of(at)
            return np.sort(keys)
        if isinstance(exclude, pd.DataFrame):
            pos = ids.get_indexer(pd.Index(exclude["customer_id"], dtype="str"))
            item = self.catalogue_.item_codes(exclude["product_id"].to_numpy())
            ok = (pos >= 0) & (item >= 0)
            return np.unique(pos[ok].astype(np.int64) * n_items + item[ok])
        item = self.catalogue_.item_codes(list(exclude))
        item = np.unique(item[item >= 0])
        pos = np.repeat(np.arange(len(ids), dtype=np.int64), len(item))
        return np.sort(pos * n_items + np.tile(item, len(ids)))


def _top_k(
    pos: np.ndarray,
    item: np.ndarray,
    score: np.ndarray,
    reason: np.ndarray,
    excluded: np.ndarray,
    n_items: int,
    k: int,
) -> tuple[np.ndarray, ...]:
    """Drop excluded and duplicate pairs (keeping the best score), sort each customer's
    rows by score (ties: lower item code) and keep the first k."""
    key = pos.astype(np.int64) * n_items + item
    if len(excluded):
        at = np.minimum(np.searchsorted(excluded, key), len(excluded) - 1)
        keep = excluded[at] != key
        pos, item, score, reason, key = pos[keep], item[keep], score[keep], reason[keep], key[keep]
    desc = _descending(score) if len(score) >= SORT_KEY_FROM else None
    order = _stable_order((key, desc), n_items) if desc is not None else None
    if order is None:
        order = np.lexsort((-score, key))
    order = order[run_starts(key[order])]
    pos, item, score, reason = pos[order], item[order], score[order], reason[order]
    order = _stable_order((pos, desc[order], item), n_items) if desc is not None else None
    if order is None:
        order = np.lexsort((item, -score, pos))
    pos, item, score, reason = pos[order], item[order], score[order], reason[order]
    start = np.searchsorted(pos, pos, side="left")
    rank = np.arange(len(pos)) - start
    keep = rank < k
    return pos[keep], item[keep], score[keep], reason[keep], rank[keep]


SORT_KEY_FROM = 2_000
"""Rows from which :func:`_top_k` sorts by one int64 key (:func:`_stable_order`) instead
of ``np.lexsort``: the same order, faster on many rows, ~4x slower on a request's 160."""


def _descending(score: np.ndarray) -> np.ndarray | None:
    """uint32 per score whose ascending order is the scores' descending order (-0.0 and
    0.0 equal, as in float comparisons); None when a score is NaN."""
    if np.isnan(score).any():
        return None
    bits = (np.asarray(score, np.float32) + np.float32(0.0)).view(np.uint32)
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    return ~ascending


def _stable_order(columns: tuple[np.ndarray, ...], n_items: int) -> np.ndarray | None:
    """np.lexsort of non-negative int columns (first = most significant, unlike lexsort)
    as one stable argsort of an int64 key (several times faster on millions of rows);
    None when the columns need more than 63 bits together."""
    widths = [max(int(c.max(initial=0)).bit_length(), 1) for c in columns]
    if sum(widths) > 63:
        return None
    key = np.zeros(len(columns[0]), np.int64)
    for column, width in zip(columns, widths, strict=True):
        key = (key << width) | column.astype(np.int64)
    return np.argsort(key, kind="stable")
