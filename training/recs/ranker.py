"""Stage two: a LightGBM lambdarank model that orders each customer's candidates.

One query group = one customer at one cutoff; label 1 = bought in the label window after
that cutoff. Groups without any bought candidate carry no ranking signal and are dropped.
Early stopping reads NDCG@10 on the validation cutoff's groups only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.recs.tables import rank_within

DEFAULT_PARAMS: dict[str, object] = {
    "n_estimators": 400,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "lambdarank_truncation_level": 20,
    "n_jobs": 1,
    "verbose": -1,
}
"""LightGBM defaults. One thread: on ranking data of this size LightGBM's OpenMP threads
spend more time waiting for each other than working (10x slower with two on a busy
2-core machine); pass ``n_jobs`` in ``ranker_params`` for big training sets."""
EARLY_STOPPING_ROUNDS = 30


@dataclass
class RankingData:
    """Rows of several query groups, contiguous per group."""

    X: np.ndarray  # float32
    y: np.ndarray  # int8
    group: np.ndarray  # int32 rows per group, in order

    @classmethod
    def concat(cls, parts: list[RankingData]) -> RankingData:
        return cls(
            np.concatenate([p.X for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.group for p in parts]),
        )


def ranking_data(
    X: np.ndarray,
    y: np.ndarray,
    pos: np.ndarray,
    rng: np.random.Generator,
    max_groups: int | None = None,
    max_negatives: int | None = None,
) -> RankingData:
    """Groups from rows sorted by ``pos`` (query id), keeping groups with a positive,
    at most ``max_groups`` of them drawn at random, and in each group every positive
    plus at most ``max_negatives`` random negatives (training only: it cuts the rows
    several fold and lambdarank still sees every positive against many negatives)."""
    n_groups = int(pos.max()) + 1 if len(pos) else 0
    positives = np.bincount(pos, weights=y, minlength=n_groups)
    keep_groups = np.flatnonzero(positives > 0)
    if max_groups is not None and len(keep_groups) > max_groups:
        keep_groups = np.sort(rng.choice(keep_groups, max_groups, replace=False))
    mask = np.zeros(n_groups, bool)
    mask[keep_groups] = True
    rows = mask[pos]
    if max_negatives is not None:
        neg = np.flatnonzero(rows & (y == 0))
        order = neg[np.lexsort((rng.random(len(neg)), pos[neg]))]
        rows[order[rank_within(pos[order]) >= max_negatives]] = False
    sizes = np.bincount(pos[rows], minlength=n_groups)[keep_groups]
    return RankingData(X[rows], y[rows].astype(np.int8), sizes.astype(np.int32))


def fit_ranker(
    train: RankingData,
    valid: RankingData,
    features: list[str],
    params: dict | None,
    random_state: int,
) -> Any:
    """An ``lightgbm.LGBMRanker`` fitted with early stopping on ``valid``."""
    import lightgbm as lgb

    p = {**DEFAULT_PARAMS, **(params or {})}
    model = lgb.LGBMRanker(
        objective="lambdarank",
        random_state=random_state,
        deterministic=True,
        force_row_wise=True,
        **p,
    )
    model.fit(
        train.X,
        train.y,
        group=train.group,
        eval_X=(valid.X,),
        eval_y=(valid.y,),
        eval_group=[valid.group],
        eval_at=[10],
        feature_name=list(features),
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return model
