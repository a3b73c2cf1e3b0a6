"""Baselines the model must beat, behind the same interface and on the same cutoff-state code.

- ``PopularityRecommender``: the most bought products over the last ``popularity_days``.
- ``BuyAgainRecommender``: the customer's own purchases, most often bought first (ties:
  most recently), then popularity.
- ``ALSRecommender``: implicit ALS top-k alone (already bought products allowed), then
  popularity for customers without history.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.cutoffs import to_utc
from training.recs.als import ALSParams, top_n
from training.recs.base import BaseRecommender, Rows
from training.recs.candidates import REASON_OF_SOURCE, Customers
from training.recs.coldstart import popularity_rows
from training.recs.cutoff_state import StateParams, build_cutoff_state
from training.recs.data import History
from training.recs.model import _max_excluded, as_history, default_cutoff


class _SnapshotBaseline(BaseRecommender):
    """A baseline whose whole state is one cutoff state as of ``as_of``."""

    uses_als = False

    def __init__(
        self,
        lookback_days: int = 365,
        popularity_days: int = 28,
        random_state: int = 0,
    ) -> None:
        self.lookback_days = lookback_days
        self.popularity_days = popularity_days
        self.random_state = random_state

    def _bm25(self) -> dict[str, float]:
        return {}

    def _als(self) -> ALSParams | None:
        return None

    def _event_weights(self) -> Mapping[str, float] | None:
        return None

    def fit(
        self,
        events: pd.DataFrame | History,
        customers: pd.DataFrame | None = None,
        products: pd.DataFrame | None = None,
        stores: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
    ) -> _SnapshotBaseline:
        """CutoffState as of ``as_of`` (default: after the last event) from earlier events."""
        history = as_history(events, customers, products, stores)
        as_of = default_cutoff(history) if as_of is None else to_utc(as_of)
        weights = self._event_weights()
        params = StateParams(
            lookback_days=self.lookback_days,
            popularity_days=self.popularity_days,
            event_weights=dict(weights) if weights else None,
            **self._bm25(),
        )
        self.state_ = build_cutoff_state(history, as_of, params, self._als(), self.random_state)
        self.catalogue_ = history.catalogue
        self.as_of_ = as_of
        return self

    def _popular(
        self, customers: Customers, rows: np.ndarray, k: int, excluded: np.ndarray
    ) -> Rows:
        depth = k + _max_excluded(excluded, self.catalogue_.n_items)
        return popularity_rows(self.state_, customers, rows, depth, segments=False)


class PopularityRecommender(_SnapshotBaseline):
    """Everyone gets the most bought products of the last ``popularity_days``."""

    name = "popularity"

    def _score(self, customers: Customers, k: int, excluded: np.ndarray) -> Rows:
        return self._popular(customers, np.arange(len(customers)), k, excluded)


class BuyAgainRecommender(_SnapshotBaseline):
    """The customer's own purchases by frequency (then recency), then popularity."""

    name = "buy_again_popularity"

    def _score(self, customers: Customers, k: int, excluded: np.ndarray) -> Rows:
        state = self.state_
        owner, at = state.bought.slices(customers.code)
        times = state.bought.columns["times_bought"][at].astype(np.float64)
        since = state.bought.columns["days_since_last_bought"][at].astype(np.float64)
        score = times + 0.5 * (1.0 - since / (self.lookback_days + 1.0))  # recency breaks ties
        p_pos, p_item, p_score, p_reason = self._popular(
            customers, np.arange(len(customers)), k, excluded
        )
        return (
            np.concatenate([owner.astype(np.int32), p_pos]),
            np.concatenate([state.bought.col_of(at), p_item]),
            np.concatenate([score.astype(np.float32), p_score * 0.5]),  # below every repeat
            np.concatenate([np.full(len(at), REASON_OF_SOURCE["buy_again"], np.int8), p_reason]),
        )


class ALSRecommender(_SnapshotBaseline):
    """Implicit ALS alone: top-k by factor score, bought products included."""

    name = "implicit_als"

    def __init__(
        self,
        lookback_days: int = 365,
        popularity_days: int = 28,
        event_weights: Mapping[str, float] | None = None,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        num_threads: int = 2,
        random_state: int = 0,
    ) -> None:
        super().__init__(lookback_days, popularity_days, random_state)
        self.event_weights = event_weights
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.num_threads = num_threads

    def _als(self) -> ALSParams:
        return ALSParams(
            self.factors, self.regularization, self.alpha, self.iterations, self.num_threads
        )

    def _event_weights(self) -> Mapping[str, float] | None:
        return self.event_weights

    def _bm25(self) -> dict[str, float]:
        return {"bm25_k1": self.bm25_k1, "bm25_b": self.bm25_b}

    def _score(self, customers: Customers, k: int, excluded: np.ndarray) -> Rows:
        state, n_items = self.state_, self.catalogue_.n_items
        known = customers.code >= 0
        warm = np.flatnonzero(known & state.active[np.maximum(customers.code, 0)])
        cold = np.setdiff1d(np.arange(len(customers)), warm)
        skip = None
        if len(excluded) and len(warm):
            owner = excluded // n_items
            at = np.searchsorted(warm, owner)
            ok = (at < len(warm)) & (warm[np.minimum(at, len(warm) - 1)] == owner)
            skip = sp.csr_matrix(
                (np.ones(int(ok.sum()), np.float32), (at[ok], excluded[ok] % n_items)),
                shape=(len(warm), n_items),
            )
        items, scores = top_n(
            state.user_factors, state.item_factors, customers.code[warm], k, exclude=skip
        )
        pos = np.repeat(warm, items.shape[1]).astype(np.int32)
        item, score = items.ravel(), scores.ravel()
        ok = item >= 0
        c_pos, c_item, c_score, c_reason = self._popular(customers, cold, k, excluded)
        return (
            np.concatenate([pos[ok], c_pos]),
            np.concatenate([item[ok], c_item]),
            np.concatenate([score[ok], c_score]),
            np.concatenate([np.full(int(ok.sum()), REASON_OF_SOURCE["als"], np.int8), c_reason]),
        )
