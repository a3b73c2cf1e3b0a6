"""`omni data load --set TABLE.COLUMN=VALUE`: a contract column the files lack, one value
on every row (issue 16: a plain purchase log had to get channel and event_type written
into the file first)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import omni

from features.contract.schema import EVENTS
from features.contract.validate import DataError, check_value
from features.sources.files import load_files, parse_constants
from features.store.events import read_events

PURCHASE_LOG = pd.DataFrame(
    {
        "customer": ["1", "1", "2", "3", "3"],
        "date": ["2025-01-03", "2025-02-10", "2025-01-20", "2025-03-01", "2025-03-09"],
        "units": ["2", "1", "3", "1", "4"],
        "dollars": ["19.98", "5.00", "30.00", "12.50", "41.20"],
    }
)
MAPS = (
    "--map",
    "events.customer_id=customer",
    "--map",
    "events.ts=date",
    "--map",
    "events.quantity=units",
    "--map",
    "events.amount=dollars",
)
SETS = ("--set", "events.channel=web", "--set", "events.event_type=purchase")


def _log(folder: Path, raw: pd.DataFrame = PURCHASE_LOG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    raw.to_csv(folder / "events.csv", index=False)
    return folder / "events.csv"


def test_constants_fill_columns_and_go_through_validation(tmp_path):
    # issue 16: the constant becomes a column of every row, validated like a file's values
    path = _log(tmp_path)
    column_map = {
        "events": {
            "customer_id": "customer",
            "ts": "date",
            "quantity": "units",
            "amount": "dollars",
        }
    }
    constants = parse_constants(["events.channel=Web", "events.event_type=purchase"])
    events = load_files({"events": path}, column_map, constants=constants).data.events
    assert events["channel"].astype(str).tolist() == ["web"] * 5  # case as a file's values
    assert events["event_type"].astype(str).tolist() == ["purchase"] * 5
    assert events["amount"].sum() == pytest.approx(108.68)
    # a value that passes on its own still meets the row rules: a purchase of -1 units
    bad = PURCHASE_LOG.assign(units=["2", "-1", "3", "1", "4"])
    with pytest.raises(DataError, match="row 2, column 'quantity'"):
        load_files({"events": _log(tmp_path / "bad", bad)}, column_map, constants=constants)


def test_check_value_names_what_the_contract_refuses():
    # issue 16
    assert check_value(EVENTS, "channel", "web") is None
    assert check_value(EVENTS, "channel", "fax").startswith("unknown value (allowed: web, app")
    assert check_value(EVENTS, "channel", " ") == "required value is empty"
    assert check_value(EVENTS, "ts", "yesterday") == "unparsable timestamp"
    assert check_value(EVENTS, "quantity", "1.5") == "not an integer"
    assert check_value(EVENTS, "store_id", "s" * 201).startswith("id longer than 200")


@pytest.mark.parametrize(
    "items, message",
    [
        (["events.channel"], "--set 'events.channel': expected TABLE.COLUMN=VALUE"),
        (["channel=web"], "--set 'channel=web': expected TABLE.COLUMN=VALUE"),
        (["events.channel="], "--set 'events.channel=': expected TABLE.COLUMN=VALUE"),
        (["orders.channel=web"], "--set 'orders.channel=web': expected TABLE.COLUMN=VALUE"),
        (["events.chanel=web"], "--set events.chanel: not a column of the contract's events"),
        (["events.channel=web", "events.channel=app"], "--set events.channel is given twice"),
    ],
)
def test_malformed_set_is_refused_naming_the_option(items, message):
    # issue 16
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_constants(items)


@pytest.mark.slow
def test_set_loads_a_plain_purchase_log_and_summary_shows_it(tmp_path):
    # issue 16: customer, date, units, dollars + --set channel / event_type loads
    home = tmp_path / "home"
    path = _log(tmp_path / "src")
    res = omni("data", "load", "--table", f"events={path}", *MAPS, *SETS, home=home)
    assert res.returncode == 0, res.stderr
    stored = read_events(home / "store")
    assert len(stored) == 5 and stored["customer_id"].nunique() == 3
    assert set(stored["channel"].astype(str)) == {"web"}
    res = omni("data", "summary", "--json", home=home)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["events"] == 5 and summary["customers"] == 3
    assert summary["channels"] == {
        "web": {"events": 5, "customers": 3, "by_event_type": {"purchase": 5}}
    }
    res = omni("data", "summary", home=home)
    assert res.returncode == 0 and "purchases 5" in res.stdout
    # issue 16: no product_id anywhere: one line, not an IndexError from the recommender
    res = omni("train", "recs", home=home)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "nothing to fit a recommender on" in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "sets, file_has_channel, message",
    [
        (("events.channel=fax",), False, "--set events.channel=fax: unknown value (allowed: web"),
        (("events.chanel=web",), False, "--set events.chanel: not a column of the contract's"),
        (("channel=web",), False, "--set 'channel=web': expected TABLE.COLUMN=VALUE"),
        (("stores.region=north",), False, "--set stores.region: no stores file to set it on"),
        (("events.ts=2025-01-01",), False, "--map also gives events.ts (from column 'date')"),
        (("events.channel=web",), True, "already has a 'channel' column; drop the --set"),
    ],
)
def test_bad_set_exits_2_in_one_line_and_leaves_the_store(
    tmp_path, sets, file_has_channel, message
):
    # issue 16: unknown table/column, malformed, refused value, a column the file has
    home = tmp_path / "home"
    path = _log(tmp_path / "src")
    res = omni("data", "load", "--table", f"events={path}", *MAPS, *SETS, home=home)
    assert res.returncode == 0, res.stderr
    before = read_events(home / "store")
    if file_has_channel:
        path = _log(tmp_path / "src2", PURCHASE_LOG.assign(channel="store"))
    args = [*MAPS, "--set", "events.event_type=purchase"]
    for item in sets:
        args += ["--set", item]
    res = omni("data", "load", "--table", f"events={path}", *args, home=home)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    pd.testing.assert_frame_equal(read_events(home / "store"), before)
