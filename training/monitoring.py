"""Drift between the data the champions were trained on and the data they score now.

The population stability index (PSI) of a column compares the share of rows in each of
its reference deciles: ``sum((cur - ref) * ln(cur / ref))`` over the bins, missing values
a bin of their own, shares floored at 1e-4 so an emptied bin counts instead of dividing
by zero. Usual reading: under 0.1 stable, 0.1-0.25 worth a look, over 0.25 shifted.

:func:`drift_report` gives it for every feature the models read, for the churn and
next-best-channel scores (the models applied to both tables), and the share of customers
without a purchase in the recommender's lookback (its cold start) in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

FLOOR = 1e-4


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (see the module)."""
    reference = np.asarray(reference, np.float64)
    current = np.asarray(current, np.float64)
    known = reference[~np.isnan(reference)]
    cuts = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(known, cuts)) if len(known) else np.zeros(0)
    ref_counts, cur_counts = _bin_counts(reference, edges), _bin_counts(current, edges)
    ref_share = np.maximum(ref_counts / max(len(reference), 1), FLOOR)
    cur_share = np.maximum(cur_counts / max(len(current), 1), FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin between ``edges``, then the missing values' count."""
    known = values[~np.isnan(values)]
    at = np.searchsorted(edges, known, side="right")
    return np.r_[np.bincount(at, minlength=len(edges) + 1), len(values) - len(known)]


@dataclass
class DriftReport:
    """PSI per feature (largest first) and per score, and the cold-start shares."""

    features: pd.Series
    scores: dict[str, float]
    cold_share: tuple[float, float]  # (reference, current)

    def values(self) -> dict[str, float]:
        """Every PSI by name: ``feature:<column>`` and ``score:<name>``."""
        out = {f"feature:{k}": float(v) for k, v in self.features.items()}
        return out | {f"score:{k}": v for k, v in self.scores.items()}

    def above(self, limit: float) -> dict[str, float]:
        """The PSIs over ``limit``, largest first."""
        over = {k: v for k, v in self.values().items() if v > limit}
        return dict(sorted(over.items(), key=lambda kv: -kv[1]))


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    churn_model=None,
    channel_model=None,
    cold_after_days: float | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference`` (feature tables, one row per customer):
    PSI of each of ``features``, of the churn probability and of each channel's
    probability (for the models given), and the share of customers whose last purchase
    is missing or older than ``cold_after_days`` in each table."""
    psis = {f: psi(reference[f].to_numpy(), current[f].to_numpy()) for f in features}
    table = pd.Series(psis, dtype="float64").sort_values(ascending=False)
    scores: dict[str, float] = {}
    if churn_model is not None:
        ref, cur = (churn_model.predict_proba(t)[:, 1] for t in (reference, current))
        scores["churn"] = psi(ref, cur)
    if channel_model is not None:
        ref, cur = (channel_model.predict_proba(t) for t in (reference, current))
        for j, name in enumerate(channel_model.classes_):
            scores[f"next_best_channel_{name}"] = psi(ref[:, j], cur[:, j])
    cold = (np.nan, np.nan)
    if cold_after_days is not None:
        cold = tuple(_cold_share(t, cold_after_days) for t in (reference, current))
    return DriftReport(table, scores, cold)


def _cold_share(table: pd.DataFrame, days: float) -> float:
    last = table["days_since_last_purchase"].to_numpy(np.float64)
    return float(np.mean(np.isnan(last) | (last > days))) if len(last) else float("nan")
