"""Appends resolve identities against everything loaded before (issue 14): the identity
graph is kept with the store, and stored events whose customer a new link changes are
rewritten, so any split of a log into appends ends as one load of the whole log."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import omni
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract.schema import CUSTOMERS, EVENTS, PRODUCTS, STORES, empty_frame
from features.contract.validate import validate_frame
from features.sources.base import SourceData
from features.store.events import read_events, store_events
from features.store.identity import resolve_identities

ID_COLUMNS = ["customer_id", "email_hash", "device_id", "loyalty_id", "phone_hash"]
T0 = pd.Timestamp("2025-01-01", tz="UTC")


def _log(rows: list[dict], start: int = 0) -> pd.DataFrame:
    """Validated events, one a day from ``start`` (so that every row is distinct)."""
    raw = pd.DataFrame([{c: r.get(c) for c in ID_COLUMNS} for r in rows], columns=ID_COLUMNS)
    raw["ts"] = [(T0 + pd.Timedelta(days=start + i)).isoformat() for i in range(len(rows))]
    raw["channel"] = "web"
    raw["event_type"] = "view"
    return validate_frame(raw, EVENTS, "log").good


def _data(events: pd.DataFrame) -> SourceData:
    empty = {n: empty_frame(t) for n, t in (("customers", CUSTOMERS), ("products", PRODUCTS))}
    return SourceData(events=events, stores=empty_frame(STORES), **empty)


def _customer_by_ts(store: Path) -> dict:
    events = read_events(store, columns=["ts", "customer_id"])
    return dict(zip(events["ts"], events["customer_id"].astype(str), strict=True))


def test_an_append_joins_the_customer_the_store_links(tmp_path):
    # issue 14: an event with only email_hash=E9 got a fresh U… id on append although
    # the store already linked E9 to C9.
    store = tmp_path / "store"
    store_events(_data(_log([{"customer_id": "C9", "email_hash": "E9"}])), store, "replace", 25)
    result = store_events(_data(_log([{"email_hash": "E9"}], start=5)), store, "append", 25)
    assert result.n_added == 1
    assert sorted(_customer_by_ts(store).values()) == ["C9", "C9"]


def test_a_new_link_merges_stored_customers_and_rewrites_their_events(tmp_path):
    # issue 14: a link seen only in an append must move the stored events it joins.
    store = tmp_path / "store"
    old = _log(
        [
            {"device_id": "d1"},
            {"device_id": "d1"},
            {"email_hash": "e1", "loyalty_id": "l1"},
            {"customer_id": "C7", "email_hash": "e7"},  # untouched by the append
        ]
    )
    new = _log([{"customer_id": "C1", "device_id": "d1", "email_hash": "e1"}], start=40)
    store_events(_data(old), store, "replace", 25)
    before = _customer_by_ts(store)
    assert len(set(before.values())) == 3 and "C1" not in before.values()

    result = store_events(_data(new), store, "append", 25)
    assert result.n_restamped == 3 and result.n_parts_rewritten == 1
    after = _customer_by_ts(store)
    assert [after[t] for t in sorted(after)] == ["C1", "C1", "C1", "C7", "C1"]

    whole = tmp_path / "whole"
    store_events(_data(pd.concat([old, new], ignore_index=True)), whole, "replace", 25)
    assert _customer_by_ts(whole) == after


# A small world with the over-merge hazards: few CRM ids, e-mails, devices, cards and
# phones, so that shared devices and cards link several CRM customers (the guard cuts
# them) and components outgrow small size limits.
_ids = {
    "customer_id": st.sampled_from([None, None, None, "C0", "C1", "C2"]),
    "email_hash": st.sampled_from([None, None, "e0", "e1", "e2", "e3", "e4"]),
    "device_id": st.sampled_from([None, None, "d0", "d1", "tablet"]),
    "loyalty_id": st.sampled_from([None, None, None, "l0", "l1", "shop-card"]),
    "phone_hash": st.sampled_from([None, None, None, None, "p0", "p1"]),
}
_row = st.fixed_dictionaries(_ids).filter(lambda r: any(v is not None for v in r.values()))


@st.composite
def _split_log(draw):
    rows = draw(st.lists(_row, min_size=2, max_size=30))
    cuts = draw(st.lists(st.integers(1, len(rows) - 1), max_size=4, unique=True))
    return rows, sorted(cuts)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=_split_log(), limit=st.sampled_from([2, 3, 5, 25]))
def test_any_split_into_appends_equals_one_load(log, limit):
    # issue 14: appends saw only their own batch, so where a log was split changed who
    # its events belonged to.
    rows, cuts = log
    events = _log(rows)
    with tempfile.TemporaryDirectory() as tmp:
        whole, split = Path(tmp) / "whole", Path(tmp) / "split"
        store_events(_data(events), whole, "replace", limit)
        bounds = [0, *cuts, len(events)]
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            mode = "replace" if i == 0 else "append"
            store_events(_data(events.iloc[a:b]), split, mode, limit)
        expected = _customer_by_ts(whole)
        assert _customer_by_ts(split) == expected
    resolved, _ = resolve_identities(events, max_component_size=limit)
    assert dict(zip(events["ts"], resolved["customer_id"].astype(str), strict=True)) == expected


@pytest.mark.slow
def test_load_append_twice_skips_and_resolves_against_the_store(tmp_path):
    # issue 14: `omni data load --append` of the same file doubled the events, and an
    # event carrying only an e-mail the store knew got a customer of its own.
    first = tmp_path / "first"
    first.mkdir()
    rows = [
        {"customer_id": "C9", "email_hash": "E9", "ts": "2025-01-02T10:00:00Z"},
        {"customer_id": "C9", "ts": "2025-01-03T10:00:00Z"},
        {"customer_id": "C5", "ts": "2025-01-03T10:00:00Z"},
    ]
    pd.DataFrame(rows).assign(channel="web", event_type="view").to_csv(
        first / "events.csv", index=False
    )
    second = tmp_path / "second"
    second.mkdir()
    more = [*rows, {"email_hash": "E9", "ts": "2025-01-09T10:00:00Z"}]
    pd.DataFrame(more).assign(channel="app", event_type="view").iloc[[3]].pipe(
        lambda new: pd.concat([pd.read_csv(first / "events.csv"), new])
    ).to_csv(second / "events.csv", index=False)
    home = tmp_path / "home"

    assert omni("data", "load", str(first), home=home).returncode == 0
    again = omni("data", "load", str(first), "--append", home=home)
    assert again.returncode == 0, again.stderr
    assert "appended 0 events; skipped 3 already in the store" in again.stdout
    more_run = omni("data", "load", str(second), "--append", home=home)
    assert more_run.returncode == 0, more_run.stderr
    assert "appended 1 events; skipped 3 already in the store" in more_run.stdout
    events = read_events(home / "store")
    assert len(events) == 4
    assert events.loc[events["channel"] == "app", "customer_id"].tolist() == ["C9"]


def test_the_load_result_carries_resolved_customer_ids(tmp_path, settings):
    # the load's result keeps every input event's resolved customer (the main job compares
    # them with the generator's truth), appended and skipped events alike
    from features.store.ingest import ingest

    src = tmp_path / "src"
    src.mkdir()
    rows = [{"customer_id": "C9", "email_hash": "E9"}, {"email_hash": "E9"}, {"device_id": "d"}]
    _log(rows).to_parquet(src / "events.parquet")
    first = ingest(src, settings)
    ids = first.load.data.events["customer_id"].tolist()
    assert ids[:2] == ["C9", "C9"] and ids[2].startswith("U")
    again = ingest(src, settings, mode="append")
    assert again.store.n_skipped == 3
    assert again.load.data.events["customer_id"].tolist() == ids
