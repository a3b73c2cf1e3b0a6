"""How well an uplift score targets, measured on contacted and holdout customers of a
later period: the Qini curve and coefficient, and the uplift among the top k%."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QiniCurve:
    """``share[i]``: share of customers targeted (best scores first); ``gain[i]``:
    incremental conversions among them, the contacted conversions minus the holdout's
    scaled to the contacted count (Radcliffe's Qini)."""

    share: np.ndarray
    gain: np.ndarray

    @property
    def coefficient(self) -> float:
        """Area between the curve and the straight line of random targeting, over the
        share axis (0: no better than random; negative: worse)."""
        random_line = self.share * (self.gain[-1] if len(self.gain) else 0.0)
        return float(np.trapezoid(self.gain - random_line, self.share))


def qini_curve(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> QiniCurve:
    """The Qini curve of ``score`` (higher: target first); ties are taken together, so a
    constant score gives the random line."""
    score = np.asarray(score, np.float64)
    treated = np.asarray(treated, bool)
    outcome = np.asarray(outcome, bool)
    order = np.argsort(-score, kind="stable")
    s, t, y = score[order], treated[order], outcome[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    n_t = np.cumsum(t)[last_of_tie]
    n_c = np.cumsum(~t)[last_of_tie]
    y_t = np.cumsum(y & t)[last_of_tie]
    y_c = np.cumsum(y & ~t)[last_of_tie]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = y_t - np.where(n_c > 0, y_c * n_t / n_c, 0.0)
    share = np.flatnonzero(last_of_tie) + 1.0
    return QiniCurve(np.r_[0.0, share / len(s)], np.r_[0.0, gain])


def uplift_at_k(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, k: float) -> float:
    """Conversion of contacted minus holdout customers among the top ``k`` share by score
    (k=1: contacting everyone); NaN when a group is empty there."""
    if not 0 < k <= 1:
        raise ValueError(f"k must be a share in (0, 1], got {k}")
    score = np.asarray(score, np.float64)
    treated = np.asarray(treated, bool)
    outcome = np.asarray(outcome, bool)
    top = np.argsort(-score, kind="stable")[: max(1, round(k * len(score)))]
    t, y = treated[top], outcome[top]
    if t.all() or not t.any():
        return float("nan")
    return float(y[t].mean() - y[~t].mean())
