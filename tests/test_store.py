"""Events store: month partitions, time-range reads, append, atomic replace."""

from __future__ import annotations

import pandas as pd
import pytest

from features.schema import CUSTOMERS, EVENTS, PRODUCTS, STORES, empty_frame
from features.sources import SourceData
from features.store import StoreMissingError, read_events, write_store
from features.validate import validate_frame


def _data(raw_events) -> SourceData:
    return SourceData(
        events=validate_frame(raw_events, EVENTS, "e").good,
        customers=empty_frame(CUSTOMERS),
        products=empty_frame(PRODUCTS),
        stores=empty_frame(STORES),
    )


def test_partitions_by_month_and_reads_a_range(tmp_path, raw_events):
    store = write_store(_data(raw_events), tmp_path / "store")
    months = sorted(p.name for p in (store / "events").iterdir())
    assert months == ["month=202501", "month=202502", "month=202503"]
    feb = read_events(store, start="2025-02-01", end="2025-03-01")
    assert len(feb) == 2
    assert (
        feb["ts"]
        .between(pd.Timestamp("2025-02-01", tz="UTC"), pd.Timestamp("2025-03-01", tz="UTC"))
        .all()
    )
    assert list(read_events(store).columns) == EVENTS.names


def test_range_read_skips_other_months(tmp_path, raw_events):
    """Reading one month must not touch other months' files (we remove them to prove it)."""
    store = write_store(_data(raw_events), tmp_path / "store")
    for part in (store / "events" / "month=202501").iterdir():
        part.write_bytes(b"not parquet")
    assert len(read_events(store, start="2025-02-01")) == 3


def test_append_adds_events(tmp_path, raw_events):
    store = write_store(_data(raw_events), tmp_path / "store")
    write_store(_data(raw_events), store, mode="append")
    assert len(read_events(store)) == 10


def test_missing_store_message(tmp_path):
    with pytest.raises(StoreMissingError, match="load data first"):
        read_events(tmp_path / "nothing")
