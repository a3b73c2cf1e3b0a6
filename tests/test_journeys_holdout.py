"""Holdouts (issue 18): a stable salted hash share per customer, known answer, uniformity,
global and journey holdouts independent."""

from __future__ import annotations

import hashlib

import numpy as np

from serving.journeys.holdout import holdout_share, in_global_holdout, in_journey_holdout
from serving.journeys.spec import ContactPolicy, Journey

IDS = np.array([f"c{i}" for i in range(100_000)], dtype=object)


def _journey(name: str, holdout: float) -> Journey:
    return Journey(name=name, trigger={"kind": "churn_risk"}, holdout=holdout)


def test_known_value_computed_by_hand():
    digest = hashlib.blake2b(b"salt\x1fcustomer-42", digest_size=8).digest()
    expected = int.from_bytes(digest, "big") / 2**64
    got = holdout_share(["customer-42", "other"], "salt")
    assert got.dtype == np.float64
    assert got[0] == expected


def test_stable_and_salted():
    first = holdout_share(IDS[:1000], "a")
    assert np.array_equal(first, holdout_share(list(IDS[:1000]), "a"))
    other = holdout_share(IDS[:1000], "b")
    assert not np.array_equal(first < 0.1, other < 0.1)
    assert ((first >= 0) & (first < 1)).all()


def test_share_is_uniform():
    share = holdout_share(IDS, "omni-journeys")
    assert abs((share < 0.1).mean() - 0.1) < 0.005
    assert abs((share < 0.5).mean() - 0.5) < 0.01


def test_global_and_journey_holdouts_are_independent():
    policy = ContactPolicy(global_holdout=0.2)
    glob = in_global_holdout(IDS, policy)
    journey = in_journey_holdout(IDS, policy, _journey("win_back", 0.3))
    assert abs(glob.mean() - 0.2) < 0.005
    assert abs(journey.mean() - 0.3) < 0.006
    assert abs((glob & journey).mean() - 0.2 * 0.3) < 0.004
    # two journeys' holdouts are independent of each other too
    other = in_journey_holdout(IDS, policy, _journey("cross_sell", 0.3))
    assert abs((other & journey).mean() - 0.09) < 0.005


def test_journey_salt_is_policy_salt_and_name():
    policy = ContactPolicy(holdout_salt="s")
    expected = holdout_share(IDS[:50], "s/cart") < 0.5
    assert np.array_equal(in_journey_holdout(IDS[:50], policy, _journey("cart", 0.5)), expected)
