"""A new model next to the champion on the same holdout (training/customer_models/compare.py),
and the gate's decision afterwards agreeing with it (issue 6: the retraining notebook)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from features.sources.synthetic import generate
from features.store.identity import resolve_identities
from training.customer_models.compare import NEW, compare_with_champion
from training.customer_models.job import JobConfig, train_churn
from training.runner import log_and_register

pytestmark = pytest.mark.slow

CONFIG = JobConfig(seed=3, n_train_cutoffs=2, params={"n_estimators": 100})


@pytest.fixture(scope="module")
def data():
    source = generate(n_customers=600, days=400, seed=8)
    events, _ = resolve_identities(source.events)
    return events, source.customers


def test_compare_then_gate(mlflow_settings, data):
    events, customers = data
    first = train_churn(events, customers, CONFIG)
    alone = compare_with_champion(mlflow_settings, first)
    assert alone.champion is None and alone.new_is_better is None
    # Issue 16: the BG/NBD customer-base model is a churn baseline too.
    baselines = ["baseline bgnbd", "baseline frequency", "baseline recency"]
    assert list(alone.table.index) == [NEW, *baselines]
    assert alone.table.loc[NEW, "average_precision"] == first.metrics["test_average_precision"]
    assert pd.isna(alone.table.loc["baseline recency", "brier"])  # a score, not a probability
    assert log_and_register(mlflow_settings, first, events).decision.promoted

    # A challenger with other hyperparameters: the champion is re-scored on its holdout,
    # which here is the same one, so the champion's row repeats its own logged metrics.
    params = {"n_estimators": 100, "num_leaves": 7, "min_child_samples": 10}
    new = train_churn(events, customers, replace(CONFIG, params=params))
    comparison = compare_with_champion(mlflow_settings, new)
    assert comparison.champion == 1
    champion = comparison.table.loc["champion v1"]
    for metric in ("roc_auc", "average_precision", "brier", "log_loss"):
        assert champion[metric] == pytest.approx(first.metrics[f"test_{metric}"])
    decision = log_and_register(mlflow_settings, new, events).decision
    assert decision.promoted == comparison.new_is_better
    assert "(re-scored on this holdout)" in decision.reason
    assert f"champion v1 {champion['average_precision']:.4g}" in decision.reason
