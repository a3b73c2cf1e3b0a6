"""Scoring from an online snapshot: the one code path of the service and batch scoring.

A :class:`Scorer` holds the snapshot as arrays indexed by position: each model's feature
matrix, the consent mask per channel, every customer's precomputed personal candidates
(ALS and buy again) and each store's recent assortment. A request (one customer or many)
is positions -> model calls -> rules, with no pandas on the way, so one customer costs
well under a millisecond and a million cost the same code in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.consent import consented
from features.schema import CHANNELS, CONSENT_COLUMNS
from serving.online import OnlineSnapshot
from serving.rules import ItemRules, item_rules, risk_band, store_assortments
from training.recs.candidates import REASONS, CandidateTable

CHANNEL_CODE = {c: i for i, c in enumerate(CHANNELS)}


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
    """Churn, next best channel and recommendations for customer ids, from a snapshot."""

    def __init__(self, snapshot: OnlineSnapshot, num_threads: int = 1) -> None:
        self.snapshot = snapshot
        self.num_threads = num_threads
        self.as_of = snapshot.as_of
        self.versions = snapshot.versions
        table = snapshot.features
        self.ids = pd.Index(table.index.astype("str"), name="customer_id")
        self._position = {cid: i for i, cid in enumerate(self.ids)}
        self.churn_model = snapshot.models["churn"]
        self.channel_model = snapshot.models["next_best_channel"]
        self.recommender = snapshot.models["recommender"]
        self.X_churn = _matrix(table, self.churn_model.features_)
        self.X_channel = _matrix(table, self.channel_model.features_)
        self.channels = [str(c) for c in self.channel_model.classes_]
        self.consent = _consent(table, self.channels)
        rec = self.recommender
        self.catalogue = rec.catalogue_
        self.item_ids = np.asarray(rec.catalogue_.item_ids, dtype=object)
        self.personal = CandidateTable.build(
            rec.snapshot_, rec.catalogue_.n_customers, rec._candidate_params()
        )
        self._rec_code = {cid: i for i, cid in enumerate(rec.catalogue_.customer_ids)}
        self.store_items = store_assortments(rec.snapshot_.segment_counts["store"])
        self.active = rec.snapshot_.active

    # ------------------------------------------------------------------ lookups

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each id in the feature table (-1: unknown customer)."""
        if len(ids) == 1:
            return np.array([self._position.get(ids[0], -1)], np.int64)
        return self.ids.get_indexer(pd.Index(list(ids), dtype="str")).astype(np.int64)

    # ------------------------------------------------------------------ models

    def churn(self, pos: np.ndarray) -> np.ndarray:
        """Calibrated churn probability per position (NaN for unknown customers)."""
        out = np.full(len(pos), np.nan)
        known = pos >= 0
        if known.any():
            X = self.X_churn[pos[known]]
            out[known] = self.churn_model.predict_matrix(X, num_threads=self.num_threads)
        return out

    def next_channel(self, pos: np.ndarray) -> np.ndarray:
        """(positions x ``channels``) probabilities after consent: unconsented channels
        are 0 and the rest sum to 1 (NaN rows for unknown customers)."""
        out = np.full((len(pos), len(self.channels)), np.nan)
        known = pos >= 0
        if known.any():
            p = pos[known]
            raw = self.channel_model.predict_matrix(self.X_channel[p], num_threads=self.num_threads)
            out[known] = consented(raw, self.consent[p])
        return out

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
        :mod:`serving.rules`); unknown customers get cold-start popularity."""
        rules, store = item_rules(self.catalogue, channel, store_id, exclude, categories)
        return self.recommend_codes(ids, k, rules, store, CHANNEL_CODE.get(channel or "", -1))

    def recommend_codes(
        self, ids: Sequence[str], k: int, rules: ItemRules, store: int, channel: int
    ) -> Recommendations:
        """:meth:`recommend` after validation (store / channel as codes, -1: none)."""
        if len(ids) == 1:  # the real-time case: a dict lookup instead of an index search
            codes = np.array([self._rec_code.get(ids[0], -1)], np.int32)
        else:
            codes = self.catalogue.customer_codes(list(ids))
        n = len(codes)
        allowed = rules.mask(self.catalogue, self.store_items)
        pos, item, score, reason, rank = self.recommender.recommend_codes(
            codes,
            np.full(n, store, np.int32),
            np.full(n, channel, np.int32),
            k,
            np.zeros(0, np.int64),
            personal=self.personal,
            allowed=allowed,
        )
        cold = ~((codes >= 0) & self.active[np.maximum(codes, 0)])
        return Recommendations(pos, item, score, reason, rank, cold)

    # ------------------------------------------------------------------ tables

    def score_frames(
        self,
        ids: Sequence[str],
        k: int = 10,
        channel: str | None = None,
        store_id: str | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """All three predictions as tables: (one row per customer, one row per
        recommended product). What ``/score`` and batch scoring return."""
        ids = list(ids)
        pos = self.positions(ids)
        churn = self.churn(pos)
        proba = self.next_channel(pos)
        recs = self.recommend(ids, k, channel, store_id)
        customers = pd.DataFrame(
            {
                "customer_id": pd.Series(ids, dtype="str"),
                "known": pos >= 0,
                "churn_probability": churn,
                "churn_band": pd.Series(risk_band(churn), dtype="str"),
                **{f"p_{c}": proba[:, j] for j, c in enumerate(self.channels)},
                "best_channel": pd.Series(self.best_channels(proba), dtype="str"),
                "cold_start": recs.cold_start,
            }
        )
        return customers, self.recommendation_frame(ids, recs)

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
        return pd.DataFrame(
            {
                "customer_id": pd.Series(np.asarray(ids, dtype=object)[recs.pos], dtype="str"),
                "rank": (recs.rank + 1).astype(np.int16),
                "product_id": pd.Series(self.catalogue.item_ids.to_numpy()[recs.item], dtype="str"),
                "score": recs.score.astype(np.float32),
                "reason": pd.Series(np.asarray(REASONS, dtype=object)[recs.reason], dtype="str"),
            }
        )


def _matrix(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The model's columns as a C-contiguous float32 matrix (as the model's own
    ``predict_proba`` builds it)."""
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise ValueError(f"the snapshot's feature table lacks model columns: {missing[:5]}")
    X = table.loc[:, list(features)].to_numpy(dtype=np.float32, na_value=np.nan)
    return np.ascontiguousarray(X)


def _consent(table: pd.DataFrame, channels: Sequence[str]) -> np.ndarray:
    """bool (customers x channels): may we reach them there? (as features.consent)."""
    allowed = np.ones((len(table), len(channels)), bool)
    for j, channel in enumerate(channels):
        column = CONSENT_COLUMNS.get(channel)
        if column is None:
            continue
        if column not in table.columns:
            allowed[:, j] = False
        else:
            allowed[:, j] = table[column].fillna(False).to_numpy(dtype=bool)
    return allowed
