"""Training jobs for the two customer-level models: churn and next best channel.

Each job builds labelled sets at the split's cutoffs, fits on the training
cutoffs (early stopping / calibration on the validation cutoff), and evaluates the
model and its baselines on the test cutoff, which nothing was fitted on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from features.contract.consent import apply_consent
from features.labels import churn_labels, next_channel_labels
from training.customer_models.bgnbd import churn_scores
from training.customer_models.classifiers import ChurnModel, NextChannelModel
from training.customer_models.evaluation import (
    channel_metrics,
    churn_figures,
    churn_metrics,
    class_metrics,
    confusion_figure,
    importance_figure,
    one_hot_choice,
)
from training.customer_models.labelled_sets import labelled_sets, stack
from training.splits import TemporalSplit, temporal_split


@dataclass(frozen=True)
class JobConfig:
    """Label windows and cutoffs of a customer-model job."""

    lookback_days: int = 90
    horizon_days: int = 60
    n_train_cutoffs: int = 4
    step_days: int = 30
    attribution_days: int = 7
    params: dict | None = None
    seed: int = 42
    test_cutoff: pd.Timestamp | None = None  # default: as_of - horizon
    as_of: pd.Timestamp | None = None  # default: the first midnight after the last event


@dataclass
class JobResult:
    """A fitted model with everything a tracked run logs about it."""

    name: str
    model: object
    split: TemporalSplit
    metrics: dict[str, float]  # "test_<metric>" for the model, "<baseline>_test_<metric>"
    gate_metric: str
    params: dict[str, object]
    rows: dict[str, int]
    figures: dict[str, object] = field(default_factory=dict)
    importance: pd.Series | None = None
    input_example: pd.DataFrame | None = None
    seconds: float = 0.0  # the whole job: data sets, fit, evaluation
    fit_seconds: float = 0.0  # the model's fit alone
    test_X: pd.DataFrame | None = field(default=None, repr=False)  # to re-score a champion
    test_y: pd.Series | None = field(default=None, repr=False)
    # per-class test metrics (``test_precision_<class>``, ...): logged with ``metrics``, kept
    # out of the comparison tables (the champion and the baselines have none)
    class_metrics: dict[str, float] = field(default_factory=dict)


def _split(events: pd.DataFrame, config: JobConfig) -> TemporalSplit:
    return temporal_split(
        events["ts"].min(),
        events["ts"].max(),
        horizon_days=config.horizon_days,
        lookback_days=config.lookback_days,
        n_train=config.n_train_cutoffs,
        step_days=config.step_days,
        test_cutoff=config.test_cutoff,
        as_of=config.as_of,
    )


def _datasets(events, customers, config: JobConfig, label, column: str):
    """The split and its (features, labels) for training (stacked), validation and test."""
    split = _split(events, config)
    snaps = labelled_sets(events, customers, [*split.train, split.valid, split.test], label, column)
    return split, stack([snaps[t] for t in split.train]), snaps[split.valid], snaps[split.test]


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}test_{k}": v for k, v in metrics.items()}


def _bgnbd_baseline(
    events: pd.DataFrame, split: TemporalSplit, yv: pd.Series, test_ids: pd.Index
) -> tuple[np.ndarray, dict[str, object]]:
    """BG/NBD churn score on the test cutoff: 1 - P(alive) or minus the expected purchases in
    the horizon, whichever has the higher average precision on the validation cutoff."""
    from sklearn.metrics import average_precision_score

    horizon = split.horizon_days
    valid, _ = churn_scores(events, split.valid, yv.index, horizon)
    ap = {name: average_precision_score(yv, valid[name]) for name in valid.columns}
    pick = max(ap, key=ap.get)
    test, model = churn_scores(events, split.test, test_ids, horizon)
    params = {f"bgnbd_{k}": round(v, 6) for k, v in model.params_.items()}
    return test[pick].to_numpy(np.float64), {"bgnbd_churn_score": pick, **params}


def train_churn(
    events: pd.DataFrame, customers: pd.DataFrame, config: JobConfig = JobConfig()
) -> JobResult:
    """Churn: LightGBM vs recency-alone and frequency-alone heuristics and the BG/NBD
    customer-base model (fitted at the test cutoff) on the test cutoff."""
    t0 = time.perf_counter()
    label = partial(
        churn_labels, lookback_days=config.lookback_days, horizon_days=config.horizon_days
    )
    split, (X, y), (Xv, yv), (Xt, yt) = _datasets(events, customers, config, label, "churned")
    fit_start = time.perf_counter()
    model = ChurnModel(
        params=config.params, random_state=config.seed, bgnbd_horizon_days=config.horizon_days
    ).fit(X, y, Xv, yv)
    fit_seconds = time.perf_counter() - fit_start
    proba = model.predict_proba(Xt)[:, 1]  # the probability of churning
    raw = model.predict_raw(Xt)
    bgnbd, bgnbd_params = _bgnbd_baseline(events, split, yv, Xt.index)
    baselines = {
        # Longer since the last purchase -> more likely gone; fewer orders -> more likely gone.
        "recency": Xt["days_since_last_purchase"].to_numpy(np.float64),
        "frequency": -Xt["orders_90d"].to_numpy(np.float64),
        "bgnbd": bgnbd,
    }
    metrics = _prefixed("", churn_metrics(yt, proba, probability=True))
    metrics |= _prefixed("raw_booster_", churn_metrics(yt, raw, probability=True))
    metrics |= _calibration_metrics(model)
    for name, score in baselines.items():
        metrics |= _prefixed(f"baseline_{name}_", churn_metrics(yt, score))
    figures = churn_figures(yt.to_numpy(), proba, baselines)
    importance = model.feature_importance()
    figures["feature_importance.png"] = importance_figure(importance)
    return JobResult(
        name="churn",
        model=model,
        split=split,
        metrics=metrics,
        gate_metric="test_average_precision",
        params={
            **_config_params(config),
            "best_iteration": model.best_iteration_,
            "calibration": model.calibration_.method,
            **_bgnbd_feature_params(model),
            **bgnbd_params,
        },
        rows={"train": len(X), "valid": len(Xv), "test": len(Xt)},
        figures=figures,
        importance=importance,
        input_example=Xt.head(5),
        seconds=time.perf_counter() - t0,
        fit_seconds=fit_seconds,
        test_X=Xt,
        test_y=yt,
    )


def _calibration_metrics(model: ChurnModel) -> dict[str, float]:
    """The validation comparison of calibrations: ``valid_calibration_<method>_<metric>``."""
    table = model.calibration_table_
    if table is None:
        return {}
    return {
        f"valid_calibration_{method}_{metric}": float(value)
        for method, row in table.iterrows()
        for metric, value in row.items()
    }


def _bgnbd_feature_params(model: ChurnModel) -> dict[str, object]:
    """The BG/NBD step's stored parameters (fitted on the training rows), if any."""
    params = model.bgnbd_.params_ if model.bgnbd_ is not None else None
    return {f"bgnbd_features_{k}": round(v, 6) for k, v in (params or {}).items()}


def _most_used(X: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Baseline: the channel with the largest share of the customer's engagements."""
    cols = [f"share_engagements_{c}" for c in classes]
    shares = X.reindex(columns=cols).fillna(0.0).to_numpy()
    return np.asarray(classes, dtype=object)[shares.argmax(axis=1)]


def _last_used(X: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Baseline: the channel the customer used most recently."""
    cols = [f"days_since_last_{c}" for c in classes]
    days = X.reindex(columns=cols).to_numpy(dtype=np.float64)
    days = np.where(np.isnan(days), np.inf, days)
    return np.asarray(classes, dtype=object)[days.argmin(axis=1)]


def train_next_channel(
    events: pd.DataFrame, customers: pd.DataFrame, config: JobConfig = JobConfig()
) -> JobResult:
    """Next best channel: multiclass LightGBM vs most-used and last-used channel baselines,
    all scored after consent (the same rule scoring applies)."""
    t0 = time.perf_counter()
    label = partial(
        next_channel_labels,
        horizon_days=config.horizon_days,
        attribution_days=config.attribution_days,
    )
    split, (X, y), (Xv, yv), (Xt, yt) = _datasets(events, customers, config, label, "channel")
    fit_start = time.perf_counter()
    model = NextChannelModel(params=config.params, random_state=config.seed).fit(
        X, y.to_numpy(), Xv, yv.to_numpy()
    )
    fit_seconds = time.perf_counter() - fit_start
    classes = list(model.classes_)
    proba = apply_consent(model.predict_proba_frame(Xt), customers)
    metrics = _prefixed("", channel_metrics(yt.to_numpy(), proba))
    for name, pick in {
        "most_used": _most_used(Xt, classes),
        "last_used": _last_used(Xt, classes),
    }.items():
        table = apply_consent(one_hot_choice(pick, classes, Xt.index), customers)
        metrics |= _prefixed(f"baseline_{name}_", channel_metrics(yt.to_numpy(), table))
    predicted = np.asarray(proba.columns, dtype=object)[proba.to_numpy().argmax(axis=1)]
    per_class = _prefixed("", class_metrics(yt.to_numpy(), predicted, classes))
    importance = model.feature_importance()
    figures = {
        "confusion_matrix.png": confusion_figure(yt.to_numpy(), predicted, classes),
        "feature_importance.png": importance_figure(importance),
    }
    return JobResult(
        name="next_best_channel",
        model=model,
        split=split,
        metrics=metrics,
        gate_metric="test_accuracy",
        params={
            **_config_params(config),
            "classes": ",".join(classes),
            "best_iteration": model.best_iteration_,
        },
        rows={"train": len(X), "valid": len(Xv), "test": len(Xt)},
        figures=figures,
        importance=importance,
        input_example=Xt.head(5),
        seconds=time.perf_counter() - t0,
        fit_seconds=fit_seconds,
        test_X=Xt,
        test_y=yt,
        class_metrics=per_class,
    )


def holdout_metrics(result: JobResult, predictions: pd.DataFrame) -> dict[str, float]:
    """The test metrics the job logs for its own model (``test_<metric>``), computed from
    any model's pyfunc predictions on this result's test cutoff (e.g. the champion's)."""
    y = result.test_y.to_numpy()
    if result.name == "churn":
        proba = predictions["churn_probability"].to_numpy()
        return _prefixed("", churn_metrics(y, proba, probability=True))
    return _prefixed("", channel_metrics(y, predictions))


def gate_value(result: JobResult, predictions: pd.DataFrame) -> float:
    """The gate metric of any model's pyfunc predictions on this result's test cutoff."""
    return holdout_metrics(result, predictions)[result.gate_metric]


def _config_params(config: JobConfig) -> dict[str, object]:
    return {
        "lookback_days": config.lookback_days,
        "horizon_days": config.horizon_days,
        "n_train_cutoffs": config.n_train_cutoffs,
        "step_days": config.step_days,
        "attribution_days": config.attribution_days,
        "seed": config.seed,
    }
