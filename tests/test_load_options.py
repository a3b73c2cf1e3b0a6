"""`omni data load` options added for issue 14: --encoding, --ts-min/--ts-max, --allow-empty."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import omni

from features.store.events import read_events


def _events(folder: Path, raw: pd.DataFrame, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    raw.to_csv(folder / "events.csv", index=False, encoding=encoding)
    return folder


def _load(*args: str, home: Path):
    res = omni("data", "load", *args, home=home, COLUMNS="10000")
    assert "Traceback" not in res.stdout + res.stderr
    return res


@pytest.mark.slow
def test_encoding_option_loads_a_latin1_file(tmp_path, raw_events):
    # issue 14: a latin-1 file failed with "'utf-8' codec can't decode byte 0xe4", no row
    raw_events.loc[2, "product_id"] = "M\u00e4rz"
    src = _events(tmp_path / "src", raw_events, encoding="latin-1")
    res = _load(str(src), home=tmp_path / "home")
    assert res.returncode == 2
    assert "events.csv, row 3, column 'product_id'" in res.stderr
    assert "--encoding latin-1" in res.stderr
    res = _load(str(src), "--encoding", "latin-1", home=tmp_path / "home")
    assert res.returncode == 0, res.stderr
    assert "M\u00e4rz" in read_events(tmp_path / "home" / "store")["product_id"].tolist()
    res = _load(str(src), "--encoding", "klingon", home=tmp_path / "home")
    assert res.returncode == 2 and "--encoding 'klingon' is not a known text encoding" in res.stderr


@pytest.mark.slow
def test_time_range_options_widen_what_loads(tmp_path, raw_events):
    # issue 14: 1969 and far-future timestamps are refused by default, loadable when asked
    raw_events.loc[0, "ts"] = "1969-07-20T20:17:00Z"
    raw_events.loc[2, "ts"] = "2299-01-01"
    src = _events(tmp_path / "src", raw_events)
    res = _load(str(src), home=tmp_path / "home")
    assert res.returncode == 2
    assert "row 1, column 'ts': timestamp before 1970-01-01" in res.stderr
    assert "row 3, column 'ts': timestamp after" in res.stderr
    res = _load(
        str(src), "--ts-min", "1960-01-01", "--ts-max", "2300-01-01", home=tmp_path / "home"
    )
    assert res.returncode == 0, res.stderr
    ts = read_events(tmp_path / "home" / "store")["ts"]
    assert ts.min() == pd.Timestamp("1969-07-20T20:17:00Z")
    assert ts.max() == pd.Timestamp("2299-01-01", tz="UTC")
    res = _load(str(src), "--ts-max", "next week", home=tmp_path / "home")
    assert res.returncode == 2 and "--ts-max 'next week' is not a date" in res.stderr


@pytest.mark.slow
def test_allow_empty_and_appending_nothing(tmp_path, raw_events):
    # issue 14: a header-only file deleted the store; now it is refused unless --allow-empty
    home = tmp_path / "home"
    assert _load(str(_events(tmp_path / "good", raw_events)), home=home).returncode == 0
    empty = _events(tmp_path / "empty", raw_events.head(0))
    res = _load(str(empty), home=home)
    assert res.returncode == 2
    assert f"no events in {empty / 'events.csv'}: the store was left as it was" in res.stderr
    assert len(read_events(home / "store")) == 5
    res = _load(str(empty), "--append", home=home)
    assert res.returncode == 0 and "no new events" in res.stdout
    assert len(read_events(home / "store")) == 5
    res = _load(str(empty), "--allow-empty", home=home)
    assert res.returncode == 0 and "holds no events" in res.stdout


def test_help_lists_the_new_options(tmp_path):
    # issue 14: the new options are documented where users look
    res = omni("data", "load", "--help", home=tmp_path, COLUMNS="200")
    for option in ("--encoding", "--ts-min", "--ts-max", "--allow-empty"):
        assert option in res.stdout
