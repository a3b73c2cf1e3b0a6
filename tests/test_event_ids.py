"""Derived event ids (issue 14): the same row gives the same id in any file format, order
or process, identical rows in one batch get different ids, and a given id wins."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from features.contract.schema import EVENTS
from features.contract.validate import validate_frame
from features.sources.files import load_files
from features.store.event_ids import ID_LENGTH, assign_event_ids, derive_event_ids


def _events(raw_events) -> pd.DataFrame:
    return validate_frame(raw_events, EVENTS, "e").good


def test_ids_are_pinned(raw_events):
    # issue 14: ids are stored; if hashing ever changed, stored events would load twice.
    ids = derive_event_ids(_events(raw_events))
    assert ids.str.len().eq(ID_LENGTH).all()
    assert ids.tolist() == [
        "ppELhEpIoendUAzP",
        "2AW8r7Zf9D5N9NqF",
        "eygU8JWHlryiAd8y",
        "DZvXdzCiNuh5GjeK",
        "pOMdpsRW2cJ4GkAy",
    ]


def test_the_same_in_another_process(raw_events, tmp_path):
    path = tmp_path / "events.parquet"
    _events(raw_events).to_parquet(path)
    code = (
        "import sys, pandas as pd; from features.store.event_ids import derive_event_ids; "
        f"print(','.join(derive_event_ids(pd.read_parquet(r'{path}'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().split(",") == derive_event_ids(_events(raw_events)).tolist()


def test_independent_of_format_order_and_absent_columns(raw_events, tmp_path):
    ids = derive_event_ids(_events(raw_events))
    # CSV and Parquet of the same rows
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq").mkdir()
    raw_events.to_csv(tmp_path / "csv" / "events.csv", index=False)
    _events(raw_events).to_parquet(tmp_path / "pq" / "events.parquet")
    for folder in ("csv", "pq"):
        loaded = load_files(tmp_path / folder).data.events
        assert derive_event_ids(loaded).tolist() == ids.tolist(), folder
    # rows in another order, columns in another order
    perm = np.random.default_rng(0).permutation(len(raw_events))
    shuffled = _events(raw_events.iloc[perm][raw_events.columns[::-1]])
    assert derive_event_ids(shuffled).tolist() == ids.iloc[perm].tolist()
    # a column the file does not have hashes like an empty one; a value changes the id
    with_empty = _events(raw_events.assign(campaign_id=None, discount=""))
    assert derive_event_ids(with_empty).tolist() == ids.tolist()
    changed = _events(raw_events.assign(amount=raw_events["amount"].replace("9.5", "9.51")))
    assert (derive_event_ids(changed) != ids).tolist() == [False, True, False, False, False]


def test_identical_rows_get_their_occurrence(raw_events):
    events = _events(pd.concat([raw_events, raw_events.iloc[[0, 0]]], ignore_index=True))
    ids = derive_event_ids(events)
    assert ids.nunique() == 7
    # the first of the identical rows keeps the id it has alone
    assert ids.iloc[0] == derive_event_ids(_events(raw_events)).iloc[0]


def test_given_ids_win(raw_events):
    events = _events(raw_events.assign(event_id=["a", None, "", "d", None]))
    out = assign_event_ids(events)["event_id"]
    derived = derive_event_ids(events)
    assert out.iloc[[0, 3]].tolist() == ["a", "d"]
    assert out.iloc[[1, 2, 4]].tolist() == derived.iloc[[1, 2, 4]].tolist()
