"""The live events' index by customer answers as a scan of every live event would."""

import numpy as np
import pandas as pd
import pytest

from serving.live.since_fold import NO_EVENTS, EventsSinceFold


def _batch(rng: np.random.Generator, first: int, n: int, customers: list[str]) -> pd.DataFrame:
    """``n`` live events of random ``customers`` (event ids ``first`` ..)."""
    columns = {
        "customer_id": pd.Series(rng.choice(customers, n), dtype="str"),
        "ts": pd.Series(pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC")),
        "event_id": pd.Series([f"e{first + i}" for i in range(n)], dtype="str"),
    }
    out = NO_EVENTS.reindex(range(n))
    for name, values in columns.items():
        out[name] = values
    out["event_type"] = pd.Categorical(["view"] * n, dtype=NO_EVENTS["event_type"].dtype)
    out["channel"] = pd.Categorical(["web"] * n, dtype=NO_EVENTS["channel"].dtype)
    return out


def _scanned(live: EventsSinceFold, customers: list[str]) -> pd.DataFrame:
    """What a scan of every live event gives."""
    return live.frame[live.frame["customer_id"].isin(customers).to_numpy()]


@pytest.fixture
def live() -> EventsSinceFold:
    rng = np.random.default_rng(7)
    customers = [f"c{i}" for i in range(30)]
    out = EventsSinceFold()
    for b in range(4):
        out.add(_batch(rng, 100 * b, 100, customers))
    return out


def test_a_customers_rows_are_those_a_scan_finds_in_the_same_order(live: EventsSinceFold) -> None:
    assert len(live) == 400
    for asked in (["c3"], ["c1", "c29", "c7"], ["nobody"], [], [f"c{i}" for i in range(30)]):
        pd.testing.assert_frame_equal(live.of(asked), _scanned(live, asked))


def test_the_ids_taken_are_known(live: EventsSinceFold) -> None:
    known = live.known(pd.Series(["e0", "e399", "e400", "x"]))
    assert known.tolist() == [True, True, False, False]


def test_a_merged_customers_rows_become_the_new_owners(live: EventsSinceFold) -> None:
    before = {c: _scanned(live, [c])["event_id"].tolist() for c in ("c1", "c2", "c3")}
    dtype = live.frame["customer_id"].dtype
    live.relabel({"c1": "c2", "nobody": "c3"})
    live.relabel({"c2": "new-owner"})  # a code after a merge is not another customer's
    live.relabel({"new-owner": "c2"})
    assert live.of(["c1"]).empty
    assert sorted(live.of(["c2"])["event_id"]) == sorted(before["c1"] + before["c2"])
    assert live.of(["c3"])["event_id"].tolist() == before["c3"]
    pd.testing.assert_frame_equal(live.of(["c2"]), _scanned(live, ["c2"]))
    assert live.frame["customer_id"].dtype == dtype


def test_what_a_fold_leaves_is_the_events_after_it(live: EventsSinceFold) -> None:
    rest = live.after(250)
    assert len(rest) == 150
    assert rest.known(pd.Series(["e249", "e250", "e399"])).tolist() == [False, True, True]
    for asked in (["c3"], ["c1", "c29", "c7"]):
        expected = _scanned(live, asked)
        expected = expected[expected.index >= 250].reset_index(drop=True)
        pd.testing.assert_frame_equal(rest.of(asked).reset_index(drop=True), expected)
