"""A small search over the ALS hyperparameters, scored on the validation window only.

Each candidate is an :class:`~training.recs.baselines.ALSRecommender` fitted on events
before the validation cutoff V and evaluated on the purchases of [V, V + horizon): NDCG@10
and new-item NDCG@10 (products the customer had not bought before V). The winner is the
candidate with the best new-item NDCG@10 (ALS is the model's source of products a customer
has never bought; buy-again covers the rest); ties go to the earlier candidate. The test
window is never read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from training.recs.baselines import ALSRecommender
from training.recs.data import History
from training.recs.evaluate import Holdout, evaluate

# ALS knobs the search may set (Recommender parameter names).
SEARCHABLE = (
    "factors",
    "regularization",
    "alpha",
    "iterations",
    "bm25_k1",
    "bm25_b",
    "event_weights",
)

# Candidates tried by the job, each a change to the Recommender's defaults (the first is
# the defaults themselves). Chosen from a wider search on Complete Journey's validation
# window (docs/models.md): a low BM25 K1 and B (little damping of heavy buyers' lines)
# and a confidence scale below 1 lift new-item NDCG the most.
DEFAULT_CANDIDATES: tuple[dict[str, Any], ...] = (
    {},
    {"bm25_k1": 100.0, "bm25_b": 0.8, "alpha": 1.0, "factors": 64},  # the former defaults
    {"factors": 64},
    {"bm25_b": 0.3, "alpha": 1.0},
)


@dataclass
class ALSSearch:
    """Every candidate's parameters and validation metrics, and the winner's parameters."""

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    valid_cutoff: pd.Timestamp

    def summary(self) -> str:
        """One line: the winning settings and their validation scores, of how many tried."""
        row = next(r for r in self.rows if r["params"] == self.best)
        settings = ", ".join(f"{k}={v}" for k, v in self.best.items() if v is not None)
        scores = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("valid_"))
        return f"{settings} ({scores}; best of {len(self.rows)})"

    def as_json(self) -> dict[str, Any]:
        """What the job logs as ``tuning/als_search.json``."""
        return {"valid_cutoff": str(self.valid_cutoff), "best": self.best, "candidates": self.rows}


def search_als(
    history: History,
    valid_cutoff: pd.Timestamp,
    horizon_days: int,
    base: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]] = DEFAULT_CANDIDATES,
    k: int = 10,
) -> ALSSearch:
    """Fit ALS with ``base`` updated by each candidate on events before ``valid_cutoff``
    and score it on [valid_cutoff, valid_cutoff + horizon_days)."""
    if not candidates:
        raise ValueError("als_candidates must hold at least one candidate")
    for cand in candidates:
        unknown = set(cand) - set(SEARCHABLE)
        if unknown:
            raise ValueError(f"als_candidates: unknown ALS parameters {sorted(unknown)}")
    holdout = Holdout.build(history, valid_cutoff, horizon_days, base["lookback_days"])
    allowed = (*SEARCHABLE, "lookback_days", "popularity_days", "num_threads", "random_state")
    rows: list[dict[str, Any]] = []
    for cand in candidates:
        params = {name: base[name] for name in allowed if name in base} | dict(cand)
        t0 = time.perf_counter()
        model = ALSRecommender(**params).fit(history, as_of=valid_cutoff)
        e = evaluate(model, holdout, k=k)
        rows.append(
            {
                "params": {n: params[n] for n in SEARCHABLE if n in params},
                f"valid_ndcg_at_{k}": e.overall["ndcg"],
                f"valid_new_ndcg_at_{k}": e.new_items["ndcg"],
                "seconds": time.perf_counter() - t0,
            }
        )
    key = f"valid_new_ndcg_at_{k}"
    best = max(range(len(rows)), key=lambda i: (_finite(rows[i][key]), -i))
    return ALSSearch(rows=rows, best=rows[best]["params"], valid_cutoff=valid_cutoff)


def _finite(x: float) -> float:
    return x if x == x else float("-inf")  # NaN (no new purchase) ranks last
