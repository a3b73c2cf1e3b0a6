"""Churn and next-best-channel jobs on synthetic data: beat their baselines, recover the
planted structure, and reproduce exactly with the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract.consent import apply_consent
from features.sources.synthetic import generate
from features.store.identity import resolve_identities
from training.customer_models.job import JobConfig, train_churn, train_next_channel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic():
    data = generate(n_customers=3000, days=365, seed=5)
    events, _ = resolve_identities(data.events)
    return data, events


@pytest.fixture(scope="module")
def churn(synthetic):
    data, events = synthetic
    return train_churn(events, data.customers, JobConfig(seed=1))


@pytest.fixture(scope="module")
def channel(synthetic):
    data, events = synthetic
    return train_next_channel(events, data.customers, JobConfig(seed=1))


def test_churn_beats_both_heuristics(churn):
    m = churn.metrics
    for metric in ("roc_auc", "average_precision"):
        for baseline in ("recency", "frequency"):
            assert m[f"test_{metric}"] > m[f"baseline_{baseline}_test_{metric}"] + 0.01, (
                metric,
                baseline,
                m,
            )
    assert set(churn.figures) >= {"roc.png", "precision_recall.png", "calibration.png"}


def test_churn_logs_the_bgnbd_baseline(churn):
    # Issue 16: BG/NBD (fitted at the test cutoff) is scored on the same holdout; on this
    # data it reads the whole purchase history, so it beats recency alone (measured: AP
    # 0.63 vs 0.50), and the model is compared with it.
    m = churn.metrics
    assert m["baseline_bgnbd_test_average_precision"] > m["baseline_recency_test_average_precision"]
    assert churn.params["bgnbd_churn_score"] in {"1 - p_alive", "-expected_purchases"}
    assert all(churn.params[f"bgnbd_{k}"] > 0 for k in ("r", "alpha", "a", "b"))
    assert m["test_average_precision"] > m["baseline_bgnbd_test_average_precision"]


def test_churn_calibration_keeps_the_booster_ranking(churn):
    # Issue 16: calibration chosen on validation (none / sigmoid / isotonic, cross-fitted)
    # among the methods that keep the ranking; on the test cutoff the calibrated model's
    # AUC and AP are not below the raw booster's. The comparison and choice are logged.
    m, p = churn.metrics, churn.params
    assert p["calibration"] in {"none", "sigmoid", "isotonic"}
    for metric in ("roc_auc", "average_precision"):
        assert m[f"test_{metric}"] >= m[f"raw_booster_test_{metric}"] - 1e-9
        for method in ("none", "sigmoid", "isotonic"):
            assert f"valid_calibration_{method}_{metric}" in m
    assert m[f"valid_calibration_{p['calibration']}_keeps_ranking"] == 1.0
    # the BG/NBD step inside the model: its parameters, fitted on the training cutoffs
    assert all(p[f"bgnbd_features_{k}"] > 0 for k in ("r", "alpha", "a", "b"))
    assert "bgnbd_expected_purchases" in churn.importance.index


def test_churn_is_calibrated_on_the_test_cutoff(churn, synthetic):
    # Calibrated on the validation cutoff only; on the untouched test cutoff the mean
    # predicted probability should still be close to the observed churn rate.
    m = churn.metrics
    assert m["test_brier"] < m["test_positive_rate"] * (1 - m["test_positive_rate"])


def test_channel_beats_baselines_on_labels(channel):
    m = channel.metrics
    for baseline in ("most_used", "last_used"):
        # Measured: model 0.79, most-used 0.76, last-used 0.64 on this data.
        assert m["test_accuracy"] > m[f"baseline_{baseline}_test_accuracy"] + 0.015, m


def test_channel_per_class_metrics_are_sklearns_on_its_top_pick(channel, synthetic):
    # issue 19: precision, recall and support per channel of the consented top pick
    from sklearn.metrics import precision_recall_fscore_support

    data, _ = synthetic
    classes = list(channel.model.classes_)
    proba = apply_consent(channel.model.predict_proba_frame(channel.test_X), data.customers)
    picked = proba.columns.to_numpy()[proba.to_numpy().argmax(axis=1)]
    y = channel.test_y.to_numpy()
    p, r, _, n = precision_recall_fscore_support(y, picked, labels=classes, zero_division=0)
    got = channel.class_metrics
    assert len(classes) > 2 and len(got) == 3 * len(classes)
    for c, *expected in zip(classes, p, r, n, strict=True):
        assert [got[f"test_{m}_{c}"] for m in ("precision", "recall", "support")] == expected
    assert sum(got[f"test_support_{c}"] for c in classes) == np.isin(y, classes).sum()
    assert not set(got) & set(channel.metrics)  # kept out of the comparison tables


def test_channel_recovers_the_planted_best_channel(channel, synthetic):
    """Against ground truth (not labels): the model's top channel is the planted best
    channel far more often than either baseline's pick."""
    data, events = synthetic
    truth = data.truth["customers"].set_index("customer_id")["best_channel"]
    from features.labels import next_channel_labels
    from training.customer_models.job import _last_used, _most_used
    from training.customer_models.labelled_sets import labelled_sets

    t = channel.split.test
    X, _ = labelled_sets(events, data.customers, [t], next_channel_labels, "channel")[t]
    X = X.loc[X.index.intersection(truth.index)]
    classes = list(channel.model.classes_)
    proba = apply_consent(channel.model.predict_proba_frame(X), data.customers)
    picks = {
        "model": np.asarray(classes, object)[proba.to_numpy().argmax(axis=1)],
        "most_used": _most_used(X, classes),
        "last_used": _last_used(X, classes),
    }
    hit = {k: float((v == truth.loc[X.index].to_numpy()).mean()) for k, v in picks.items()}
    # Measured at this size: model 0.88, most-used 0.84, last-used 0.64. Most-used is
    # strong here because planted affinity drives engagement shares directly.
    assert hit["model"] > max(hit["most_used"], hit["last_used"]) + 0.02, hit
    assert hit["model"] > 0.8, hit


def test_same_seed_same_metrics(synthetic, churn):
    data, events = synthetic
    again = train_churn(events, data.customers, JobConfig(seed=1))
    assert again.metrics == churn.metrics
    pd.testing.assert_series_equal(again.importance, churn.importance)
