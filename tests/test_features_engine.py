"""The plain-numpy feature engine (issue 15): registry computations over
CustomerActivity, aggregates freed after their last reader, order ids on a second thread.

The values themselves are checked against the plain-pandas reference in
test_features_customer.py; these tests check that the engine's own moving parts never
change a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feature_frames import AS_OF, random_log
from hypothesis import given, settings
from hypothesis import strategies as st

from features.customer_activity import CustomerActivity
from features.customer_features import build_customer_features, features_from_encoded
from features.cut import cut
from features.encode import encode_events
from features.registry import DEFAULT_WINDOWS, customer_features


@pytest.fixture(scope="module")
def log() -> tuple[pd.DataFrame, pd.DataFrame]:
    return random_log(11, n=3000, n_customers=120)


def _activity(log) -> CustomerActivity:
    events, customers = log
    return CustomerActivity(cut(encode_events(events, customers), AS_OF, DEFAULT_WINDOWS))


def test_freeing_aggregates_changes_no_value(log, monkeypatch):
    """Aggregates are freed after their last reader; keeping them all gives the same table."""
    freed = build_customer_features(*log, AS_OF)
    monkeypatch.setattr(CustomerActivity, "forget", lambda self, keys: None)
    pd.testing.assert_frame_equal(build_customer_features(*log, AS_OF), freed, check_exact=True)


def test_an_aggregate_read_after_it_was_freed_is_computed_again(log):
    x = _activity(log)
    first = x.count("view", within=30).copy()
    x.forget(list(x._cache))
    assert not x._cache
    assert (x.count("view", within=30) == first).all()


def test_every_registry_feature_gives_one_value_per_customer(log):
    x = _activity(log)
    for f in customer_features():
        values = f.compute(x)
        assert values.shape == (x.n,), f.name
        assert values.astype(f.dtype).shape == (x.n,), f.name


def test_order_ids_encoded_later_or_on_the_second_thread_give_one_table(log):
    events, customers = log
    now = features_from_encoded(encode_events(events, customers), AS_OF)
    later = features_from_encoded(encode_events(events, customers, order_ids=False), AS_OF)
    pd.testing.assert_frame_equal(later, now, check_exact=True)


def test_unknown_names_and_windows_are_clear_errors(log):
    x = _activity(log)
    with pytest.raises(ValueError, match="unknown \\['vist'\\]"):
        x.count("vist")
    with pytest.raises(ValueError, match="unknown \\['fax'\\]"):
        x.count("view", channels=("fax",))
    with pytest.raises(ValueError, match="no 14-day window"):
        x.count("view", within=14)
    with pytest.raises(ValueError, match="per window or per channel, not both"):
        x.count("view", within=30, channels=("web",))


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(-3, 3), st.integers(-(2**62), 2**62) | st.integers(0, 3)),
        max_size=40,
    )
)
def test_pair_codes_equal_numpys_row_wise_unique(pairs):
    # the orders of lines without an order_id: one lexsort instead of np.unique(axis=0)
    from features.encode import pair_codes

    first = np.array([p[0] for p in pairs], np.int32)
    second = np.array([p[1] for p in pairs], np.int64)
    expected = (
        np.unique(np.stack([first, second], axis=1), axis=0, return_inverse=True)[1].ravel()
        if pairs
        else np.zeros(0, np.int64)
    )
    assert np.array_equal(pair_codes(first, second), expected)
