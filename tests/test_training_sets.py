"""Rolling training snapshots: each cutoff equals its own single build (issue 3)."""

from __future__ import annotations

import pandas as pd
import pytest
from feature_frames import AS_OF, random_log

from features.customer_features import build_customer_features
from features.training_sets import build_training_sets


def test_each_snapshot_is_its_own_as_of_build():
    events, customers = random_log(7)
    cutoffs = [AS_OF - pd.Timedelta(days=d) for d in (60, 30, 0)]
    snaps = build_training_sets(events, customers, [str(t) for t in reversed(cutoffs)])
    assert snaps.columns[0] == "as_of"
    assert list(snaps["as_of"].unique()) == cutoffs  # sorted, each once
    for t in cutoffs:
        one = snaps[snaps["as_of"] == t].drop(columns="as_of")
        pd.testing.assert_frame_equal(one, build_customer_features(events, customers, t))


def test_needs_a_cutoff():
    events, customers = random_log(1)
    with pytest.raises(ValueError, match="at least one cutoff"):
        build_training_sets(events, customers, [])
