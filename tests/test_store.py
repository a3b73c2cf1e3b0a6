"""Events store: month partitions, time-range reads, the manifest, atomic writes,
idempotent appends, leftovers and stores written before manifests."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from features.contract.schema import CUSTOMERS, EVENTS, PRODUCTS, STORES, empty_frame
from features.contract.validate import validate_frame
from features.sources.base import SourceData
from features.store.events import (
    StoreBusyError,
    StoreMissingError,
    read_events,
    read_store,
    read_table,
    store_events,
    write_store,
)


def _data(raw_events, customers=None) -> SourceData:
    return SourceData(
        events=validate_frame(raw_events, EVENTS, "e").good,
        customers=empty_frame(CUSTOMERS) if customers is None else customers,
        products=empty_frame(PRODUCTS),
        stores=empty_frame(STORES),
    )


def _later(raw_events, days: int = 40):
    """The same kind of events, ``days`` later: new events."""
    later = raw_events.copy()
    ts = pd.to_datetime(later["ts"], utc=True, format="ISO8601") + pd.Timedelta(days=days)
    later["ts"] = ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return later


def _sorted(events: pd.DataFrame) -> pd.DataFrame:
    return events.sort_values("event_id", ignore_index=True)


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
    ids = read_events(store, start="2025-02-01", end="2025-03-01", columns=["customer_id"])
    assert list(ids.columns) == ["customer_id"] and len(ids) == 2


def test_range_read_skips_other_months(tmp_path, raw_events):
    """Reading one month must not touch other months' files (we remove them to prove it)."""
    store = write_store(_data(raw_events), tmp_path / "store")
    for part in (store / "events" / "month=202501").iterdir():
        part.write_bytes(b"not parquet")
    assert len(read_events(store, start="2025-02-01")) == 3


def test_append_adds_new_events(tmp_path, raw_events):
    store = write_store(_data(raw_events), tmp_path / "store")
    write_store(_data(_later(raw_events)), store, mode="append")
    assert len(read_events(store)) == 10


def test_append_of_the_same_events_adds_nothing(tmp_path, raw_events):
    # issue 14: appending the same file twice doubled the events.
    store = write_store(_data(raw_events), tmp_path / "store")
    before = _sorted(read_events(store))
    result = store_events(_data(raw_events), store, mode="append")
    assert (result.n_added, result.n_skipped) == (0, 5)
    pd.testing.assert_frame_equal(_sorted(read_events(store)), before)
    # half old, half new: only the new half lands
    mixed = pd.concat([raw_events.iloc[:3], _later(raw_events).iloc[3:]], ignore_index=True)
    result = store_events(_data(mixed), store, mode="append")
    assert (result.n_added, result.n_skipped) == (2, 3)
    assert len(read_events(store)) == 7


def test_identical_lines_in_one_file_are_two_events(tmp_path, raw_events):
    # issue 14: the derived event id counts identical rows, so a genuine repeat stays.
    twice = pd.concat([raw_events, raw_events.iloc[[1]]], ignore_index=True)
    store = write_store(_data(twice), tmp_path / "store")
    assert len(read_events(store)) == 6
    assert read_events(store)["event_id"].nunique() == 6
    assert store_events(_data(twice), store, mode="append").n_added == 0


def test_given_event_ids_are_kept_and_repeats_dropped(tmp_path, raw_events):
    # issue 14: a source's own event_id is the identity; a repeat of one is one event.
    given = raw_events.assign(event_id=["a", "b", "c", "d", "a"])
    result = store_events(_data(given), tmp_path / "store")
    assert result.n_repeated == 1
    stored = read_events(tmp_path / "store")
    assert sorted(stored["event_id"]) == ["a", "b", "c", "d"]
    again = _later(raw_events).assign(event_id=["a", "x", None, None, None])
    result = store_events(_data(again), tmp_path / "store", mode="append")
    assert (result.n_added, result.n_skipped) == (4, 1)


def test_a_write_is_one_rename(tmp_path, raw_events, monkeypatch):
    # issue 14: replace swapped the store folder with two renames and append moved parts
    # one rename each; a kill between them left a store missing or half appended.
    store = write_store(_data(raw_events), tmp_path / "store")
    renames = []
    real = os.replace

    def counting(src, dst, *args, **kwargs):
        renames.append((str(src), str(dst)))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting)
    monkeypatch.setattr(os, "rename", counting)
    write_store(_data(_later(raw_events)), store, mode="append")
    assert [dst for _, dst in renames] == [str(store / "manifest.json")]
    renames.clear()
    write_store(_data(raw_events), store, mode="replace")
    assert [dst for _, dst in renames] == [str(store / "manifest.json")]


def test_reads_only_what_the_manifest_lists(tmp_path, raw_events):
    # issue 14: readers scanned the events folder, so parts a killed append had moved in
    # counted as loaded.
    store = write_store(_data(raw_events), tmp_path / "store")
    before = _sorted(read_events(store))
    listed = json.loads((store / "manifest.json").read_text())["events"]
    stray = store / "events" / "month=202501" / "ev-killedwrite-0.parquet"
    shutil.copy(store / listed[0]["path"], stray)
    (store / "customers-killedwrite.parquet").write_bytes(b"half written")
    pd.testing.assert_frame_equal(_sorted(read_events(store)), before)
    assert len(read_store(store).events) == 5


def test_next_write_removes_leftovers(tmp_path, raw_events):
    # issue 14: leftovers of killed writes (and older code's .append-* folders) stayed.
    store = write_store(_data(raw_events), tmp_path / "store")
    stray = store / "events" / "month=202501" / "ev-killedwrite-0.parquet"
    stray.write_bytes(b"x")
    staging = store / ".append-1a2b3c4d" / "month=202501"
    staging.mkdir(parents=True)
    (staging / "part-0.parquet").write_bytes(b"x")
    (store / ".manifest.json.killedwrite").write_text("{")
    swap = tmp_path / ".store.tmp-1a2b3c4d"  # older code's replace swapped folders there
    swap.mkdir()
    (swap / "customers.parquet").write_bytes(b"x")
    old_files = {p for p in store.rglob("*.parquet")} - {stray}

    result = store_events(_data(_later(raw_events)), store, mode="append")
    assert result.n_removed_files == 5  # the four above, and the identity graph it replaced
    assert not stray.exists() and not (store / ".append-1a2b3c4d").exists()
    assert not (store / ".manifest.json.killedwrite").exists() and not swap.exists()
    assert len(read_events(store)) == 10
    # a replace drops the files it replaced
    write_store(_data(raw_events), store)
    assert not any(p.exists() for p in old_files)
    listed = json.loads((store / "manifest.json").read_text())
    on_disk = {p.relative_to(store).as_posix() for p in store.rglob("*.parquet")}
    assert on_disk == {p["path"] for p in listed["events"]} | {
        t["path"] for t in listed["tables"].values()
    } | {listed["identity"]["path"]}


def _legacy_store(folder, data: SourceData) -> None:
    """A store as the code before manifests wrote it (hive parts + one file per table)."""
    from features.store.parts import events_table

    table = events_table(data.events.drop(columns=["event_id"], errors="ignore"))
    table = table.drop_columns(["event_id", "raw_customer_id"])
    ds.write_dataset(
        table,
        folder / "events",
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("month", pa.int32())]), flavor="hive"),
        basename_template="part-0123456789ab-{i}.parquet",
    )
    for name in ("customers", "products", "stores"):
        pa.Table.from_pandas(getattr(data, name), preserve_index=False).to_pandas().to_parquet(
            folder / f"{name}.parquet"
        )


def test_a_store_from_before_manifests_reads_and_is_upgraded(tmp_path, raw_events):
    # issue 14: stores written by older code still read, and their next write converts them.
    from features.store.identity import resolve_identities

    customers = pd.DataFrame({"customer_id": ["c1", "c2"], "loyalty_tier": ["gold", "none"]})
    data = _data(raw_events, customers=customers)
    data.events, _ = resolve_identities(data.events)
    store = tmp_path / "store"
    _legacy_store(store, data)
    old = read_events(store)
    assert len(old) == 5 and old["event_id"].isna().all()
    assert read_table(store, "customers")["customer_id"].tolist() == ["c1", "c2"]

    result = store_events(_data(_later(raw_events)), store, "append", max_identity_component=25)
    assert result.n_added == 5 and result.n_skipped == 0
    new = read_events(store)
    assert len(new) == 10 and new["event_id"].notna().all()
    assert not list(store.glob("events/*/part-*")) and (store / "manifest.json").exists()
    assert read_table(store, "customers")["customer_id"].tolist() == ["c1", "c2"]
    # the old events keep their customers; the new ones join them
    assert set(new["customer_id"]) == set(old["customer_id"])


def test_dimension_tables_upsert_on_append(tmp_path, raw_events):
    first = pd.DataFrame({"customer_id": ["c1", "c2"], "loyalty_tier": ["gold", "none"]})
    store = write_store(_data(raw_events, customers=first), tmp_path / "store")
    second = pd.DataFrame({"customer_id": ["c2", "c3"], "loyalty_tier": ["silver", "bronze"]})
    write_store(_data(_later(raw_events), customers=second), store, mode="append")
    table = read_table(store, "customers").set_index("customer_id")["loyalty_tier"]
    assert table.to_dict() == {"c1": "gold", "c2": "silver", "c3": "bronze"}
    write_store(_data(_later(raw_events, 80)), store, mode="append")  # no customers file
    assert len(read_table(store, "customers")) == 3


def test_one_writer_at_a_time(tmp_path, raw_events):
    import fcntl

    store = write_store(_data(raw_events), tmp_path / "store")
    with open(store / ".write.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(StoreBusyError, match="another process is writing"):
            write_store(_data(_later(raw_events)), store, mode="append")
    assert len(read_events(store)) == 5


def test_missing_store_message(tmp_path):
    with pytest.raises(StoreMissingError, match="load data first"):
        read_events(tmp_path / "nothing")


def test_a_killed_first_write_is_no_store(tmp_path, raw_events):
    # issue 14: parts of a first write killed before its manifest are not a store.
    store = write_store(_data(raw_events), tmp_path / "store")
    (store / "manifest.json").unlink()
    with pytest.raises(StoreMissingError):
        read_events(store)


def test_a_read_survives_a_write_that_removes_its_files(tmp_path, raw_events, monkeypatch):
    # issue 14: a write removes the files it replaced right after its switch; a reader
    # that listed them a moment before reads again from the new manifest.
    import features.store.events as store_module

    store = write_store(_data(raw_events), tmp_path / "store")
    real = store_module.parts_dataset
    raced = []

    def listing_then_a_write(store_dir, manifest, columns):
        if not raced:  # between this reader's listing and its reading, a replace lands
            raced.append(True)
            write_store(_data(_later(raw_events)), store)
        return real(store_dir, manifest, columns)

    monkeypatch.setattr(store_module, "parts_dataset", listing_then_a_write)
    events = read_events(store)
    assert raced and len(events) == 5
    assert events["ts"].min() > pd.Timestamp("2025-02-01", tz="UTC")  # the new content


def test_a_store_with_no_events_reads_and_summarises(tmp_path, settings):
    # issue 14: with a manifest a store may hold zero events (a load with --allow-empty):
    # it reads as empty, appends to it work, and `omni data summary` says so.
    from typer.testing import CliRunner

    from serving.cli.main import app

    empty = SourceData(
        events=empty_frame(EVENTS),
        customers=empty_frame(CUSTOMERS),
        products=empty_frame(PRODUCTS),
        stores=empty_frame(STORES),
    )
    write_store(empty, settings.store_dir, max_identity_component=25)
    write_store(empty, settings.store_dir, "append", max_identity_component=25)
    assert read_events(settings.store_dir).empty
    res = CliRunner().invoke(app, ["--home", str(settings.home), "data", "summary"])
    assert res.exit_code == 0 and "no events" in res.output, res.output
