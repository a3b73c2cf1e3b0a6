"""The table `omni train` prints: the model and every baseline with all their test metrics
(issue 16: the CLI printed each baseline's gate metric only, not its ROC AUC)."""

from __future__ import annotations

import numpy as np

from training.customer_models.evaluation import comparison_table


def test_model_and_each_baseline_with_every_metric():
    metrics = {
        "test_roc_auc": 0.8,
        "test_average_precision": 0.6,
        "test_brier": 0.15,
        "test_positive_rate": 0.3,
        "baseline_recency_test_roc_auc": 0.7,
        "baseline_recency_test_average_precision": 0.5,
        "baseline_bgnbd_test_roc_auc": 0.75,
        "baseline_bgnbd_test_average_precision": 0.55,
        "valid_log_loss": 0.4,
    }
    table = comparison_table(metrics)
    assert list(table.index) == ["model", "recency", "bgnbd"]
    assert list(table.columns) == ["roc_auc", "average_precision", "brier"]
    assert table.loc["bgnbd", "roc_auc"] == 0.75
    assert table.loc["model", "brier"] == 0.15
    assert np.isnan(table.loc["recency", "brier"])  # a baseline's score is no probability
