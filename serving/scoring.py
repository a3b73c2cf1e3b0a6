"""Scoring from an online snapshot: the one code path of the service and batch scoring.

A :class:`Scorer` holds the snapshot as arrays indexed by position: each model's feature
matrix, the consent mask per channel, every customer's precomputed personal candidates
(ALS and buy again) and each store's recent assortment. A request (one customer or many)
is positions -> model calls -> rules, with no pandas on the way, so one customer costs
well under a millisecond and a million cost the same code in chunks.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract.consent import consent_mask, consented
from features.contract.schema import CHANNELS, CONSENT_COLUMNS
from serving.online import OnlineSnapshot
from serving.ranked_lists import (
    PERSONAL_PARTS,
    AheadLists,
    PopularLists,
    RankedLists,
    allowed_top,
    stored_lists_usable,
)
from serving.rules import (
    CatalogueIndex,
    ItemRules,
    MissingModel,
    index_positions,
    item_rules,
    risk_band,
)
from training.customer_models.classifiers import model_matrix
from training.recs.candidates import REASONS, CandidateTable, resolve_customers
from training.recs.cutoff_state import with_customer_arrays

CHANNEL_CODE = {c: i for i, c in enumerate(CHANNELS)}
AHEAD_CHUNK = 256
"""Customers :meth:`Scorer.rank_ahead` ranks in one batch (~25 ms at 5,000 customers)
before it asks whether to go on."""
COMPACT_BELOW = 4
"""A live ranking still used by fewer than 1 / COMPACT_BELOW of its customers is cut down
to those (memory stays within a few times what the live customers need)."""


@dataclass
class RowUpdate:
    """Feature rows of some customers turned into what :class:`Scorer` keeps per row
    (computed off the request path by :meth:`Scorer.prepare_rows`, applied in one quick
    step by :meth:`Scorer.apply_rows`)."""

    ids: list[str]
    X_churn: np.ndarray | None
    X_channel: np.ndarray | None
    consent: np.ndarray
    churn: np.ndarray  # calibrated churn probability per row (NaN without a churn model)
    channel: np.ndarray  # consented next-channel probabilities per row
    ranking: LiveRanking | None = None  # their recommendations (None: no recommender)
    removed: list[str] = field(default_factory=list)  # merged into another: forget them


@dataclass
class LiveRanking:
    """What ranks some customers' recommendations after live events: the recommender with
    their customer parts rebuilt from their events as of the live clock
    (``Recommender.for_customers``) and their personal candidates. A customer's list is
    ranked on their first request (half a millisecond for one customer), unless the
    refresh had time to rank it ahead (``ahead``: :meth:`Scorer.rank_ahead`, a tenth of
    that a customer in one batch). Codes index these customers."""

    recommender: Any  # None in transit from the refresh process (rebuilt from ``customers``)
    personal: CandidateTable
    codes: dict[str, int]  # customer id -> code in ``recommender``
    alive: int = 0  # of those customers, how many it still ranks (later ones took the rest)
    customers: Any = None  # their parts (``training.recs.model.CustomerUpdate``)
    lists: dict = field(default_factory=dict)  # (code, channel, store) -> a ranked list
    ahead: AheadLists | None = None  # lists ranked by the refresh, for no channel or store

    def portable(self) -> LiveRanking:
        """This ranking without its recommender, which shares the snapshot's product parts
        (to send between processes: the receiving Scorer rebuilds it from ``customers``);
        the lists ranked ahead go with it."""
        return replace(self, recommender=None, lists={})


class SnapshotCodes:
    """Customer id -> recommender code when the codes are the snapshot's feature rows: read
    from the positions dict, where customers added live (rows past the snapshot's) have no
    code. The ``get`` / ``pop`` of the dict it stands for."""

    __slots__ = ("n", "position")

    def __init__(self, position: dict[str, int], n: int) -> None:
        self.position, self.n = position, n

    def get(self, customer: str, default: int = -1) -> int:
        code = self.position.get(customer, default)
        return code if code < self.n else default

    def pop(self, customer: str, default: int | None = None) -> int | None:
        return self.position.pop(customer, default)


@dataclass
class Recommendations:
    """Ranked rows of one request: ``pos`` indexes the request's customers."""

    pos: np.ndarray
    item: np.ndarray  # recommender catalogue codes
    score: np.ndarray
    reason: np.ndarray  # codes into REASONS
    rank: np.ndarray  # 0 = best
    cold_start: np.ndarray  # bool per request customer


class Scorer:
    """Churn, next best channel and recommendations for customer ids, from a snapshot.

    A snapshot may hold a subset of the three models (``omni score --models churn``, or
    data with one channel and no next-best-channel model): a missing model's outputs are
    left out of :meth:`score_frames` (and are NaN / empty from the single calls)."""

    def __init__(
        self,
        snapshot: OnlineSnapshot,
        num_threads: int = 1,
        ranked_lists: int = 0,
        precompute_candidates: bool = True,
        snapshot_rows: bool = True,
    ) -> None:
        """``ranked_lists``: precompute every warm customer's list this deep for each
        channel context (see :class:`RankedLists`; the service uses 50, batch scoring 0),
        and every customer's churn and channel predictions (a snapshot's features are
        fixed, so a request reads what the models computed once, in one batch).
        ``precompute_candidates``: keep every customer's personal candidates (what a
        real-time request needs); batch scoring computes them for each request (a chunk
        of thousands of customers) instead. Either way the results are the same, within
        float32 rounding. ``snapshot_rows=False``: a scorer of fresh rows only
        (:meth:`prepare_rows`; the live refresh process), which lets the snapshot's
        feature table and the models' matrices of it go (~1.3 KB a customer), and the
        recommender's customer parts, which it rebuilds for the customers it ranks
        (:meth:`Recommender.without_customer_parts`, ~0.8 KB a customer)."""
        self.snapshot = snapshot
        self.num_threads = num_threads
        self.as_of = snapshot.as_of
        self.versions = snapshot.versions
        table = snapshot.features
        self.ids = pd.Index(table.index.astype("str"), name="customer_id")
        self.churn_model = snapshot.models.get("churn")
        self.channel_model = snapshot.models.get("next_best_channel")
        self.recommender = snapshot.models.get("recommender")
        churn_features = getattr(self.churn_model, "features_", None)
        channel_features = getattr(self.channel_model, "features_", None)
        if ranked_lists and not snapshot_rows:
            raise ValueError("ranked_lists precompute the snapshot's rows: keep snapshot_rows")
        if precompute_candidates and not snapshot_rows:
            raise ValueError("precomputed candidates need the snapshot's rows: keep snapshot_rows")
        same = channel_features is not None and list(channel_features) == list(churn_features or [])
        self._one_matrix = same  # the models share their columns: one matrix (read-only use)
        self.X_churn = self.X_channel = None
        if snapshot_rows and churn_features is not None:
            self.X_churn = _rows(table, churn_features)
        if snapshot_rows and channel_features is not None:
            self.X_channel = self.X_churn if same else _rows(table, channel_features)
        self.channels = (
            [] if self.channel_model is None else list(map(str, self.channel_model.classes_))
        )
        self.consent = _consent(table, self.channels)
        self.n_rows = len(self.ids)  # the snapshot's customers, then those live events add
        self.added: dict[str, int] = {}  # customer id -> row, for customers added live
        self.live_rankings: dict[str, LiveRanking] = {}  # customers that live events touched
        self.forgotten: set[str] = set()  # merged into others by live events (unknown now)
        self._churn = self._channel = None
        self.lists = None
        if self.recommender is not None:
            self._load_recommender(snapshot.arrays or {}, ranked_lists, precompute_candidates)
        features = table
        if not snapshot_rows:  # its columns stay (an empty refresh's table has them)
            # a copy: ``iloc[:0]`` is a view that kept the whole table's blocks alive (~0.6
            # KB a customer of the refresh process's memory, stop 45)
            features = table.iloc[:0].copy()
            if self.recommender is not None:  # it ranks the customers of fresh rows only
                self.recommender = self.recommender.without_customer_parts()
        models = dict(snapshot.models)
        if self.recommender is not None:  # the one with the mapped state, or without parts
            models["recommender"] = self.recommender
        # the arrays it uses are its own now; the rest (the lists, in a scorer without
        # them: the live refresh process) would be a few KB a customer held for nothing
        self.snapshot = replace(snapshot, arrays=None, features=features, models=models)
        if ranked_lists:  # real time: every snapshot customer's predictions, batch-computed once
            everyone = np.arange(len(self.ids))
            self._churn, self._channel = self.churn(everyone), self.next_channel(everyone)
            # requests and live rows read those predictions, never the matrices: a float32
            # row per customer (~640 B at 20,000 customers, issue 17) let go
            self.X_churn = self.X_channel = None

    def _load_recommender(
        self, stored: dict, ranked_lists: int, precompute_candidates: bool
    ) -> None:
        """The recommender's arrays: catalogue, personal candidates, store assortments and,
        for real time, the ranked lists (see :meth:`__init__`)."""
        rec = self.recommender
        mapped = with_customer_arrays(rec.state_, stored)
        if mapped is not rec.state_:  # the snapshot's pages instead of the unpickled copy
            rec = self.recommender = copy.copy(rec)
            rec.state_ = mapped
        self.catalogue = rec.catalogue_
        self.item_ids = np.asarray(rec.catalogue_.item_ids, dtype=object)
        self._item_ids = pa.array(self.item_ids.tolist(), pa.string())  # for Arrow takes
        if "personal_indptr" in stored and (precompute_candidates or ranked_lists):
            self.personal = CandidateTable(*(stored[f"personal_{n}"] for n in PERSONAL_PARTS))
        elif precompute_candidates or ranked_lists:
            self.personal = rec.personal_candidates()
        else:
            self.personal = None
        self.index = CatalogueIndex(rec.catalogue_, rec.state_.segment_counts["store"])
        if precompute_candidates or ranked_lists:  # real time: ready before the first request
            _ = self._position, self._rec_code
        if not ranked_lists:
            return
        self.popular = PopularLists(rec, self.personal)
        if stored_lists_usable(stored, ranked_lists):
            self.lists = RankedLists.from_arrays(stored)
        else:
            self.lists = RankedLists.build(rec, self.personal, ranked_lists)

    # ------------------------------------------------------------------ lookups

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        """Feature-table row of each customer id (a one-customer request's lookup; built on
        first use: batch scoring never needs it), customers added live included."""
        return {**index_positions(self.ids), **self.added}

    @functools.cached_property
    def _rec_code(self) -> dict[str, int] | SnapshotCodes:
        """Recommender catalogue code of each customer id (as :attr:`_position`). A
        snapshot's catalogue lists the feature table's customers in its order, so its codes
        are their positions and :attr:`_position` serves both (a second dict and a second
        string per customer: 175 B a customer at 20,000, issue 17)."""
        customers = self.catalogue.customer_ids
        if np.array_equal(np.asarray(customers, object), np.asarray(self.ids, object)):
            return SnapshotCodes(self._position, len(customers))
        return index_positions(customers)

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each id in the feature table (-1: unknown customer)."""
        if len(ids) == 1:
            return np.array([self._position.get(ids[0], -1)], np.int64)
        pos = self.ids.get_indexer(pd.Index(list(ids), dtype="str")).astype(np.int64)
        if self.added:  # customers that live events made known after the snapshot
            missing = np.flatnonzero(pos < 0)
            pos[missing] = [self.added.get(ids[i], -1) for i in missing]
        return self._without_forgotten(ids, pos)

    def _without_forgotten(self, ids: Sequence[str], codes: np.ndarray) -> np.ndarray:
        """``codes`` (positions or recommender codes of ``ids``) with -1 for customers
        merged into others (:meth:`forget`)."""
        if self.forgotten:
            codes[pd.Index(list(ids), dtype="str").isin(list(self.forgotten))] = -1
        return codes

    def _rec_codes(self, ids: Sequence[str]) -> np.ndarray:
        """Recommender catalogue codes of ``ids`` (-1: unknown or forgotten)."""
        return self._without_forgotten(ids, self.catalogue.customer_codes(list(ids)))

    # ------------------------------------------------------------------ live rows

    def prepare_rows(
        self,
        table: pd.DataFrame,
        events: pd.DataFrame | None = None,
        as_of: pd.Timestamp | None = None,
    ) -> RowUpdate:
        """Predictions and matrices for fresh feature rows (index customer_id), as the
        snapshot's rows get them, and with ``events`` (those customers' stored and live
        events) their recommendations as of ``as_of``. Reads only the models: safe off
        the request thread."""
        ids = table.index.astype("str").tolist()
        X_churn = X_channel = None
        churn = np.full(len(ids), np.nan)
        channel = np.full((len(ids), len(self.channels)), np.nan)
        if not ids:  # LightGBM's output for no rows has no class axis
            consent = np.zeros((0, len(self.channels)), bool)
            return RowUpdate(ids, X_churn, X_channel, consent, churn, channel)
        consent = _consent(table, self.channels)
        if self.churn_model is not None:
            X_churn = _rows(table, self.churn_model.features_)
            churn = self.churn_model.predict_matrix(X_churn, num_threads=self.num_threads)
        if self.channel_model is not None:
            same = self._one_matrix
            X_channel = X_churn if same else _rows(table, self.channel_model.features_)
            raw = self.channel_model.predict_matrix(X_channel, num_threads=self.num_threads)
            channel = consented(raw, consent)
        ranking = None
        if events is not None and self.recommender is not None:
            ranking = self.prepare_ranking(events, pd.Index(ids, dtype="str"), as_of)
        return RowUpdate(ids, X_churn, X_channel, consent, churn, channel, ranking)

    def prepare_ranking(
        self, events: pd.DataFrame, ids: pd.Index, as_of: pd.Timestamp
    ) -> LiveRanking:
        """The :class:`LiveRanking` of customers ``ids`` from their events as of ``as_of``."""
        update = self.recommender.customer_update(events, ids, as_of)
        rec = self.recommender.with_customer_update(update)
        personal = rec.personal_candidates()
        codes = dict(zip(ids.tolist(), range(len(ids)), strict=True))  # not per Arrow element
        return LiveRanking(rec, personal, codes, alive=len(ids), customers=update)

    def rank_ahead(
        self,
        ranking: LiveRanking,
        depth: int,
        go_on: Callable[[], bool] = lambda: True,
        chunk: int = AHEAD_CHUNK,
    ) -> int:
        """Rank the lists of ``ranking``'s active customers as a request without channel
        or store would on their first read (:meth:`_live_listed`), ``chunk`` customers at
        a time while ``go_on()`` says so, and keep them in ``ranking.ahead``. Returns how
        many it ranked. The refresh process does it while it has nothing else to do: those
        customers' first reads then cost a lookup, not half a millisecond (issue 17)."""
        rec = ranking.recommender
        codes = np.sort(np.fromiter(ranking.codes.values(), np.int64, len(ranking.codes)))
        codes = codes[rec.state_.active[codes]].astype(np.int32)
        parts = []
        for lo in range(0, len(codes), chunk):
            if not go_on():
                break
            part = codes[lo : lo + chunk]
            rows = self._ranked((rec, ranking.personal), part, depth, NO_RULES, -1, -1)
            parts.append((part[rows.pos], rows.item, rows.score, rows.reason))
        if not parts:
            return 0
        code, *lists = (np.concatenate(p) for p in zip(*parts, strict=True))
        ranking.ahead = AheadLists.of_rows(len(ranking.codes), code, tuple(lists))
        return int(ranking.ahead.ranked.sum())

    def apply_rows(self, update: RowUpdate) -> None:
        """Replace the rows of known customers and add new ones after the snapshot's (their
        recommendations stay cold start until a snapshot's recommender knows them). Only
        for a real-time scorer (``ranked_lists``: predictions precomputed per row)."""
        if self._churn is None:
            raise RuntimeError("live rows need a real-time Scorer (ranked_lists > 0)")
        if update.removed:
            self.forget(update.removed)
        pos = self.positions(update.ids)
        new = np.flatnonzero(pos < 0)
        if len(new):
            pos[new] = self._add_positions([update.ids[i] for i in new])
        self.consent[pos] = update.consent
        self._churn[pos] = update.churn
        self._channel[pos] = update.channel
        if update.ranking is not None:
            ranking = update.ranking
            if ranking.recommender is None:  # computed in the refresh process
                rec = self.recommender.with_customer_update(ranking.customers)
                ranking = replace(ranking, recommender=rec)
            self._take_ranking(ranking)

    def forget(self, ids: Sequence[str]) -> None:
        """Customers identity resolution merged into others (their events are the other
        customers' now, as the store has them after the same load): unknown from now on,
        cold start, as batch scoring of that store would have them."""
        for customer in ids:
            self._position.pop(customer, None)
            self._rec_code.pop(customer, None)
            self.added.pop(customer, None)
            ranking = self.live_rankings.pop(customer, None)
            if ranking is not None:
                ranking.alive -= 1
        self.forgotten.update(ids)

    def _take_ranking(self, ranking: LiveRanking) -> None:
        """Rank ``ranking``'s customers by it. A ranking that ranks fewer than a quarter of
        its customers any more is cut down to those (:meth:`_compacted`), so old rankings
        do not pile up in memory."""
        for customer in ranking.codes:
            old = self.live_rankings.get(customer)
            self.live_rankings[customer] = ranking
            if old is None or old is ranking:
                continue
            old.alive -= 1
            if old.alive < len(old.codes) / COMPACT_BELOW <= old.alive + 1:  # just crossed
                left = [c for c in old.codes if self.live_rankings.get(c) is old]
                if left and old.customers is not None:
                    compact = self._compacted(old, left)
                    self.live_rankings.update(dict.fromkeys(left, compact))

    def _compacted(self, ranking: LiveRanking, customers: list[str]) -> LiveRanking:
        """``ranking`` with the parts and candidates of ``customers`` alone: the same lists
        for them, as of the same moment. Slicing arrays, a few milliseconds: ranking them
        again from their events cost the refresh process a sixth of its rounds under a
        steady ingest (issue 17)."""
        kept = sorted((ranking.codes[c], c) for c in customers)
        codes = np.array([code for code, _ in kept], np.int64)
        update = ranking.customers.of_customers(codes)
        personal = ranking.personal.of_customers(codes)
        new_codes = {c: i for i, (_, c) in enumerate(kept)}
        rec = self.recommender.with_customer_update(update)
        ahead = None if ranking.ahead is None else ranking.ahead.of_customers(codes)
        return LiveRanking(rec, personal, new_codes, alive=len(kept), customers=update, ahead=ahead)

    def _add_positions(self, ids: list[str]) -> np.ndarray:
        """Positions for customers new to the scorer, growing the per-row arrays (doubling
        their capacity, so adding customers one batch at a time stays linear)."""
        start = self.n_rows
        self.n_rows += len(ids)
        for name in ("consent", "_churn", "_channel"):
            value = getattr(self, name)
            if value is not None and len(value) < self.n_rows:
                setattr(self, name, _grown(value, self.n_rows))
        new = np.arange(start, self.n_rows)
        rows = dict(zip(ids, new.tolist(), strict=True))
        self.added.update(rows)
        self._position.update(rows)
        return new

    # ------------------------------------------------------------------ models

    def churn(self, pos: np.ndarray) -> np.ndarray:
        """Calibrated churn probability per position (NaN for unknown customers)."""
        if self._churn is not None:
            return np.where(pos >= 0, self._churn[np.maximum(pos, 0)], np.nan)
        out = np.full(len(pos), np.nan)
        known = pos >= 0
        if known.any() and self.churn_model is not None:
            X = self._snapshot_rows(self.X_churn)[pos[known]]
            out[known] = self.churn_model.predict_matrix(X, num_threads=self.num_threads)
        return out

    def next_channel(self, pos: np.ndarray) -> np.ndarray:
        """(positions x ``channels``) probabilities after consent: unconsented channels
        are 0 and the rest sum to 1 (NaN rows for unknown customers)."""
        if self._channel is not None:
            rows = self._channel[np.maximum(pos, 0)]
            rows[pos < 0] = np.nan
            return rows
        out = np.full((len(pos), len(self.channels)), np.nan)
        known = pos >= 0
        if known.any() and self.channel_model is not None:
            p = pos[known]
            X = self._snapshot_rows(self.X_channel)[p]
            raw = self.channel_model.predict_matrix(X, num_threads=self.num_threads)
            out[known] = consented(raw, self.consent[p])
        return out

    def predictions_of(self, customer_id: str) -> tuple[float, np.ndarray]:
        """One customer's churn probability and channel probabilities (NaN: unknown), as
        :meth:`churn` and :meth:`next_channel` give them: a request's reads, by scalar
        lookups in a real-time scorer."""
        if self._churn is None:
            pos = self.positions([customer_id])
            return float(self.churn(pos)[0]), self.next_channel(pos)[0]
        at = self._position.get(customer_id, -1)
        if at < 0:
            return float("nan"), np.full(len(self.channels), np.nan)
        return float(self._churn[at]), self._channel[at]

    @staticmethod
    def _snapshot_rows(matrix: np.ndarray | None) -> np.ndarray:
        """A model's matrix of the snapshot's rows; a scorer built without them says so."""
        if matrix is None:
            raise RuntimeError("this Scorer keeps no snapshot rows (snapshot_rows=False)")
        return matrix

    def recommend(
        self,
        ids: Sequence[str],
        k: int = 10,
        channel: str | None = None,
        store_id: str | None = None,
        exclude: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
    ) -> Recommendations:
        """Top-k products per customer under the request's rules (see
        :mod:`serving.rules`); unknown customers get cold-start popularity.
        :class:`MissingModel` when the snapshot has no recommender."""
        if self.recommender is None:
            raise MissingModel("recommender")
        rules, store = item_rules(self.index, channel, store_id, exclude, categories)
        return self.recommend_codes(ids, k, rules, store, CHANNEL_CODE.get(channel or "", -1))

    def recommend_codes(
        self, ids: Sequence[str], k: int, rules: ItemRules, store: int, channel: int
    ) -> Recommendations:
        """:meth:`recommend` after validation (store / channel as codes, -1: none).
        Customers that live events touched are ranked by their :class:`LiveRanking`."""
        rankings = self._rankings_of(ids)
        if rankings is None:
            if len(ids) == 1:  # the real-time case: a dict lookup instead of an index search
                code = self._rec_code.get(ids[0], -1)
                listed = self._listed(code, k, rules, store, channel)
                if listed is not None:
                    return listed
                codes = np.array([code], np.int32)
            else:
                codes = self._rec_codes(ids)
            ranker = (self.recommender, self.personal)
            return self._ranked(ranker, codes, k, rules, store, channel)
        if len(ids) == 1:  # one customer live events touched
            listed = self._live_listed(rankings[0][0], ids[0], k, rules, store, channel)
            if listed is not None:
                return listed
        parts = []
        for ranking, at in rankings:
            if ranking is None:
                codes = self._rec_codes([ids[i] for i in at])
                ranker = (self.recommender, self.personal)
            else:
                codes = np.array([ranking.codes[ids[i]] for i in at], np.int32)
                ranker = (ranking.recommender, ranking.personal)
            parts.append((at, self._ranked(ranker, codes, k, rules, store, channel)))
        return _merged(parts, len(ids))

    def _rankings_of(
        self, ids: Sequence[str]
    ) -> list[tuple[LiveRanking | None, np.ndarray]] | None:
        """None when no customer of ``ids`` has a live ranking, else the request's
        positions grouped by what ranks them (None: the snapshot)."""
        if not self.live_rankings:
            return None
        found = [self.live_rankings.get(i) for i in ids]
        if all(r is None for r in found):
            return None
        groups: dict[int, tuple[LiveRanking | None, list[int]]] = {}
        for i, r in enumerate(found):
            groups.setdefault(id(r), (r, []))[1].append(i)
        return [(r, np.array(at, np.int64)) for r, at in groups.values()]

    def _listed(
        self, code: int, k: int, rules: ItemRules, store: int, channel: int
    ) -> Recommendations | None:
        """One customer's rows read from the precomputed lists (a warm customer's own; an
        unknown or inactive customer's context popularity, the full path's rows for them;
        none when the rules allow nothing), or None when the request needs the full path.
        In Python scalars: a request's few numpy calls cost more than its work."""
        if self.lists is None:
            return None
        if rules.allow_nothing(self.index):  # the full path's answer: no rows
            warm = code >= 0 and bool(self.recommender.state_.active[code])
            return replace(_NO_RECOMMENDATIONS, cold_start=np.array([not warm]))
        allows = self._allows(rules)
        if code < 0:
            hit = self.popular.lookup(store, channel, allows, k)
        elif self.recommender.state_.active[code]:
            hit = self.lists.lookup(code, channel, store, allows, k)
        else:  # known, no product event in the lookback
            return self._inactive_listed(self.recommender, code, k, allows, store, channel)
        return _one_customer(hit, cold=code < 0)

    def _inactive_listed(
        self, recommender, code: int, k: int, allows, store: int, channel: int
    ) -> Recommendations | None:
        """A known customer without product events in the lookback: the popularity list of
        their store and channel (the request's, else their usual ones, as
        ``resolve_customers`` gives them to the full path), as a new customer's there."""
        one = resolve_customers(
            recommender.state_,
            recommender.catalogue_,
            np.array([code], np.int32),
            np.array([store], np.int32),
            np.array([channel], np.int32),
        )
        hit = self.popular.lookup(int(one.store[0]), int(one.channel[0]), allows, k)
        return _one_customer(hit, cold=True)

    def _live_listed(
        self,
        ranking: LiveRanking,
        customer: str,
        k: int,
        rules: ItemRules,
        store: int,
        channel: int,
    ) -> Recommendations | None:
        """A live customer's rows read from their list in this context, as
        :meth:`_listed` reads the snapshot's: ranked in full (as deep as the snapshot's
        lists, unfiltered) on the first request and kept in ``ranking`` until a refresh
        of theirs replaces it (an inactive one reads their context's popularity list).
        None when the request needs the full path. A customer's requests between two of
        their events (several placements of a page, the next page) then cost a lookup
        instead of ~0.8 ms each."""
        code = ranking.codes[customer]
        if self.lists is None:
            return None
        active = bool(ranking.recommender.state_.active[code])
        if rules.allow_nothing(self.index):
            return replace(_NO_RECOMMENDATIONS, cold_start=np.array([not active]))
        if not active:
            allows = self._allows(rules)
            return self._inactive_listed(ranking.recommender, code, k, allows, store, channel)
        depth = self.lists.depth
        key = (code, channel, store)
        ranked = ranking.lists.get(key)
        if ranked is None and ranking.ahead is not None and channel < 0 and store < 0:
            ranked = ranking.ahead.get(code)
        if ranked is None:
            ranker = (ranking.recommender, ranking.personal)
            one = np.array([code], np.int32)
            rows = self._ranked(ranker, one, depth, NO_RULES, store, channel)
            item = rows.item.astype(np.int32, copy=False)
            ranked = (item, rows.score, rows.reason.astype(np.int8, copy=False))
            ranking.lists[key] = ranked  # ~0.5 KB: kept for the customer's next requests
        hit = allowed_top(*ranked, self._allows(rules), k, complete=len(ranked[0]) < depth)
        return _one_customer(hit, cold=False)

    def _allows(self, rules: ItemRules):
        """The request's filter over item codes for a list lookup (None: no filter)."""
        return functools.partial(rules.allows, self.index) if rules.filters else None

    def _ranked(
        self, ranker: tuple, codes: np.ndarray, k: int, rules: ItemRules, store: int, channel: int
    ) -> Recommendations:
        """Ranked rows of customers ``codes`` by ``ranker`` = (recommender, personal
        candidates), in full."""
        recommender, personal = ranker
        n = len(codes)
        active = recommender.state_.active
        cold = ~((codes >= 0) & active[np.maximum(codes, 0)])
        if personal is None:  # batch scoring: the chunk's candidates in one go
            personal = recommender.personal_candidates(codes)
        pos, item, score, reason, rank = recommender.recommend_codes(
            codes,
            np.full(n, store, np.int32),
            np.full(n, channel, np.int32),
            k,
            np.zeros(0, np.int64),
            personal=personal,
            allowed=rules.mask(self.index),
            num_threads=self.num_threads,
            rest_bought=True,
        )
        return Recommendations(pos, item, score, reason, rank, cold)

    # ------------------------------------------------------------------ tables

    def score_frames(
        self,
        ids: Sequence[str],
        k: int = 10,
        channel: str | None = None,
        store_id: str | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The snapshot's predictions as tables: (one row per customer, one row per
        recommended product). What ``/score`` and batch scoring return; a model the
        snapshot lacks adds no columns (no recommender: no recommendation rows)."""
        ids = list(ids)
        pos = self.positions(ids)
        columns = {"customer_id": pd.Series(ids, dtype="str"), "known": pos >= 0}
        if self.churn_model is not None:
            churn = self.churn(pos)
            columns["churn_probability"] = churn
            columns["churn_band"] = pd.Series(risk_band(churn), dtype="str")
        if self.channel_model is not None:
            proba = self.next_channel(pos)
            columns |= {f"p_{c}": proba[:, j] for j, c in enumerate(self.channels)}
            columns["best_channel"] = pd.Series(self.best_channels(proba), dtype="str")
        if self.recommender is None:
            return pd.DataFrame(columns), self.recommendation_frame([], _NO_RECOMMENDATIONS)
        recs = self.recommend(ids, k, channel, store_id)
        columns["cold_start"] = recs.cold_start
        return pd.DataFrame(columns), self.recommendation_frame(ids, recs)

    def best_channels(self, proba: np.ndarray) -> np.ndarray:
        """The most likely consented channel per row (None: unknown customer or nothing
        consented)."""
        names = np.array([*self.channels, None], dtype=object)
        filled = np.where(np.isnan(proba), -1.0, proba)
        best = filled.argmax(axis=1) if len(filled) else np.zeros(0, np.int64)
        none = filled.max(axis=1, initial=-1.0) <= 0
        return names[np.where(none, len(self.channels), best)]

    def recommendation_frame(self, ids: Sequence[str], recs: Recommendations) -> pd.DataFrame:
        """customer_id, rank (1 = best), product_id, score, reason."""
        items = self._item_ids if self.recommender is not None else pa.array([], pa.string())
        return pd.DataFrame(
            {
                "customer_id": _take_str(pa.array(list(ids), pa.string()), recs.pos),
                "rank": (recs.rank + 1).astype(np.int16),
                "product_id": _take_str(items, recs.item),
                "score": recs.score.astype(np.float32),
                "reason": _take_str(_REASONS, recs.reason),
            }
        )


_REASONS = pa.array(list(REASONS), pa.string())
NO_RULES = ItemRules()
"""Rules that leave nothing out: what a list is ranked under before a request filters it."""
_EMPTY = np.zeros(0, np.int64)
_NO_RECOMMENDATIONS = Recommendations(
    _EMPTY, _EMPTY, np.zeros(0, np.float32), _EMPTY, _EMPTY, np.zeros(0, bool)
)


def _one_customer(hit: tuple | None, cold: bool) -> Recommendations | None:
    """One customer's rows from a list lookup's (items, scores, reasons); None: no hit."""
    if hit is None:
        return None
    item, score, reason = hit
    rows = np.arange(len(item))
    return Recommendations(rows * 0, item, score, reason, rows, np.array([cold]))


def _merged(parts: list[tuple[np.ndarray, Recommendations]], n: int) -> Recommendations:
    """One request's rows from groups of its customers (``at``: their request positions),
    sorted by position then rank."""
    cold = np.zeros(n, bool)
    for at, r in parts:
        cold[at] = r.cold_start
    pos = np.concatenate([at[r.pos] for at, r in parts])
    columns = [np.concatenate([getattr(r, name) for _, r in parts]) for name in _ROW_FIELDS]
    order = np.lexsort((columns[-1], pos))
    return Recommendations(pos[order], *(c[order] for c in columns), cold)


_ROW_FIELDS = ("item", "score", "reason", "rank")


def _take_str(values: pa.Array, index: np.ndarray) -> pd.Series:
    """``values[index]`` as a pandas ``str`` series, taken in Arrow: no Python string per
    row (ten times faster than converting an object array, millions of rows in batch)."""
    return pd.Series(values.take(pa.array(index)), dtype="str")


def _grown(values: np.ndarray, rows: int) -> np.ndarray:
    """``values`` in a buffer of at least ``rows`` rows (twice as many as it had), the new
    rows NaN or False."""
    out = np.empty((max(rows, 2 * len(values)), *values.shape[1:]), values.dtype)
    out[: len(values)] = values
    out[len(values) :] = False if values.dtype == bool else np.nan
    return out


ROW_BLOCK = 65_536
"""Rows of the feature table converted at a time by :func:`_rows`."""


def _rows(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The model's matrix (:func:`training.customer_models.classifiers.model_matrix`),
    C-contiguous so that a request's row is one contiguous slice. Converted in row blocks
    straight into the result: pandas gives column-major blocks, and one whole-table copy
    plus its transpose would fault in twice the memory (seconds at a million customers)."""
    out = np.empty((len(table), len(features)), np.float32)
    for lo in range(0, len(table), ROW_BLOCK):
        out[lo : lo + ROW_BLOCK] = model_matrix(table.iloc[lo : lo + ROW_BLOCK], features)
    return out


def _consent(table: pd.DataFrame, channels: Sequence[str]) -> np.ndarray:
    """bool (customers x channels): may we reach them there? The feature table carries
    the customers table's consent columns, so the shared rule applies to it directly."""
    columns = [c for c in CONSENT_COLUMNS.values() if c in table.columns]
    frame = table[columns].reset_index(names="customer_id")
    return consent_mask(pd.Index(frame["customer_id"]), list(channels), frame)
