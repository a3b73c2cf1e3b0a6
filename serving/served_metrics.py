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
versions), so the metrics stay bounded. A request only notes what it served (~1 µs); the
notes become counter increments in one go every :data:`COUNT_EVERY_S`, before ``/metrics``
answers, and every :data:`FLUSH_AT` answers (issue 21: the increments, each a lock and a
write to Prometheus' multiprocess file, cost ~9 µs of a /recommend answer).
"""

from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from training.recs.candidates import REASONS

NAMESPACE = "omni"
COUNT_EVERY_S = 1.0
"""How often a worker's notes reach its counters (a scrape of this worker flushes first)."""
FLUSH_AT = 1024
"""Notes from which an answer flushes them itself (bounds the memory they hold)."""


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
    """The counters of one worker, with their children cached, and the notes of the
    answers not yet counted. Used from the worker's event loop only."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, bool], object] = {}
        self._items = [_metrics().items.labels(reason) for reason in REASONS]
        self._served: dict[str, str] = {}
        self._built: float | None = None
        self._notes: list[tuple[str, int, int, np.ndarray]] = []

    def answered(self, endpoint: str, cold: np.ndarray, reasons: np.ndarray) -> None:
        """Note the customers of one answer (``cold``: bool per customer) and its items'
        reasons (codes into ``REASONS``); counted at the next :meth:`flush`."""
        self._notes.append((endpoint, int(np.count_nonzero(cold)), len(cold), reasons.copy()))
        if len(self._notes) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Count the noted answers: one increment per counter they touched."""
        notes, self._notes = self._notes, []
        if not notes:
            return
        customers: dict[tuple[str, bool], int] = {}
        for endpoint, n_cold, n, _reasons in notes:
            customers[endpoint, True] = customers.get((endpoint, True), 0) + n_cold
            customers[endpoint, False] = customers.get((endpoint, False), 0) + n - n_cold
        for (endpoint, is_cold), count in customers.items():
            if count:
                self._answer(endpoint, is_cold).inc(count)
        reasons = np.concatenate([note[3] for note in notes]).astype(np.int64)
        for code, count in enumerate(np.bincount(reasons, minlength=len(REASONS)).tolist()):
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
        """Bring the counters and the snapshot's age up to date (called before
        ``/metrics`` answers)."""
        self.flush()
        if self._built is not None:
            _metrics().age.set(max(time.time() - self._built, 0.0))


@functools.cache
def served() -> ServedMetrics:
    """This worker's :class:`ServedMetrics`, created at first use: after start-up, once
    BentoML has set up Prometheus' multiprocess mode in the worker."""
    return ServedMetrics()
