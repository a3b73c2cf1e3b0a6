"""Offline evaluation on the weeks after a cutoff: did customers buy what we recommended?

Population: customers with at least one purchase in ``[as_of, as_of + horizon)``; their
relevant items are the distinct products bought there. Metrics (means over customers):
precision@k = hits / k; recall@k = hits / relevant; NDCG@k with binary gains and the
ideal list of min(relevant, k) hits; MAP@k = mean over customers of
sum(precision@i at each hit i <= k) / min(relevant, k); hit rate@k = share with a hit.
"New items" repeats this with products the customer bought before ``as_of`` removed from
both the lists (the model is asked to exclude them) and the relevant sets.
Catalogue coverage = distinct products in all top-k lists / products sold in the
lookback before ``as_of``.

The metric code works on a (customers x k) matrix of hits: no loop over customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.recs.base import BaseRecommender
from training.recs.data import PURCHASE, History, to_seconds

METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate")


def hit_matrix(rec_items: np.ndarray, truth_keys: np.ndarray, n_items: int) -> np.ndarray:
    """Bool (customers x k): ``rec_items[r, j]`` is relevant for customer row ``r``.

    ``rec_items`` holds item codes (-1 = empty slot); ``truth_keys`` are the sorted
    distinct ``row * n_items + item`` keys of relevant pairs.
    """
    rows = np.arange(rec_items.shape[0], dtype=np.int64)[:, None]
    keys = rows * n_items + rec_items
    if len(truth_keys) == 0:
        return np.zeros(rec_items.shape, bool)
    at = np.minimum(np.searchsorted(truth_keys, keys), len(truth_keys) - 1)
    return (truth_keys[at] == keys) & (rec_items >= 0)


def metrics_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, float]:
    """Mean precision, recall, NDCG, MAP and hit rate at ``k`` over rows with a relevant item."""
    ok = n_relevant > 0
    h = hits[ok, :k].astype(np.float64)
    rel = n_relevant[ok].astype(np.float64)
    if len(rel) == 0:
        return dict.fromkeys(METRICS, float("nan"))
    if h.shape[1] < k:  # shorter lists: missing slots are misses
        h = np.pad(h, ((0, 0), (0, k - h.shape[1])))
    n_hits = h.sum(axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)[np.minimum(rel, k).astype(int) - 1]
    precision_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return {
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / rel)),
        "ndcg": float(np.mean((h * discount).sum(axis=1) / ideal)),
        "map": float(np.mean((precision_at * h).sum(axis=1) / np.minimum(rel, k))),
        "hit_rate": float(np.mean(n_hits > 0)),
    }


def metrics_by_k(hits: np.ndarray, n_relevant: np.ndarray, k_max: int = 20) -> pd.DataFrame:
    """One row per k in 1..k_max with every metric (for the metric-by-k plot)."""
    rows = [{"k": k, **metrics_at_k(hits, n_relevant, k)} for k in range(1, k_max + 1)]
    return pd.DataFrame(rows)


def coverage(rec_items: np.ndarray, n_catalogue: int) -> float:
    """Distinct recommended items / catalogue size."""
    items = np.unique(rec_items[rec_items >= 0])
    return float(len(items) / max(n_catalogue, 1))


@dataclass
class Evaluation:
    """Metrics of one recommender on one holdout window."""

    name: str
    k: int
    overall: dict[str, float]
    new_items: dict[str, float]
    by_k: pd.DataFrame
    n_customers: int
    n_customers_new: int

    def flat(self) -> dict[str, float]:
        """``metric@k`` / ``new_metric@k`` / ``coverage@k`` keys (for MLflow)."""
        out = {f"{m}_at_{self.k}": v for m, v in self.overall.items()}
        out |= {f"new_{m}_at_{self.k}": v for m, v in self.new_items.items()}
        return out


@dataclass
class Holdout:
    """Who bought what in the evaluation window, and what they had bought before."""

    as_of: pd.Timestamp
    horizon_days: int
    customer_ids: pd.Index  # evaluated customers (purchase in the window)
    truth_keys: np.ndarray  # sorted row * n_items + item
    prior_keys: np.ndarray  # sorted row * n_items + item bought before as_of
    n_active_items: int
    history: History

    @classmethod
    def build(
        cls,
        history: History,
        as_of: pd.Timestamp | str,
        horizon_days: int = 14,
        lookback_days: int = 365,
    ) -> Holdout:
        """The holdout after ``as_of`` from an encoded history (reads events after it)."""
        n_items = history.catalogue.n_items
        rows = history.window(as_of, horizon_days)
        rows = rows[history.event_type[rows] == PURCHASE]
        cust = np.unique(history.customer[rows])
        row_of = np.full(history.catalogue.n_customers, -1, np.int64)
        row_of[cust] = np.arange(len(cust))
        truth = np.unique(row_of[history.customer[rows]] * n_items + history.item[rows])
        t = to_seconds(as_of)
        before = np.arange(np.searchsorted(history.ts, t, side="left"))
        before = before[(history.event_type[before] == PURCHASE)]
        mine = row_of[history.customer[before]]
        ok = mine >= 0
        prior = np.unique(mine[ok] * n_items + history.item[before][ok])
        recent = history.before(as_of, lookback_days)
        recent = recent[history.event_type[recent] == PURCHASE]
        return cls(
            as_of=pd.Timestamp(t, unit="s", tz="UTC"),
            horizon_days=horizon_days,
            customer_ids=history.catalogue.customer_ids[cust],
            truth_keys=truth,
            prior_keys=prior,
            n_active_items=len(np.unique(history.item[recent])),
            history=history,
        )

    def prior_frame(self) -> pd.DataFrame:
        """(customer_id, product_id) pairs bought before the cutoff, for ``exclude=``."""
        n_items = self.history.catalogue.n_items
        return pd.DataFrame(
            {
                "customer_id": self.customer_ids.to_numpy()[self.prior_keys // n_items],
                "product_id": self.history.catalogue.item_ids.to_numpy()[self.prior_keys % n_items],
            }
        )


def _rec_matrix(recs: pd.DataFrame, holdout: Holdout, k: int) -> np.ndarray:
    """Item codes (customers x k) of a ``recommend`` frame, -1 where a list is short."""
    cat = holdout.history.catalogue
    out = np.full((len(holdout.customer_ids), k), -1, np.int32)
    row = holdout.customer_ids.get_indexer(pd.Index(recs["customer_id"], dtype="str"))
    col = recs["rank"].to_numpy().astype(np.int64) - 1
    item = cat.item_codes(recs["product_id"].to_numpy())
    ok = (row >= 0) & (col < k)
    out[row[ok], col[ok]] = item[ok]
    return out


def evaluate(model: BaseRecommender, holdout: Holdout, k: int = 10, k_max: int = 20) -> Evaluation:
    """Metrics at ``k`` (overall, new items, coverage) and by k = 1..k_max."""
    n_items = holdout.history.catalogue.n_items
    n_cust = len(holdout.customer_ids)
    k_max = max(k, k_max)
    recs = model.recommend(holdout.customer_ids, k=k_max)
    items = _rec_matrix(recs, holdout, k_max)
    hits = hit_matrix(items, holdout.truth_keys, n_items)
    n_rel = np.bincount(holdout.truth_keys // n_items, minlength=n_cust)
    overall = metrics_at_k(hits, n_rel, k)
    overall["coverage"] = coverage(items[:, :k], holdout.n_active_items)
    by_k = metrics_by_k(hits, n_rel, k_max)

    new_truth = np.setdiff1d(holdout.truth_keys, holdout.prior_keys, assume_unique=True)
    new_recs = model.recommend(holdout.customer_ids, k=k, exclude=holdout.prior_frame())
    new_items = _rec_matrix(new_recs, holdout, k)
    new_rel = np.bincount(new_truth // n_items, minlength=n_cust)
    new = metrics_at_k(hit_matrix(new_items, new_truth, n_items), new_rel, k)
    new["coverage"] = coverage(new_items, holdout.n_active_items)
    return Evaluation(
        name=model.name,
        k=k,
        overall=overall,
        new_items=new,
        by_k=by_k,
        n_customers=int((n_rel > 0).sum()),
        n_customers_new=int((new_rel > 0).sum()),
    )


def comparison_table(evaluations: list[Evaluation]) -> pd.DataFrame:
    """One row per recommender: the headline metrics at k and new-item NDCG."""
    rows = []
    for e in evaluations:
        rows.append(
            {
                "model": e.name,
                **{f"{m}@{e.k}": e.overall[m] for m in ("ndcg", "map", "recall", "precision")},
                "hit_rate": e.overall["hit_rate"],
                "coverage": e.overall["coverage"],
                f"new_ndcg@{e.k}": e.new_items["ndcg"],
                f"new_recall@{e.k}": e.new_items["recall"],
            }
        )
    return pd.DataFrame(rows).set_index("model")
