"""The training jobs by name, their registered models and default windows.

Kept free of heavy imports: the command line reads it to build `omni train --help`.
"""

from __future__ import annotations

REGISTERED_NAMES = {"churn": "churn", "channel": "next_best_channel"}
"""Per-customer job (`omni train churn|channel`) -> its registered model's name."""
CUSTOMER_JOBS: tuple[str, ...] = tuple(REGISTERED_NAMES)
"""The per-customer jobs, in the order `omni train all` runs them."""
RECS_HORIZON_DAYS = 14
"""The recommender's default evaluation / label window after its test cutoff, in days."""

MODEL_PURPOSES = {
    "churn": (
        "Churn risk: the probability that a customer who bought in the lookback window "
        "makes no purchase in the next horizon days (calibrated LightGBM on the customer "
        "feature table), for every customer with history."
    ),
    "next_best_channel": (
        "Next best channel: the probability that a customer's next conversion comes "
        "through each channel, channels without consent removed (multiclass LightGBM on "
        "the customer feature table), for every customer with history."
    ),
    "recommender": (
        "Product recommendations: candidates from implicit ALS, buy-again and store / "
        "region / channel popularity, re-ranked by a LightGBM lambdarank model, for every "
        "customer; popularity in context for customers without history."
    ),
}
"""What each registered model (and its training job's experiment) predicts, for whom: the
description MLflow shows on the experiment, the registered model and every version."""

WARN_ABOVE = 0.1
"""`omni monitor` prints every population stability index over this (worth a look)."""
FAIL_ABOVE = 0.25
"""`omni monitor` exits 1 when a population stability index is over this (shifted)."""
