"""The churn and next-best-channel models: LightGBM on the customer feature table.

Both follow the estimator contract: ``__init__`` stores hyperparameters, ``fit`` returns
self, learned state ends in ``_``. Early stopping and calibration use the validation
cutoff only; the test cutoff is never seen in ``fit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DEFAULT_PARAMS: dict[str, object] = {
    "n_estimators": 600,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 40,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "n_jobs": 2,
    "verbose": -1,
}
EARLY_STOPPING_ROUNDS = 50


def model_matrix(X: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The model's columns in training order, as float32 (missing columns are an error):
    what fit, predict_proba and serving's precomputed matrices all feed the booster."""
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise ValueError(f"feature table lacks columns the model was trained on: {missing[:5]}")
    return X.loc[:, list(features)].to_numpy(dtype=np.float32, na_value=np.nan)


class ChurnModel:
    """Calibrated probability that an active customer makes no purchase in the horizon."""

    def __init__(self, params: dict | None = None, random_state: int = 0) -> None:
        self.params = params
        self.random_state = random_state

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray
    ) -> ChurnModel:
        """LightGBM with early stopping on the validation cutoff, then isotonic calibration
        of its validation scores."""
        import lightgbm as lgb
        from sklearn.isotonic import IsotonicRegression

        self.features_ = list(X.columns)
        params = {**DEFAULT_PARAMS, **(self.params or {}), "random_state": self.random_state}
        self.booster_ = lgb.LGBMClassifier(objective="binary", **params)
        self.booster_.fit(
            model_matrix(X, self.features_),
            np.asarray(y),
            eval_X=(model_matrix(X_valid, self.features_),),
            eval_y=(np.asarray(y_valid),),
            eval_metric="average_precision",
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        raw = self._raw(X_valid)
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        self.calibrator_.fit(raw, np.asarray(y_valid))
        self.best_iteration_ = int(self.booster_.best_iteration_ or params["n_estimators"])
        return self

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict_proba(model_matrix(X, self.features_))[:, 1]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row of ``X``."""
        return self.predict_matrix(model_matrix(X, self.features_))

    def predict_matrix(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Calibrated churn probability per row of a float32 matrix in ``features_`` order.

        The fast path serving and batch scoring share with :meth:`predict_proba`: the raw
        booster and the isotonic step without scikit-learn's per-call input checks
        (those cost ~0.6 ms a call). ``num_threads=0``: LightGBM's default.
        """
        raw = self.booster_.booster_.predict(X, num_threads=num_threads)
        iso = self.calibrator_
        clipped = np.clip(raw.astype(iso.X_thresholds_.dtype), iso.X_min_, iso.X_max_)
        return np.asarray(iso.f_(clipped), dtype=np.float64)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        gain = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.features_).sort_values(ascending=False)


class NextChannelModel:
    """Probability per channel that the customer's next conversion comes through it."""

    def __init__(self, params: dict | None = None, random_state: int = 0) -> None:
        self.params = params
        self.random_state = random_state

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray
    ) -> NextChannelModel:
        """Multiclass LightGBM over the channels seen in training labels; early stopping on
        the validation cutoff (rows whose channel training never saw are left out of it)."""
        import lightgbm as lgb

        self.features_ = list(X.columns)
        self.classes_ = sorted(pd.unique(np.asarray(y, dtype=object)).tolist())
        if len(self.classes_) < 2:
            raise ValueError(f"next-best-channel needs at least two channels, got {self.classes_}")
        index = {c: i for i, c in enumerate(self.classes_)}
        y_codes = np.array([index[c] for c in y])
        known = np.isin(np.asarray(y_valid, dtype=object), self.classes_)
        yv_codes = np.array([index[c] for c in np.asarray(y_valid, dtype=object)[known]])
        params = {**DEFAULT_PARAMS, **(self.params or {}), "random_state": self.random_state}
        objective = "multiclass" if len(self.classes_) > 2 else "binary"  # e.g. Complete Journey
        self.booster_ = lgb.LGBMClassifier(objective=objective, **params)
        self.booster_.fit(
            model_matrix(X, self.features_),
            y_codes,
            eval_X=(model_matrix(X_valid.loc[known], self.features_),),
            eval_y=(yv_codes,),
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration_ or params["n_estimators"])
        return self

    def predict_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """One column per channel (``classes_``), rows sum to 1."""
        proba = self.predict_matrix(model_matrix(X, self.features_))
        return pd.DataFrame(proba, index=X.index, columns=self.classes_)

    def predict_matrix(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """(rows x ``classes_``) probabilities from a float32 matrix in ``features_`` order:
        the raw booster, as :meth:`predict_proba` uses it, without per-call overhead."""
        proba = self.booster_.booster_.predict(X, num_threads=num_threads)
        if proba.ndim == 1:  # binary objective: the probability of the second class
            proba = np.column_stack([1.0 - proba, proba])
        return proba

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        gain = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.features_).sort_values(ascending=False)
