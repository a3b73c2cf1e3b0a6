"""What the service served, as Prometheus metrics beside the request metrics
(:mod:`serving.request_metrics`), on the same ``/metrics``:

- ``omni_answers_total{endpoint, customer}``: customers answered by the scoring endpoints,
  ``customer`` "warm" (the answering model knows their history) or "cold" (it does not:
  popularity for /recommend, no prediction for /churn_risk);
- ``omni_items_served_total{reason}``: recommended products served, by reason;
- ``omni_model_info{model, version}``: 1 for each model version being served (0 for one
  served before a snapshot switch, in this worker);
- ``omni_snapshot_age_seconds``: since the served snapshot was built (set when scraped).

Label values come from fixed sets (endpoints, two customer kinds, the reasons, model
versions), so the metrics stay bounded. Children are looked up once: a request adds a few
µs (three counter increments at most).
"""

from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from training.recs.candidates import REASONS

NAMESPACE = "omni"


@functools.cache
def _metrics() -> SimpleNamespace:
    """Created once per process (prometheus_client registers them globally)."""
    from prometheus_client import Counter, Gauge

    return SimpleNamespace(
        answers=Counter(
            "answers",
            "Customers answered, by endpoint and customer (warm: known history, cold: none)",
            ("endpoint", "customer"),
            namespace=NAMESPACE,
        ),
        items=Counter(
            "items_served",
            "Recommended products served, by reason",
            ("reason",),
            namespace=NAMESPACE,
        ),
        model=Gauge(
            "model_info",
            "Model versions being served (1) or served before a snapshot switch (0)",
            ("model", "version"),
            namespace=NAMESPACE,
            multiprocess_mode="livemax",
        ),
        age=Gauge(
            "snapshot_age_seconds",
            "Seconds since the served snapshot was built",
            namespace=NAMESPACE,
            multiprocess_mode="livemin",
        ),
    )


class ServedMetrics:
    """The counters of one worker, with their children cached."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, bool], object] = {}
        self._items = [_metrics().items.labels(reason) for reason in REASONS]
        self._served: dict[str, str] = {}
        self._built: float | None = None

    def answered(self, endpoint: str, cold: np.ndarray, reasons: np.ndarray) -> None:
        """Count the customers of one answer (``cold``: bool per customer) and its items'
        reasons (codes into ``REASONS``)."""
        n_cold = int(np.count_nonzero(cold))
        for is_cold, count in ((True, n_cold), (False, len(cold) - n_cold)):
            if count:
                self._answer(endpoint, is_cold).inc(count)
        if len(reasons):
            counts = np.bincount(reasons, minlength=len(REASONS)).tolist()
            for code, count in enumerate(counts):
                if count:
                    self._items[code].inc(count)

    def _answer(self, endpoint: str, cold: bool):
        key = (endpoint, cold)
        if key not in self._answers:
            kind = "cold" if cold else "warm"
            self._answers[key] = _metrics().answers.labels(endpoint, kind)
        return self._answers[key]

    def serving(self, versions: dict[str, str], created: str | None) -> None:
        """The snapshot now served: its models' versions and its build time (ISO)."""
        model = _metrics().model
        for name, version in self._served.items():
            if versions.get(name) != version:
                model.labels(name, version).set(0)
        for name, version in versions.items():
            model.labels(name, version).set(1)
        self._served = dict(versions)
        self._built = pd.Timestamp(created).timestamp() if created else None
        self.scraped()

    def scraped(self) -> None:
        """Bring the snapshot's age up to date (called before ``/metrics`` answers)."""
        if self._built is not None:
            _metrics().age.set(max(time.time() - self._built, 0.0))


@functools.cache
def served() -> ServedMetrics:
    """This worker's :class:`ServedMetrics`, created at first use: after start-up, once
    BentoML has set up Prometheus' multiprocess mode in the worker."""
    return ServedMetrics()
