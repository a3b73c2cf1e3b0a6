"""The served metrics' notes (issue 21): counted at a flush, a scrape or FLUSH_AT answers."""

import numpy as np
from prometheus_client import REGISTRY

from serving import served_metrics
from serving.served_metrics import ServedMetrics
from training.recs.candidates import REASONS


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"omni_{name}_total", labels) or 0.0


def test_answers_are_counted_at_the_flush_not_before():
    metrics = ServedMetrics()
    before_warm = _count("answers", endpoint="/t1", customer="warm")
    before_cold = _count("answers", endpoint="/t1", customer="cold")
    before_items = [_count("items_served", reason=r) for r in REASONS]
    reasons = np.array([0, 0, 1], np.int8)
    metrics.answered("/t1", np.array([False, True, False]), reasons)
    reasons[:] = 2  # the answer's array reused: the note kept its own copy
    metrics.answered("/t1", np.array([True]), np.zeros(0, np.int8))
    assert _count("answers", endpoint="/t1", customer="warm") == before_warm
    metrics.scraped()
    assert _count("answers", endpoint="/t1", customer="warm") == before_warm + 2
    assert _count("answers", endpoint="/t1", customer="cold") == before_cold + 2
    after_items = [_count("items_served", reason=r) for r in REASONS]
    grew = [a - b for a, b in zip(after_items, before_items, strict=True)]
    assert grew[:3] == [2, 1, 0] and sum(grew) == 3
    metrics.flush()  # nothing noted since: nothing counted twice
    assert _count("answers", endpoint="/t1", customer="warm") == before_warm + 2


def test_flush_at_bounds_the_notes(monkeypatch):
    monkeypatch.setattr(served_metrics, "FLUSH_AT", 3)
    metrics = ServedMetrics()
    before = _count("answers", endpoint="/t2", customer="warm")
    for _ in range(2):
        metrics.answered("/t2", np.array([False]), np.zeros(0, np.int8))
    assert _count("answers", endpoint="/t2", customer="warm") == before
    metrics.answered("/t2", np.array([False]), np.zeros(0, np.int8))
    assert _count("answers", endpoint="/t2", customer="warm") == before + 3
