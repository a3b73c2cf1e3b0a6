"""The churn and next-best-channel models: LightGBM on the customer feature table.

Both are scikit-learn classifiers, as the recommenders are scikit-learn estimators:
``__init__`` stores hyperparameters (so ``get_params`` / ``clone`` work), ``fit(X, y)``
returns self, learned state ends in ``_``, and ``predict_proba(X)`` is a (rows x
``classes_``) float array.
Early stopping and calibration use the validation set passed to ``fit`` (the jobs pass
the validation cutoff); the test cutoff is never seen in ``fit``. The churn model's
BG/NBD step is fitted on the training rows only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from training.customer_models.bgnbd import OUTPUT_FEATURES, SUMMARY_FEATURES, BetaGeoFeatures
from training.customer_models.calibration import (
    Calibrator,
    choose_calibration,
    compare_calibrations,
    fit_calibrator,
)

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
CHURN_PARAMS: dict[str, object] = {
    **DEFAULT_PARAMS,
    "n_estimators": 1500,
    "learning_rate": 0.02,
    "num_leaves": 7,
    "min_child_samples": 200,
    "reg_lambda": 10.0,
}
"""Churn's defaults: small, regularised trees at a lower learning rate. On Complete Journey
(issue 16) the shared defaults' validation AP peaked after 3-21 trees (recency and
frequency are learned at once, deeper trees then fit the noise of a few hundred
churners); these keep 35-176 trees and raise the median validation AP over five seeds
from 0.357 to 0.391 (docs/models.md, tests/benchmarks/churn_variants.py)."""
EARLY_STOPPING_ROUNDS = 50


def model_matrix(X: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The model's columns in training order, as float32 (missing columns are an error):
    what fit, predict_proba and serving's precomputed matrices all feed the booster."""
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise ValueError(f"feature table lacks columns the model was trained on: {missing[:5]}")
    return X.loc[:, list(features)].to_numpy(dtype=np.float32, na_value=np.nan)


class CustomerClassifier(ClassifierMixin, BaseEstimator):
    """Base of a LightGBM model on the customer feature table: the constructor (LightGBM
    ``params`` over ``DEFAULT_PARAMS``, ``random_state``), input checks, ``predict``, the
    probability frame and feature importance. Subclasses write ``fit`` and
    ``predict_proba``."""

    def __init__(self, params: dict | None = None, random_state: int = 0) -> None:
        self.params = params
        self.random_state = random_state

    def _checked_labels(self, X: pd.DataFrame, y, X_valid, y_valid) -> np.ndarray:
        """Check the training input; ``y`` as an array."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame of features, got {type(X).__name__}")
        if len(y) != len(X):
            raise ValueError(f"y has {len(y)} labels for {len(X)} rows of X")
        if (X_valid is None) != (y_valid is None):
            raise ValueError("pass X_valid and y_valid together (or neither)")
        if X_valid is not None and len(y_valid) != len(X_valid):
            raise ValueError(f"y_valid has {len(y_valid)} labels for {len(X_valid)} rows")
        return np.asarray(y)

    default_params: dict[str, object] = DEFAULT_PARAMS

    def _lightgbm_params(self) -> dict[str, object]:
        return {**self.default_params, **(self.params or {}), "random_state": self.random_state}

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable class per row of ``X``."""
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]

    def predict_proba_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict_proba` as a frame: the index of ``X``, one column per class."""
        return pd.DataFrame(self.predict_proba(X), index=X.index, columns=list(self.classes_))

    @property
    def booster_features_(self) -> list[str]:
        """The LightGBM booster's input columns, in order (here ``features_``)."""
        check_is_fitted(self)
        return list(self.features_)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        gain = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.features_).sort_values(ascending=False)


class ChurnModel(CustomerClassifier):
    """Calibrated probability that an active customer makes no purchase in the horizon.

    ``y``: two label values, the second (sorted) meaning churned (the jobs' 0 / 1).

    With ``bgnbd_horizon_days`` set, a BG/NBD step (:class:`BetaGeoFeatures`) fitted on the
    training rows adds P(alive) and the expected purchases in that horizon to the booster's
    input. Fitted once on the training rows, not at every cutoff: those rows are features
    as of the training cutoffs (events before them only), so the validation and test
    cutoffs get the features from parameters that never saw their labels or later events,
    and scoring applies the very parameters stored with the model. The step reads the
    feature table's :data:`SUMMARY_FEATURES`, so every scoring path gets the same columns
    from the same ``features_``.
    """

    default_params = CHURN_PARAMS

    def __init__(
        self,
        params: dict | None = None,
        random_state: int = 0,
        bgnbd_horizon_days: float | None = 60.0,
        early_stopping_metric: str = "average_precision",
    ) -> None:
        super().__init__(params=params, random_state=random_state)
        self.bgnbd_horizon_days = bgnbd_horizon_days
        self.early_stopping_metric = early_stopping_metric

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        X_valid: pd.DataFrame | None = None,
        y_valid: np.ndarray | None = None,
    ) -> ChurnModel:
        """LightGBM; with a validation set, early stopping on it, then the calibration that
        keeps the booster's ranking on it (:mod:`calibration`). Without one: all
        ``n_estimators`` trees, LightGBM's probabilities."""
        import lightgbm as lgb

        y = self._checked_labels(X, y, X_valid, y_valid)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(
                f"churn needs two classes in y (stays, churns), got {classes.tolist()}"
            )
        features = list(X.columns)
        bgnbd = None
        if self.bgnbd_horizon_days is not None:
            missing = [f for f in SUMMARY_FEATURES if f not in features]
            if missing:
                raise ValueError(f"the BG/NBD step needs the feature columns {missing}")
            summary = model_matrix(X, SUMMARY_FEATURES)
            bgnbd = BetaGeoFeatures(self.bgnbd_horizon_days).fit(summary)
        self.features_, self.classes_, self.bgnbd_ = features, classes, bgnbd
        params = {"metric": self.early_stopping_metric, **self._lightgbm_params()}
        self.booster_ = lgb.LGBMClassifier(objective="binary", **params)
        self.calibration_ = Calibrator("none")
        self.calibration_table_ = None
        train = self._booster_input(model_matrix(X, self.features_))
        if X_valid is None:
            self.booster_.fit(train, y)
        else:
            valid = self._booster_input(model_matrix(X_valid, self.features_))
            self.booster_.fit(
                train,
                y,
                eval_X=(valid,),
                eval_y=(np.asarray(y_valid),),
                callbacks=[
                    lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)
                ],
            )
            raw = self.booster_.booster_.predict(valid)
            churned = (np.asarray(y_valid) == self.classes_[1]).astype(np.int8)
            table = compare_calibrations(raw, churned, seed=self.random_state)
            self.calibration_table_ = table
            self.calibration_ = fit_calibrator(choose_calibration(table), raw, churned)
        self.best_iteration_ = int(self.booster_.best_iteration_ or params["n_estimators"])
        return self

    @property
    def booster_features_(self) -> list[str]:
        """The booster's columns: ``features_`` plus the BG/NBD step's outputs."""
        check_is_fitted(self)
        return [*self.features_, *(OUTPUT_FEATURES if self.bgnbd_ is not None else ())]

    def _booster_input(self, X: np.ndarray) -> np.ndarray:
        """``features_`` matrix -> the booster's matrix (the BG/NBD columns appended)."""
        if self.bgnbd_ is None:
            return X
        columns = [self.features_.index(f) for f in SUMMARY_FEATURES]
        return np.hstack([X, self.bgnbd_.transform(X[:, columns])])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(rows x 2) probabilities of ``classes_``: [stays, churns] per row of ``X``."""
        check_is_fitted(self)
        churns = self.predict_matrix(model_matrix(X, self.features_))
        return np.column_stack([1.0 - churns, churns])

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's own churn probability per row of ``X`` (before calibration)."""
        check_is_fitted(self)
        raw = self._booster_input(model_matrix(X, self.features_))
        return self.booster_.booster_.predict(raw)

    def predict_matrix(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Calibrated churn probability per row of a float32 matrix in ``features_`` order.

        The fast path serving and batch scoring share with :meth:`predict_proba`: the
        BG/NBD step, the raw booster and the calibration without scikit-learn's per-call
        input checks (those cost ~0.6 ms a call). ``num_threads=0``: LightGBM's default.
        """
        raw = self.booster_.booster_.predict(self._booster_input(X), num_threads=num_threads)
        return self.calibration_(raw)

    def feature_importance(self) -> pd.Series:
        """Total gain per booster column (BG/NBD's outputs included), largest first."""
        gain = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.booster_features_).sort_values(ascending=False)


class NextChannelModel(CustomerClassifier):
    """Probability per channel that the customer's next conversion comes through it."""

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        X_valid: pd.DataFrame | None = None,
        y_valid: np.ndarray | None = None,
    ) -> NextChannelModel:
        """Multiclass LightGBM over the channels seen in training labels (``classes_``,
        sorted); with a validation set, early stopping on it (rows whose channel training
        never saw are left out of it)."""
        import lightgbm as lgb

        labels = self._checked_labels(X, y, X_valid, y_valid).astype(object)
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(
                f"next-best-channel needs at least two channels in y, got {classes.tolist()}"
            )
        self.features_, self.classes_ = list(X.columns), classes
        params = self._lightgbm_params()
        objective = "multiclass" if len(self.classes_) > 2 else "binary"  # e.g. Complete Journey
        self.booster_ = lgb.LGBMClassifier(objective=objective, **params)
        codes = np.searchsorted(self.classes_, labels)
        if X_valid is None:
            self.booster_.fit(model_matrix(X, self.features_), codes)
        else:
            valid = np.asarray(y_valid, dtype=object)
            known = np.isin(valid, self.classes_)
            self.booster_.fit(
                model_matrix(X, self.features_),
                codes,
                eval_X=(model_matrix(X_valid.loc[known], self.features_),),
                eval_y=(np.searchsorted(self.classes_, valid[known]),),
                callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
            )
        self.best_iteration_ = int(self.booster_.best_iteration_ or params["n_estimators"])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(rows x ``classes_``) probabilities per row of ``X``; rows sum to 1."""
        check_is_fitted(self)
        return self.predict_matrix(model_matrix(X, self.features_))

    def predict_matrix(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """(rows x ``classes_``) probabilities from a float32 matrix in ``features_`` order:
        the raw booster, as :meth:`predict_proba` uses it, without per-call overhead."""
        proba = self.booster_.booster_.predict(X, num_threads=num_threads)
        if proba.ndim == 1:  # binary objective: the probability of the second class
            proba = np.column_stack([1.0 - proba, proba])
        return proba
