"""Per-class precision, recall and support of the next-best-channel model's top pick
(issue 19), on labels small enough to count by hand."""

from __future__ import annotations

import numpy as np

from training.customer_models.evaluation import class_metrics


def test_per_class_precision_recall_and_support_by_hand():
    y = np.array(["email", "email", "sms", "web", "push"], dtype=object)
    picked = np.array(["email", "sms", "sms", "email", "sms"], dtype=object)
    got = class_metrics(y, picked, ["email", "push", "sms"])  # "web": a class the model lacks
    assert got == {
        "precision_email": 0.5,  # picked twice, right once (the "web" row is a miss)
        "precision_push": 0.0,  # never picked: 0, not NaN
        "precision_sms": 1 / 3,
        "recall_email": 0.5,
        "recall_push": 0.0,
        "recall_sms": 1.0,
        "support_email": 2.0,
        "support_push": 1.0,
        "support_sms": 1.0,
    }
