"""Loading users' files: CSV and Parquet, column mapping, quarantine, nothing half-written."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from features.contract.validate import DataError
from features.sources.files import load_files, parse_column_map
from features.store.events import read_events, read_table
from features.store.ingest import ingest


def _write_source(folder, raw_events, fmt="csv"):
    folder.mkdir(parents=True, exist_ok=True)
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "loyalty_tier": ["gold", "none", "bronze"],
            "consent_email": ["true", "false", "1"],
        }
    )
    products = pd.DataFrame(
        {"product_id": ["p1", "p2"], "category": ["dairy", "bakery"], "price": ["1.5", "2"]}
    )
    for name, df in {"events": raw_events, "customers": customers, "products": products}.items():
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_load_folder(tmp_path, raw_events, fmt):
    result = load_files(_write_source(tmp_path / "src", raw_events, fmt))
    assert len(result.data.events) == 5
    assert len(result.data.customers) == 3
    assert result.data.customers["consent_email"].tolist() == [True, False, True]
    assert len(result.data.stores) == 0  # missing dimension tables load empty


def test_column_mapping(tmp_path, raw_events):
    renamed = raw_events.rename(columns={"ts": "event_time", "customer_id": "cust"})
    src = _write_source(tmp_path / "src", renamed)
    mapping = parse_column_map(["events.ts=event_time", "events.customer_id=cust"])
    result = load_files(src, column_map=mapping)
    assert result.data.events["customer_id"].iloc[0] == "c1"
    assert result.data.events["ts"].notna().all()


def test_column_mapping_errors_name_the_parameter(tmp_path, raw_events):
    src = _write_source(tmp_path / "src", raw_events)
    with pytest.raises(DataError, match=r"mapped column for events.ts not found"):
        load_files(src, column_map={"events": {"ts": "when"}})
    with pytest.raises(DataError, match=r"events.tss is not a contract column"):
        load_files(src, column_map={"events": {"tss": "ts"}})
    with pytest.raises(ValueError, match=r"expected TABLE\.COLUMN=SOURCE_COLUMN"):
        parse_column_map(["ts=event_time"])


def test_explicit_files_and_unknown_columns(tmp_path, raw_events):
    raw_events["favourite_colour"] = "blue"
    raw_events.to_csv(tmp_path / "my_events.csv", index=False)
    result = load_files({"events": tmp_path / "my_events.csv"})
    assert result.ignored_columns == {"events": ["favourite_colour"]}


def test_missing_folder_and_missing_events(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no events table"):
        load_files(tmp_path / "empty")


def test_bad_rows_reject_the_whole_load_and_store_is_untouched(tmp_path, raw_events, settings):
    good = _write_source(tmp_path / "good", raw_events)
    ingest(good, settings)
    before = read_events(settings.store_dir)

    bad_events = raw_events.copy()
    bad_events.loc[2, "channel"] = "fax"
    bad = _write_source(tmp_path / "bad", bad_events)
    with pytest.raises(DataError, match=r"events.csv, row 3, column 'channel'"):
        ingest(bad, settings)
    pd.testing.assert_frame_equal(read_events(settings.store_dir), before)
    leftovers = [p.name for p in settings.home.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_quarantine_writes_bad_rows_with_reasons(tmp_path, raw_events, settings):
    raw_events.loc[1, "quantity"] = "-2"
    src = _write_source(tmp_path / "src", raw_events)
    result = ingest(src, settings, on_error="quarantine")
    assert len(read_events(settings.store_dir)) == 4
    bad = pd.read_csv(result.quarantine_dir / "events.csv")
    assert bad.loc[0, "_row"] == 2
    assert bad.loc[0, "_column"] == "quantity"
    assert "negative quantity on a purchase" in bad.loc[0, "_reason"]
    assert str(tmp_path / "src" / "events.csv") == bad.loc[0, "_file"]


def test_ingest_resolves_identities_and_stores_dimensions(tmp_path, raw_events, settings):
    src = _write_source(tmp_path / "src", raw_events)
    ingest(src, settings)
    events = read_events(settings.store_dir)
    assert events["customer_id"].notna().all()  # the device-only event got a customer
    assert read_table(settings.store_dir, "products")["product_id"].tolist() == ["p1", "p2"]


# issue 14: quarantine files are spreadsheet-safe, encodings, empty loads


def test_quarantine_csv_escapes_formulas_but_keeps_plain_numbers(tmp_path, raw_events, settings):
    # issue 14: quarantine CSVs must not run formulas in a spreadsheet
    raw_events = pd.concat([raw_events, raw_events.iloc[[2]]], ignore_index=True)  # a good row
    raw_events["=evil()"] = "x"  # a column name is a cell too
    raw_events.loc[0, "channel"] = '=HYPERLINK("http://x","y")'
    raw_events.loc[1, "quantity"] = "-3"  # negative on a purchase: bad, but a plain number
    raw_events.loc[2, "channel"] = "@SUM(A1)"
    raw_events.loc[3, "channel"] = "+cmd|' /C calc'!A0"
    raw_events.loc[4, "channel"] = "\tfax"
    raw_events.loc[4, "product_id"] = "-2+3"
    result = ingest(_write_source(tmp_path / "src", raw_events), settings, on_error="quarantine")
    with open(result.quarantine_dir / "events.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "'=evil()" in rows[0]
    assert [r["channel"] for r in rows] == [
        '\'=HYPERLINK("http://x","y")',
        "store",
        "'@SUM(A1)",
        "'+cmd|' /C calc'!A0",
        "'\tfax",
    ]
    assert rows[1]["quantity"] == "-3"
    assert rows[4]["product_id"] == "'-2+3"


def test_latin1_csv_names_the_row_and_loads_with_its_encoding(tmp_path, raw_events):
    # issue 14: a latin-1 file failed with no file or row named
    raw_events.loc[2, "product_id"] = "M\u00e4rz"
    path = tmp_path / "events.csv"
    raw_events.to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(DataError, match=r"events.csv, row 3, column 'product_id': not valid utf-8"):
        load_files({"events": path})
    loaded = load_files({"events": path}, encoding="latin-1")
    assert loaded.data.events["product_id"].iloc[2] == "M\u00e4rz"


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path, raw_events):
    # issue 14: the header is now decoded on its own; a BOM stays out of it
    path = tmp_path / "events.csv"
    raw_events.to_csv(path, index=False, encoding="utf-8-sig")
    assert load_files({"events": path}).data.events["customer_id"].iloc[0] == "c1"


def test_all_rows_bad_when_quarantining_is_refused_and_says_where_they_went(
    tmp_path, raw_events, settings
):
    # issue 14: a load leaving zero events is refused
    from features.store.ingest import EmptyLoadError

    raw_events["channel"] = "fax"
    src = _write_source(tmp_path / "src", raw_events)
    with pytest.raises(EmptyLoadError, match=r"no events in .*events.csv: the store was left"):
        ingest(src, settings, on_error="quarantine")
    assert not settings.store_dir.exists()
    (written,) = settings.quarantine_dir.iterdir()
    assert len(pd.read_csv(written / "events.csv")) == 5


def test_appending_no_new_events_changes_nothing(tmp_path, raw_events, settings):
    # issue 14: appending nothing changes nothing, and says so
    ingest(_write_source(tmp_path / "good", raw_events), settings)
    before = {p: p.read_bytes() for p in settings.store_dir.rglob("*") if p.is_file()}
    empty = tmp_path / "empty"
    empty.mkdir()
    raw_events.head(0).to_csv(empty / "events.csv", index=False)
    said: list[str] = []
    ingest(empty, settings, mode="append", progress=said.append)
    assert any("no new events" in line for line in said)
    after = {p: p.read_bytes() for p in settings.store_dir.rglob("*") if p.is_file()}
    assert after == before


def test_allow_empty_writes_a_store_without_events(tmp_path, raw_events, settings):
    # issue 14: --allow-empty lets an empty load through
    ingest(_write_source(tmp_path / "good", raw_events), settings)
    empty = tmp_path / "empty"
    empty.mkdir()
    raw_events.head(0).to_csv(empty / "events.csv", index=False)
    ingest(empty, settings, allow_empty=True)
    from features.store.ingest import store_has_events

    assert not store_has_events(settings.store_dir)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16"])
def test_csv_in_another_encoding_loads_with_its_name(tmp_path, raw_events, encoding):
    # issue 14: --encoding reads files that are not UTF-8 (UTF-16 with a byte order mark too)
    raw_events.loc[2, "product_id"] = "M\u00e4rz"
    path = tmp_path / "events.csv"
    raw_events.to_csv(path, index=False, encoding=encoding)
    loaded = load_files({"events": path}, encoding=encoding)
    assert loaded.data.events["product_id"].tolist()[1:3] == ["p2", "M\u00e4rz"]
