"""The training plots are headless figures: making them leaves matplotlib's backend alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.customer_models.evaluation import churn_figures, confusion_figure, importance_figure


def test_figures_do_not_switch_the_backend(monkeypatch):
    """Regression (issue 6): matplotlib.use("Agg") in the plots switched a notebook kernel
    from its inline backend, so the retraining notebook showed no plots after a training."""
    import matplotlib

    def switch(backend, *args, **kwargs):
        raise AssertionError(f"the plots switched matplotlib's backend to {backend}")

    monkeypatch.setattr(matplotlib, "use", switch)
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.9, 0.2, 0.7, 0.6, 0.3])
    figures = [
        *churn_figures(y, p, {"recency": p[::-1]}).values(),
        confusion_figure(np.array(["web", "store"]), np.array(["web", "web"]), ["web", "store"]),
        importance_figure(pd.Series([3.0, 1.0], index=["a", "b"])),
    ]
    for fig in figures:
        assert fig.canvas.manager is None  # not held by pyplot's global figure list
