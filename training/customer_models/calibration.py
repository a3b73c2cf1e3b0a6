"""Calibration of the churn booster's probabilities that keeps its ranking.

Three methods are compared on the validation cutoff by cross-fitting (each fold's rows
are scored by a calibrator fitted on the other folds): ``none`` (LightGBM's own
probabilities), ``sigmoid`` (Platt scaling on the log-odds: strictly increasing, so the
ranking is kept) and ``isotonic`` (a step function: it can tie distinct scores and lose
average precision, issue 16). The choice is the lowest held-out log loss among the
methods whose mean per-fold ROC AUC and AP are not below the raw scores' on the same
folds; ``none`` always qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

METHODS = ("none", "sigmoid", "isotonic")
_EPS = 1e-6
_RANK_TOLERANCE = 1e-12  # float noise only: a method must not lower AUC or AP


@dataclass
class Calibrator:
    """A fitted map from raw booster probabilities to calibrated ones."""

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    isotonic: object | None = None  # a fitted sklearn IsotonicRegression

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64) for raw booster probabilities."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "sigmoid":
            return expit(self.slope * logit(np.clip(raw, _EPS, 1 - _EPS)) + self.intercept)
        if self.method == "isotonic":
            iso = self.isotonic
            clipped = np.clip(raw.astype(iso.X_thresholds_.dtype), iso.X_min_, iso.X_max_)
            return np.asarray(iso.f_(clipped), dtype=np.float64)  # skips per-call checks
        return raw


def fit_calibrator(method: str, raw: np.ndarray, churned: np.ndarray) -> Calibrator:
    """Fit ``method`` (one of :data:`METHODS`) on raw probabilities and 0/1 outcomes."""
    if method == "none":
        return Calibrator("none")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        return Calibrator("isotonic", isotonic=iso.fit(raw, churned))
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        z = logit(np.clip(np.asarray(raw, dtype=np.float64), _EPS, 1 - _EPS))[:, None]
        lr = LogisticRegression(C=np.inf).fit(z, churned)
        slope = float(lr.coef_[0, 0])
        if slope <= 0:  # a reversed or flat map would destroy the ranking: keep the scores
            return Calibrator("none")
        return Calibrator("sigmoid", slope=slope, intercept=float(lr.intercept_[0]))
    raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")


def compare_calibrations(
    raw: np.ndarray, churned: np.ndarray, n_folds: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Per method: held-out log loss (pooled over folds), mean per-fold ROC AUC and AP, and
    ``keeps_ranking`` (AUC and AP not below the raw scores' on the same folds)."""
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    raw, churned = np.asarray(raw, dtype=np.float64), np.asarray(churned, dtype=np.int8)
    folds = min(n_folds, int(np.bincount(churned, minlength=2).min()))
    if folds < 2:  # too few churners or stayers to hold any out: keep the raw scores
        return pd.DataFrame(
            {
                "log_loss": np.nan,
                "roc_auc": np.nan,
                "average_precision": np.nan,
                "keeps_ranking": True,
            },
            index=pd.Index(["none"], name="method"),
        )
    split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(raw, churned)
    held_out = {m: np.empty_like(raw) for m in METHODS}
    auc = {m: [] for m in METHODS}
    ap = {m: [] for m in METHODS}
    for fit_rows, test_rows in split:
        for m in METHODS:
            p = fit_calibrator(m, raw[fit_rows], churned[fit_rows])(raw[test_rows])
            held_out[m][test_rows] = p
            auc[m].append(roc_auc_score(churned[test_rows], p))
            ap[m].append(average_precision_score(churned[test_rows], p))
    table = pd.DataFrame(
        {
            "log_loss": [
                log_loss(churned, np.clip(held_out[m], _EPS, 1 - _EPS), labels=[0, 1])
                for m in METHODS
            ],
            "roc_auc": [float(np.mean(auc[m])) for m in METHODS],
            "average_precision": [float(np.mean(ap[m])) for m in METHODS],
        },
        index=pd.Index(METHODS, name="method"),
    )
    floor = table.loc["none"] - _RANK_TOLERANCE
    table["keeps_ranking"] = (table["roc_auc"] >= floor["roc_auc"]) & (
        table["average_precision"] >= floor["average_precision"]
    )
    return table


def choose_calibration(table: pd.DataFrame) -> str:
    """The method with the lowest held-out log loss among those that keep the ranking."""
    kept = table[table["keeps_ranking"]]
    if kept["log_loss"].isna().all():
        return "none"
    return str(kept["log_loss"].idxmin())
