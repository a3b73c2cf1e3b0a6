"""The one-request forms of the answer rules equal their array forms (issue 21: a request
builds its answer from Python values, batch scoring from arrays)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from serving.rules import RISK_BANDS, band_of, channel_ranking, risk_band

BOUNDS = [b for b, _ in RISK_BANDS]


@given(st.one_of(st.floats(0, 1), st.sampled_from([*BOUNDS, 0.0, 1.0, float("nan")])))
def test_band_of_one_probability_equals_the_array_form(p):
    assert band_of(p) == risk_band(np.array([p]))[0]


def test_band_of_names_each_band():
    assert [band_of(p) for p in (0.1, 0.3, 0.45, 0.6, 0.99, float("nan"))] == [
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "unknown",
    ]


@given(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.65]), min_size=1, max_size=6))
def test_channel_ranking_is_best_first_ties_in_class_order_consented_only(values):
    proba = np.array(values)
    classes = [f"c{j}" for j in range(len(values))]
    order = np.argsort(-proba, kind="stable")  # the array reference
    expected = [(classes[j], float(proba[j])) for j in order if proba[j] > 0]
    assert channel_ranking(proba, classes) == expected


def test_channel_ranking_of_an_unknown_customer_is_empty():
    assert channel_ranking(np.array([np.nan, np.nan]), ["web", "app"]) == []
