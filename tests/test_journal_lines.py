"""issue 17: the journal's lines, written and read by Polars: the same events back in
contract dtypes, a torn last line left out, a bad line named."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features.store.parts import RAW_CUSTOMER_ID
from serving.live.ingest import checked
from serving.live.journal import JournalError, journal_frame, lines, parse_lines


@pytest.fixture
def events() -> pd.DataFrame:
    records = [
        {"customer_id": "C1", "ts": "2026-01-01T10:00:00.123456Z", "channel": "web",
         "event_type": "purchase", "order_id": "o1", "product_id": "P1", "quantity": 2,
         "amount": 0.1 + 0.2, "event_id": "e1"},
        {"customer_id": 'Zoë "q" \\ \n', "ts": "2026-01-01T11:00:00+02:00", "channel": "app",
         "event_type": "view", "product_id": "P2", "event_id": "e2"},
        {"email_hash": "h1", "ts": "2026-01-02T00:00:00Z", "channel": "email",
         "event_type": "open", "amount": 1e-7, "campaign_id": "c9"},
    ]  # fmt: skip
    frame = checked(records)
    return frame.assign(**{RAW_CUSTOMER_ID: frame["customer_id"]})


def test_lines_read_back_as_python_json_reads_them(events):
    data = lines(events)
    assert data.count(b"\n") == len(events)
    fast = parse_lines(data, "here")
    slow = journal_frame([json.loads(line) for line in data.splitlines()])
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["customer_id"].iloc[1] == 'Zoë "q" \\ \n'
    assert fast["amount"].iloc[0] == 0.1 + 0.2 and fast["amount"].iloc[2] == 1e-7
    assert str(fast["ts"].iloc[0]) == "2026-01-01 10:00:00.123456+00:00"
    assert str(fast["ts"].iloc[1]) == "2026-01-01 09:00:00+00:00"


def test_a_torn_last_line_is_left_out_and_a_bad_one_named(events):
    data = lines(events)
    torn = data + data[:40]  # a writer killed mid-append: never acknowledged
    assert len(parse_lines(torn, "seg", torn_tail=True)) == len(events)
    whole_but_unended = data + data.splitlines()[0]  # parses, but its newline is missing
    assert len(parse_lines(whole_but_unended, "seg", torn_tail=True)) == len(events)
    with pytest.raises(JournalError, match=r"seg, line 4: not a journal line"):
        parse_lines(data + b"{not json\n" + data, "seg")
    assert parse_lines(b"", "seg").empty
