"""Known-answer tests of the recommendation metrics and the holdout construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.recs.data import History
from training.recs.evaluate import (
    Holdout,
    coverage,
    hit_matrix,
    metrics_at_k,
    metrics_by_k,
)


def _keys(rows_items: dict[int, list[int]], n_items: int) -> np.ndarray:
    return np.sort(np.array([r * n_items + i for r, items in rows_items.items() for i in items]))


def test_metrics_by_hand():
    n_items = 10
    recs = np.array([[1, 2, 3], [4, 5, 6]])
    truth = _keys({0: [1, 3], 1: [7]}, n_items)
    hits = hit_matrix(recs, truth, n_items)
    assert hits.tolist() == [[True, False, True], [False, False, False]]
    m = metrics_at_k(hits, np.array([2, 1]), k=3)
    assert m["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall"] == pytest.approx((1.0 + 0) / 2)
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg"] == pytest.approx(ndcg0 / 2)
    assert m["map"] == pytest.approx(((1 / 1 + 2 / 3) / 2) / 2)
    assert m["hit_rate"] == pytest.approx(0.5)


def test_ideal_list_scores_one_and_k_caps_the_ideal():
    n_items = 5
    recs = np.array([[0, 1, 2]])
    truth = _keys({0: [0, 1, 2, 3, 4]}, n_items)  # 5 relevant, only 3 slots
    m = metrics_at_k(hit_matrix(recs, truth, n_items), np.array([5]), k=3)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(3 / 5)


def test_empty_slots_never_hit_and_customers_without_purchases_are_skipped():
    n_items = 4
    # row 1's empty slot (-1) would alias row 0's item 3 if keys were not masked
    recs = np.array([[3, -1], [-1, 2]])
    truth = _keys({0: [3], 1: [2]}, n_items)
    hits = hit_matrix(recs, truth, n_items)
    assert hits.tolist() == [[True, False], [False, True]]
    m = metrics_at_k(hits, np.array([1, 1, 0])[:2], k=2)
    assert m["hit_rate"] == 1.0
    m2 = metrics_at_k(np.vstack([hits, [[False, False]]]), np.array([1, 1, 0]), k=2)
    assert m2 == m  # the third customer bought nothing: not in the population


def test_shorter_lists_count_missing_slots_as_misses():
    hits = np.array([[True]])
    m = metrics_at_k(hits, np.array([1]), k=4)
    assert m["precision"] == pytest.approx(0.25)
    assert m["ndcg"] == pytest.approx(1.0)


def test_metrics_by_k_and_coverage():
    n_items = 10
    recs = np.array([[1, 2], [2, 9]])
    hits = hit_matrix(recs, _keys({0: [2], 1: [2]}, n_items), n_items)
    by_k = metrics_by_k(hits, np.array([1, 1]), k_max=2)
    assert by_k["k"].tolist() == [1, 2]
    assert by_k["hit_rate"].tolist() == [0.5, 1.0]
    assert by_k["precision"].tolist() == [0.5, 0.5]
    assert coverage(recs, n_catalogue=6) == pytest.approx(3 / 6)


def test_holdout_by_hand():
    ts = pd.to_datetime(
        ["2025-01-01", "2025-01-05", "2025-01-12", "2025-01-13", "2025-01-14", "2025-02-20"],
        utc=True,
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "c", "a"],
            "ts": ts,
            "channel": "store",
            "event_type": ["purchase", "view", "purchase", "purchase", "view", "purchase"],
            "product_id": ["p1", "p2", "p1", "p3", "p1", "p9"],
        }
    )
    h = History.from_frames(events)
    hold = Holdout.build(h, "2025-01-10", horizon_days=14)
    # window [Jan 10, Jan 24): a bought p1 (bought before), b bought p3 (new); c only viewed
    assert hold.customer_ids.tolist() == ["a", "b"]
    prior = hold.prior_frame()
    assert prior.values.tolist() == [["a", "p1"]]
    n = h.catalogue.n_items
    truth = {(k // n, h.catalogue.item_ids[k % n]) for k in hold.truth_keys}
    assert truth == {(0, "p1"), (1, "p3")}
