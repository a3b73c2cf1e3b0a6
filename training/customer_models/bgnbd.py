"""BG/NBD buy-till-you-die model (Fader, Hardie & Lee 2005): the customer-base baseline for churn.

Fitted by maximum likelihood with scipy (the log-likelihood vectorised over customers,
parameters on the log scale, L-BFGS-B): a fit on tens of thousands of customers takes well
under a second, with no sampler or compiler behind it. Time is in whatever unit the inputs
use (the churn job uses days; the published CDNOW parameters are in weeks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from features.cutoffs import to_utc
from features.encode import timestamps_us, to_us

PARAM_NAMES = ("r", "alpha", "a", "b")
_US_PER_DAY = 86_400_000_000


def calibration_summary(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """Per customer with a purchase before ``cutoff``: frequency (repeat purchase days),
    recency (days from the first to the last purchase day) and age (days from the first
    purchase day to the last day before the cutoff), indexed by customer_id (str).

    Purchase days, not transactions, as in the BG/NBD literature (several orders on one day
    are one purchase); the age convention is the one of the published CDNOW summary.
    """
    t_us = to_us(cutoff)
    ts_us = timestamps_us(events["ts"])
    purchase = (events["event_type"] == "purchase").to_numpy() & (ts_us < t_us)
    days = pd.DataFrame(
        {
            "customer_id": events["customer_id"].to_numpy()[purchase].astype(str),
            "day": ts_us[purchase] // _US_PER_DAY,
        }
    ).drop_duplicates()
    per = days.groupby("customer_id", sort=True)["day"].agg(["size", "min", "max"])
    last_day = (t_us - 1) // _US_PER_DAY  # the last (UTC) day before the cutoff
    return pd.DataFrame(
        {
            "frequency": (per["size"] - 1).to_numpy(np.float64),
            "recency": (per["max"] - per["min"]).to_numpy(np.float64),
            "age": (last_day - per["min"]).to_numpy(np.float64),
        },
        index=per.index.rename("customer_id"),
    )


def _arrays(frequency, recency, age) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three per-customer inputs as float arrays, checked (errors name the field)."""
    x, t_x, T = (np.asarray(v, dtype=np.float64).ravel() for v in (frequency, recency, age))
    if not len(x) == len(t_x) == len(T):
        raise ValueError(
            f"frequency, recency and age must have one value per customer, "
            f"got {len(x)}, {len(t_x)} and {len(T)}"
        )
    for name, v in (("frequency", x), ("recency", t_x), ("age", T)):
        if not np.isfinite(v).all() or (v < 0).any():
            raise ValueError(f"{name} must be finite and >= 0 for every customer")
    if (x != np.round(x)).any():
        raise ValueError("frequency must be a whole number of repeat purchases")
    if (t_x > T).any():
        raise ValueError("recency must not exceed age (the last purchase is inside the period)")
    if ((x > 0) & (t_x == 0)).any():
        raise ValueError("recency must be > 0 for customers with repeat purchases")
    return x, t_x, T


def _log_likelihood(params: np.ndarray, x, t_x, T) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6) at (r, alpha, a, b)."""
    r, alpha, a, b = params
    repeat = x > 0
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    stays = -(r + x) * np.log(alpha + T)
    # The "dropped out just after the last purchase" term exists only for repeat buyers.
    drops = np.full_like(x, -np.inf)
    xr = x[repeat]
    drops[repeat] = np.log(a) - np.log(b + xr - 1) - (r + xr) * np.log(alpha + t_x[repeat])
    return head + np.logaddexp(stays, drops)


class BetaGeoModel:
    """BG/NBD fitted by maximum likelihood; ``params_`` holds r, alpha, a, b after ``fit``."""

    def __init__(self, max_iter: int = 500, tol: float = 1e-10) -> None:
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, frequency, recency, age) -> BetaGeoModel:
        """Maximise the summed log-likelihood over the customers (one row each)."""
        x, t_x, T = _arrays(frequency, recency, age)
        if len(x) == 0:
            raise ValueError("BG/NBD needs at least one customer (the summary table is empty)")
        if not (x > 0).any():
            raise ValueError(
                f"BG/NBD needs repeat buyers: frequency is 0 for all {len(x)} customers "
                "(the dropout process cannot be identified)"
            )
        n = len(x)
        start = np.log([1.0, max(float(T.mean()), 1e-3), 1.0, 1.0])

        def objective(theta: np.ndarray) -> float:
            return -float(_log_likelihood(np.exp(theta), x, t_x, T).sum()) / n

        # Bounds keep exp() finite when the data push a parameter to a boundary.
        res = minimize(
            objective,
            start,
            method="L-BFGS-B",
            bounds=[(-12.0, 12.0)] * 4,
            options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-8},
        )
        if not np.isfinite(res.fun):
            raise ValueError("BG/NBD fit failed: the log-likelihood is not finite")
        self.params_ = dict(zip(PARAM_NAMES, np.exp(res.x).tolist(), strict=True))
        self.log_likelihood_ = -float(res.fun) * n
        self.converged_ = bool(res.success)
        self.n_iter_ = int(res.nit)
        return self

    @classmethod
    def from_params(cls, params: dict[str, float]) -> BetaGeoModel:
        """A fitted model from stored parameters (r, alpha, a, b)."""
        model = cls()
        model.params_ = {k: float(params[k]) for k in PARAM_NAMES}
        return model

    def _theta(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise ValueError("BetaGeoModel is not fitted: call fit first")
        return tuple(self.params_[k] for k in PARAM_NAMES)

    def log_likelihood(self, frequency, recency, age) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters."""
        return _log_likelihood(np.array(self._theta()), *_arrays(frequency, recency, age))

    def _odds_dead(self, x, t_x, T) -> np.ndarray:
        """(a / (b + x - 1)) ((alpha + T) / (alpha + t_x))^(r + x) for repeat buyers, else 0."""
        r, alpha, a, b = self._theta()
        out = np.zeros_like(x)
        rep = x > 0
        xr = x[rep]
        out[rep] = np.exp(
            np.log(a)
            - np.log(b + xr - 1)
            + (r + xr) * (np.log(alpha + T[rep]) - np.log(alpha + t_x[rep]))
        )
        return out

    def p_alive(self, frequency, recency, age) -> np.ndarray:
        """P(still alive at the end of the period | x, t_x, T) (FHL 2005, eq. 11)."""
        x, t_x, T = _arrays(frequency, recency, age)
        return 1.0 / (1.0 + self._odds_dead(x, t_x, T))

    def expected_purchases(self, horizon: float, frequency, recency, age) -> np.ndarray:
        """E[purchases in the next ``horizon`` time units | x, t_x, T] (FHL 2005, eq. 10)."""
        if not np.isfinite(horizon) or horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        x, t_x, T = _arrays(frequency, recency, age)
        r, alpha, a, b = self._theta()
        z = horizon / (alpha + T + horizon)
        tail = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + horizon)))
        numerator = (a + b + x - 1) / (a - 1) * (1 - tail * hyp2f1(r + x, b + x, a + b + x - 1, z))
        return numerator / (1.0 + self._odds_dead(x, t_x, T))

    def score(self, summary: pd.DataFrame, horizon: float) -> pd.DataFrame:
        """P(alive) and expected purchases in ``horizon`` for every row of a calibration summary."""
        cols = (summary["frequency"], summary["recency"], summary["age"])
        return pd.DataFrame(
            {
                "p_alive": self.p_alive(*cols),
                "expected_purchases": self.expected_purchases(horizon, *cols),
            },
            index=summary.index,
        )


def churn_scores(
    events: pd.DataFrame, cutoff: str | pd.Timestamp, customer_ids: pd.Index, horizon_days: float
) -> tuple[pd.DataFrame, BetaGeoModel]:
    """Fit BG/NBD on every customer who bought before ``cutoff``; return two churn scores
    for ``customer_ids`` (higher = more likely gone) and the fitted model.

    Columns ``1 - p_alive`` and ``-expected_purchases`` (in the next ``horizon_days``).
    """
    summary = calibration_summary(events, cutoff)
    try:
        model = BetaGeoModel().fit(summary["frequency"], summary["recency"], summary["age"])
    except ValueError as e:
        raise ValueError(f"BG/NBD at cutoff {to_utc(cutoff):%Y-%m-%d}: {e}") from None
    missing = pd.Index(customer_ids).difference(summary.index)
    if len(missing):
        raise ValueError(
            f"BG/NBD at cutoff {to_utc(cutoff):%Y-%m-%d}: {len(missing)} customers to score "
            f"have no purchase before it (e.g. {missing[0]!r})"
        )
    scored = model.score(summary.loc[customer_ids], horizon_days)
    out = pd.DataFrame(
        {
            "1 - p_alive": 1.0 - scored["p_alive"],
            "-expected_purchases": -scored["expected_purchases"],
        },
        index=scored.index,
    )
    return out, model


SUMMARY_FEATURES = ("purchase_days", "purchase_span_days", "days_since_first_purchase")
"""Customer features BG/NBD reads: x = purchase_days - 1, t_x = purchase_span_days,
T = days_since_first_purchase (days, over the feature table's lookback)."""
OUTPUT_FEATURES = ("bgnbd_p_alive", "bgnbd_expected_purchases")


class BetaGeoFeatures:
    """BG/NBD as a feature step: fitted on feature-table rows, it adds P(alive) and the
    expected purchases in the next ``horizon_days`` to any rows of the same table.

    It reads the table's repeat-purchase summary (:data:`SUMMARY_FEATURES`), so training,
    batch scoring, the snapshot and the pyfunc all get the same two columns from the
    stored ``params_``. Rows without a purchase in the lookback get NaN (trees read it
    as missing); when the rows to fit have no repeat buyer the step is left unfitted
    (``params_`` None) and every row gets NaN.
    """

    def __init__(self, horizon_days: float) -> None:
        self.horizon_days = horizon_days

    @staticmethod
    def _inputs(summary: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Rows with a purchase and a consistent summary, and their (x, t_x, T)."""
        days, span, age = (np.asarray(summary[:, i], dtype=np.float64) for i in range(3))
        ok = (days >= 1) & np.isfinite(age) & (span >= 0) & (span <= age)
        ok &= (days == 1) | (span > 0)
        return ok, (days[ok] - 1.0, span[ok], age[ok])

    def fit(self, summary: np.ndarray) -> BetaGeoFeatures:
        """Maximum likelihood on the rows (columns in :data:`SUMMARY_FEATURES` order)."""
        _, (x, t_x, T) = self._inputs(summary)
        self.params_ = None
        if (x > 0).any():
            self.params_ = BetaGeoModel().fit(x, t_x, T).params_
        return self

    def transform(self, summary: np.ndarray) -> np.ndarray:
        """(rows x 2) float32: P(alive), expected purchases in the horizon (NaN: no purchase)."""
        out = np.full((len(summary), len(OUTPUT_FEATURES)), np.nan, dtype=np.float32)
        if self.params_ is None:
            return out
        ok, (x, t_x, T) = self._inputs(summary)
        model = BetaGeoModel.from_params(self.params_)
        out[ok, 0] = model.p_alive(x, t_x, T)
        out[ok, 1] = model.expected_purchases(self.horizon_days, x, t_x, T)
        return out
