"""The two-stage recommender: candidates from ALS, buy-again and popularity, ranked by
LightGBM lambdarank.

Temporal split inside ``fit(..., as_of=T)`` (h = ``horizon_days``, s = ``step_days``):

- validation cutoff V = T - h: labels from [V, T), used only for early stopping;
- training cutoffs V - h, V - h - s, ...: candidates and features as of each cutoff
  (ALS refitted on events before it), labels = bought in [cutoff, cutoff + h);
- the cutoff state (ALS, popularity, histories) as of T, from events before T.

No event at or after T is read, so the weeks after T are a clean test window.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from features.cutoffs import to_utc
from training.recs.als import ALSParams
from training.recs.base import BaseRecommender, Rows
from training.recs.candidates import (
    CandidateParams,
    Candidates,
    CandidateTable,
    Customers,
    contextual,
    generate,
    merge,
    reasons,
    resolve_customers,
    without_resting,
)
from training.recs.coldstart import popularity_rows
from training.recs.cutoff_state import (
    CUSTOMER_FIELDS,
    StateParams,
    build_cutoff_state,
    customer_parts,
    customers_to_fold,
    fold_in_customers,
    with_customers,
)
from training.recs.data import PURCHASE, Catalogue, History
from training.recs.ranker import RankingData, fit_ranker, ranking_data
from training.recs.ranker_features import FEATURES, feature_matrix
from training.recs.tables import PairTable, positions_in


def default_cutoff(history: History) -> pd.Timestamp:
    """The first midnight after the last event: fit on everything."""
    if len(history.ts) == 0:
        raise ValueError(
            "events hold no purchase, add_to_cart or view with a customer_id and a "
            "product_id: nothing to fit a recommender on"
        )
    return history.last_ts.floor("D") + pd.Timedelta(days=1)


def as_history(events, customers=None, products=None, stores=None) -> History:
    """Encode contract frames (or pass an already encoded History through)."""
    if isinstance(events, History):
        return events
    return History.from_frames(events, customers, products, stores)


@dataclass
class CustomerUpdate:
    """Some customers' parts of a recommender's state as of ``t`` (seconds), from their
    events (:meth:`Recommender.customer_update`), and the catalogue that codes them."""

    parts: dict[str, object]
    catalogue: Catalogue
    factor_rows: np.ndarray  # each customer's row of the ALS user factors (-1: none)
    t: int
    folded_at: np.ndarray | None = None  # customers whose factors were folded in from
    folded: np.ndarray | None = None  # their own events (new, or moved since: issue 17)

    def of_customers(self, codes: np.ndarray) -> CustomerUpdate:
        """The parts of customers ``codes`` (sorted, distinct) alone, numbered 0 ..
        len(codes) - 1 in that order, as of the same ``t``: what a live ranking most of
        whose customers have newer ones keeps of the rest (issue 17)."""
        parts = {
            name: value.of_rows(codes) if isinstance(value, PairTable) else value[codes]
            for name, value in self.parts.items()
        }
        cat = self.catalogue
        catalogue = replace(
            cat, customer_ids=cat.customer_ids[codes], home_store=cat.home_store[codes]
        )
        folded_at, folded = self.folded_at, self.folded
        if folded_at is not None:
            at, kept = positions_in(codes, folded_at)
            folded_at, folded = at[kept].astype(folded_at.dtype), folded[kept]
        return replace(
            self,
            parts=parts,
            catalogue=catalogue,
            factor_rows=self.factor_rows[codes],
            folded_at=folded_at,
            folded=folded,
        )


class Recommender(BaseRecommender):
    """Two-stage personalised recommendations with a reason per item.

    ``fit`` learns everything from events before ``as_of`` (see the module docstring for
    the cutoffs); ``recommend`` needs nothing but the fitted object. ``new_item_label``:
    the ranker's training label for a bought product the customer had not bought before
    (a repeat purchase is 1), so that discovery weighs more in lambdarank's gain.
    """

    name = "model"
    # What a model pickled before issue 17 behaves as (its pickle lacks these attributes):
    session_hours = 48
    candidates_session = 0

    def __init__(
        self,
        horizon_days: int = 14,
        n_train_cutoffs: int = 4,
        step_days: int | None = None,
        lookback_days: int = 365,
        popularity_days: int = 28,
        event_weights: Mapping[str, float] | None = None,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.0,
        factors: int = 32,
        regularization: float = 0.05,
        alpha: float = 0.3,
        iterations: int = 15,
        candidates_als: int = 50,
        candidates_buy_again: int = 200,
        candidates_segment: int = 20,
        candidates_trending: int = 30,
        session_hours: int = 48,
        candidates_session: int = 20,
        ranker_params: Mapping[str, object] | None = None,
        max_train_customers: int | None = 5_000,
        max_train_negatives: int | None = 100,
        new_item_label: int = 2,
        num_threads: int = 2,
        random_state: int = 0,
    ) -> None:
        self.horizon_days = horizon_days
        self.n_train_cutoffs = n_train_cutoffs
        self.step_days = step_days
        self.lookback_days = lookback_days
        self.popularity_days = popularity_days
        self.event_weights = event_weights
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.candidates_als = candidates_als
        self.candidates_buy_again = candidates_buy_again
        self.candidates_segment = candidates_segment
        self.candidates_trending = candidates_trending
        self.session_hours = session_hours
        self.candidates_session = candidates_session
        self.ranker_params = ranker_params
        self.max_train_customers = max_train_customers
        self.max_train_negatives = max_train_negatives
        self.new_item_label = new_item_label
        self.num_threads = num_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ parts

    def _state_params(self) -> StateParams:
        return StateParams(
            lookback_days=self.lookback_days,
            popularity_days=self.popularity_days,
            event_weights=dict(self.event_weights) if self.event_weights else None,
            bm25_k1=self.bm25_k1,
            bm25_b=self.bm25_b,
            session_hours=self.session_hours,
        )

    def _als_params(self) -> ALSParams:
        return ALSParams(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            num_threads=self.num_threads,
        )

    def _candidate_params(self) -> CandidateParams:
        return CandidateParams(
            als=self.candidates_als,
            buy_again=self.candidates_buy_again,
            segment=self.candidates_segment,
            trending=self.candidates_trending,
            session=self.candidates_session,
        )

    def personal_candidates(self, codes: np.ndarray | None = None) -> CandidateTable:
        """Personal candidates (ALS, buy again) of customers ``codes`` (default: all), as
        the online snapshot stores them and batch scoring builds them per chunk."""
        self._check_customer_parts()
        return CandidateTable.build(
            self.state_, self.catalogue_.n_customers, self._candidate_params(), codes
        )

    def cutoffs(self, as_of: pd.Timestamp) -> tuple[tuple[pd.Timestamp, ...], pd.Timestamp]:
        """(training cutoffs oldest first, validation cutoff) for a fit as of ``as_of``."""
        h = pd.Timedelta(days=self.horizon_days)
        step = pd.Timedelta(days=self.step_days or self.horizon_days)
        valid = as_of - h
        train = tuple(valid - h - i * step for i in range(self.n_train_cutoffs))[::-1]
        return train, valid

    def _ranking_rows(
        self, history: History, cutoff: pd.Timestamp, rng: np.random.Generator, train: bool
    ) -> tuple[RankingData, dict[str, float]]:
        """Candidates, features and labels as of one cutoff."""
        t0 = time.perf_counter()
        state = build_cutoff_state(
            history, cutoff, self._state_params(), self._als_params(), self.random_state
        )
        label_rows = history.window(cutoff, self.horizon_days)
        label_rows = label_rows[history.event_type[label_rows] == PURCHASE]
        buyers = np.unique(history.customer[label_rows])
        eligible = buyers[state.active[buyers]]
        if self.max_train_customers and len(eligible) > self.max_train_customers:
            eligible = np.sort(rng.choice(eligible, self.max_train_customers, replace=False))
        cat = history.catalogue
        cust = resolve_customers(state, cat, eligible.astype(np.int32))
        cand = generate(state, cust, self._candidate_params())
        X = feature_matrix(state, cat, cust, cand)
        truth = np.unique(
            history.customer[label_rows].astype(np.int64) * cat.n_items + history.item[label_rows]
        )
        key = cust.code[cand.pos].astype(np.int64) * cat.n_items + cand.item
        y = np.isin(key, truth)
        in_pop = np.isin(truth // cat.n_items, eligible)
        stats = {
            "customers": float(len(eligible)),
            "candidates_per_customer": len(cand) / max(len(eligible), 1),
            "candidate_recall": float(y.sum()) / max(int(in_pop.sum()), 1),
            "seconds": time.perf_counter() - t0,
        }
        negatives = self.max_train_negatives if train else None
        label = y.astype(np.int8)
        if train:  # issue 16: a first purchase of a product counts more than a repeat
            never = X[:, FEATURES.index("times_bought")] == 0
            label[y & never] = self.new_item_label
        return ranking_data(X, label, cand.pos, rng, max_negatives=negatives), stats

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        events: pd.DataFrame | History,
        customers: pd.DataFrame | None = None,
        products: pd.DataFrame | None = None,
        stores: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
    ) -> Recommender:
        """Train the ranker on earlier cutoffs and compute the cutoff state as of ``as_of``
        (default: after the last event). Only events before ``as_of`` are read."""
        t_start = time.perf_counter()
        history = as_history(events, customers, products, stores)
        as_of = default_cutoff(history) if as_of is None else to_utc(as_of)
        rng = np.random.default_rng(self.random_state)
        train_cutoffs, valid_cutoff = self.cutoffs(as_of)
        parts, stats = [], {}
        for t in train_cutoffs:
            data, s = self._ranking_rows(history, t, rng, train=True)
            parts.append(data)
            stats[f"train_{t:%Y-%m-%d}"] = s
        valid, stats["valid"] = self._ranking_rows(history, valid_cutoff, rng, train=False)
        train = RankingData.concat(parts)
        if len(train.group) == 0 or len(valid.group) == 0:
            raise ValueError(
                "no customer bought a candidate in a training or validation label window: "
                "need more history before as_of (or a longer horizon)"
            )
        t0 = time.perf_counter()
        self.ranker_ = fit_ranker(
            train, valid, list(FEATURES), dict(self.ranker_params or {}), self.random_state
        )
        ranker_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.state_ = build_cutoff_state(
            history, as_of, self._state_params(), self._als_params(), self.random_state
        )
        self.catalogue_ = history.catalogue
        self.features_ = list(FEATURES)
        self.as_of_ = as_of
        self.train_cutoffs_ = train_cutoffs
        self.valid_cutoff_ = valid_cutoff
        self.best_iteration_ = int(self.ranker_.best_iteration_ or 0)
        self.valid_ndcg_ = float(self.ranker_.best_score_["valid_0"]["ndcg@10"])
        self.fit_stats_ = stats
        self.fit_seconds_ = {
            "ranking_rows": sum(s["seconds"] for s in stats.values()),
            "ranker": ranker_s,
            "cutoff_state": time.perf_counter() - t0,
            "total": time.perf_counter() - t_start,
        }
        return self

    def refresh(
        self,
        events: pd.DataFrame | History,
        customers: pd.DataFrame | None = None,
        products: pd.DataFrame | None = None,
        stores: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
    ) -> Recommender:
        """Move the fitted model to a later cutoff without retraining the ranker: ALS,
        popularity and histories are rebuilt from events before ``as_of`` (default: after
        the last event). The online snapshot does this so that serving uses "now"."""
        if not hasattr(self, "ranker_"):
            raise NotFittedError("Recommender is not fitted: call fit() first")
        history = as_history(events, customers, products, stores)
        as_of = default_cutoff(history) if as_of is None else to_utc(as_of)
        self.state_ = build_cutoff_state(
            history, as_of, self._state_params(), self._als_params(), self.random_state
        )
        self.catalogue_ = history.catalogue
        self.as_of_ = as_of
        return self

    def for_customers(
        self, events: pd.DataFrame, customer_ids: pd.Index, as_of: pd.Timestamp
    ) -> Recommender:
        """This fitted model with the customer parts of its state rebuilt as of ``as_of``
        from the events of ``customer_ids`` alone (contract frame, ids resolved; their
        stored and live events): what the live loop ranks those customers with (issue 17).
        The state counts in seconds, so ``as_of`` is rounded up to a whole second.
        The product parts (ALS item factors, popularity) and the ranker stay as fitted.
        Customers the model never saw, and known ones with product interactions since its
        cutoff, get ALS factors folded in from all their interactions (implicit's
        ``recalculate_user`` against the fitted item factors), so their "similar
        customers" candidates follow what they do before the next snapshot refits; the
        other known customers keep their fitted factors exactly."""
        return self.with_customer_update(self.customer_update(events, customer_ids, as_of))

    def customer_update(
        self, events: pd.DataFrame, customer_ids: pd.Index, as_of: pd.Timestamp
    ) -> CustomerUpdate:
        """The work of :meth:`for_customers`: the customers' parts, as plain arrays (the
        live refresh computes them in its own process and sends them to the worker)."""
        if not hasattr(self, "ranker_"):
            raise NotFittedError("Recommender is not fitted: call fit() first")
        t = -(-to_utc(as_of).value // 1_000_000_000)  # whole seconds, rounded up: the
        as_of = pd.Timestamp(t, unit="s", tz="UTC")  # clock's last event stays before it
        history = History.of_customers(self.catalogue_, events, customer_ids)
        params = self.state_.params
        rows = history.before(as_of, params.lookback_days)
        factor_rows = self.catalogue_.customer_codes(customer_ids)
        fold = customers_to_fold(self.state_, history, rows, factor_rows)
        folded_at, folded = fold_in_customers(self.state_, history, as_of, fold, self._als_params())
        return CustomerUpdate(
            parts=customer_parts(history, rows, t, params),
            catalogue=history.catalogue,
            factor_rows=factor_rows,
            t=t,
            folded_at=folded_at,
            folded=folded,
        )

    def with_customer_update(self, update: CustomerUpdate) -> Recommender:
        """This model ranking the customers of ``update`` (a copy; quick: the product
        parts are shared)."""
        out = copy.copy(self)
        out.state_ = with_customers(
            self.state_, update.parts, update.factor_rows, update.t, update.folded_at, update.folded
        )
        out.catalogue_ = update.catalogue
        out.as_of_ = pd.Timestamp(update.t, unit="s", tz="UTC")
        return out

    def without_customer_parts(self) -> Recommender:
        """A copy whose state lets the fitted customers' parts go (:data:`CUSTOMER_FIELDS`:
        their purchase, category and session tables and activity; their ALS factors
        stay). It ranks once :meth:`with_customer_update` gave it parts computed from the
        customers' own events, which is all the live refresh process ranks (issue 17)."""
        out = copy.copy(self)
        out.state_ = replace(self.state_, **dict.fromkeys(CUSTOMER_FIELDS))
        return out

    def _check_customer_parts(self) -> None:
        if self.state_.bought is None:
            raise RuntimeError(
                "this recommender let its customers' parts go (without_customer_parts): "
                "it ranks only after with_customer_update"
            )

    def feature_importance(self) -> pd.Series:
        """Total gain per ranker feature, largest first."""
        gain = self.ranker_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.features_).sort_values(ascending=False)

    # ------------------------------------------------------------------ predict

    def _score(
        self,
        customers: Customers,
        k: int,
        excluded: np.ndarray,
        personal: Candidates | None = None,
        allowed: np.ndarray | None = None,
        num_threads: int = 1,
        rest_bought: bool = False,
    ) -> Rows:
        """Ranked candidate rows of warm customers, popularity rows of the others.

        ``personal``: the customers' precomputed :func:`personal` candidates (``pos``
        indexes ``customers``; the online snapshot keeps them), else they are computed
        here; the result is the same within float32 rounding. ``allowed``: bool per
        item, False = never returned (request rules such as a category filter).
        ``num_threads``: the ranker features' and LightGBM's predictions' (batch scoring
        uses all cores; a real-time request one). ``rest_bought``: leave out products
        resting after a purchase (:func:`training.recs.candidates.resting`)."""
        self._check_customer_parts()
        state, cat = self.state_, self.catalogue_
        params = self._candidate_params()
        known = customers.code >= 0
        warm = known & state.active[np.maximum(customers.code, 0)]
        warm_pos = np.flatnonzero(warm)
        sub = _subset(customers, warm)
        if personal is None:
            cand = generate(state, sub, params)
        else:
            own = warm[personal.pos]
            in_sub = (np.cumsum(warm) - 1).astype(np.int32)
            mine = Candidates(
                in_sub[personal.pos[own]],
                personal.item[own],
                personal.sources[own],
                personal.als_rank[own],
            )
            cand = merge([mine, contextual(state, sub, params)], cat.n_items)
        if rest_bought:
            cand = without_resting(state, sub.code, cand)
        keep = None
        if len(excluded):
            key = warm_pos[cand.pos].astype(np.int64) * cat.n_items + cand.item
            keep = ~np.isin(key, excluded)
        if allowed is not None:
            keep = allowed[cand.item] if keep is None else keep & allowed[cand.item]
        if keep is not None:
            cand = Candidates(
                cand.pos[keep], cand.item[keep], cand.sources[keep], cand.als_rank[keep]
            )
        X = feature_matrix(state, cat, sub, cand, num_threads=num_threads, names=self.features_)
        score = self.ranker_.booster_.predict(X, num_threads=num_threads).astype(np.float32)
        bought = X[:, self.features_.index("times_bought")] > 0
        reason = reasons(cand.sources, bought)
        cold = np.flatnonzero(~warm)
        depth = k + _max_excluded(excluded, cat.n_items)
        if allowed is not None:  # filters thin the lists: read them to the end
            depth = max(depth, state.params.popular_depth)
        if len(cold):
            c_pos, c_item, c_score, c_reason = popularity_rows(state, customers, cold, depth)
        else:
            c_pos = c_item = np.zeros(0, np.int32)
            c_score, c_reason = np.zeros(0, np.float32), np.zeros(0, np.int8)
        if allowed is not None:
            ok = allowed[c_item]
            c_pos, c_item, c_score, c_reason = c_pos[ok], c_item[ok], c_score[ok], c_reason[ok]
        return (
            np.concatenate([warm_pos[cand.pos], c_pos]),
            np.concatenate([cand.item, c_item]),
            np.concatenate([score, c_score]),
            np.concatenate([reason, c_reason]),
        )


def _subset(customers: Customers, mask: np.ndarray) -> Customers:
    return Customers(
        customers.code[mask], customers.store[mask], customers.region[mask], customers.channel[mask]
    )


def _max_excluded(excluded: np.ndarray, n_items: int) -> int:
    """Most pairs excluded for any one customer (how much deeper lists must go)."""
    if len(excluded) == 0:
        return 0
    return int(np.bincount(excluded // n_items).max())
