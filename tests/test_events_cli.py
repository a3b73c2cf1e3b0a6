"""issue 17 (real time): journaled live events reach the events store.

`omni events compact` appends the journal's closed segments to the store (same event
ids, identities resolved as a load resolves them) and removes them; it is idempotent, and
with a service holding the journal it leaves the open segment alone.
"""

from __future__ import annotations

import pandas as pd
import pytest
from cli_helpers import omni

from features.contract.schema import EVENTS
from features.settings import get_settings
from features.store.events import read_events, read_identity_graph
from serving.live.compact import compact
from serving.live.identity import OnlineIdentity
from serving.live.ingest import checked
from serving.live.journal import Journal


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    run = omni("data", "synth", "--customers", "60", "--days", "30", home=home)
    assert run.returncode == 0, run.stderr
    return get_settings({"OMNI_HOME": str(home)})


def live_events(settings, records: list[dict]) -> pd.DataFrame:
    """Records as the service journals them: checked, ids given, identities resolved."""
    identity = OnlineIdentity(read_identity_graph(settings.store_dir), 25)
    return identity.resolve(checked(records))


def records(n: int, tag: str) -> list[dict]:
    return [
        {"customer_id": f"C{1 + i % 5:07d}", "ts": f"2025-12-31T{i % 24:02d}:00:00Z",
         "channel": "app", "event_type": "view", "product_id": "P000001",
         "event_id": f"{tag}-{i}", **({"recommendation_id": f"r-{i}"} if i % 2 == 0 else {})}
        for i in range(n)
    ]  # fmt: skip


# issue 17: journal -> store, once; a stored event is skipped, not doubled
def test_compact_moves_the_journal_into_the_store_once(home):
    before = read_events(home.store_dir)
    stored = before.iloc[[0]].copy()  # an event the store has: compaction must skip it
    stored["raw_customer_id"] = stored["customer_id"].astype("str")
    journal = Journal(home.journal_dir)
    journal.append(live_events(home, records(30, "a")))
    journal.append(stored[[*EVENTS.names, "raw_customer_id"]])
    journal.close()

    run = omni("events", "compact", home=home.home)
    assert run.returncode == 0, run.stderr
    assert "31 journaled events" in run.stdout and "30 added" in run.stdout
    after = read_events(home.store_dir)
    assert len(after) == len(before) + 30
    assert {f"a-{i}" for i in range(30)} <= set(after["event_id"])
    # issue 19: the id of the answer that showed the product travels with the event
    tagged = after.set_index("event_id").loc[[f"a-{i}" for i in range(30)], "recommendation_id"]
    assert tagged.fillna("-").tolist() == [f"r-{i}" if i % 2 == 0 else "-" for i in range(30)]
    assert Journal(home.journal_dir, writer=False).read().empty

    again = omni("events", "compact", home=home.home)
    assert again.returncode == 0 and "no closed journal segments" in again.stdout
    assert len(read_events(home.store_dir)) == len(after)


# issue 17: a service holds the journal: only the segments it closed are compacted
def test_compact_beside_a_writer_takes_closed_segments_only(home):
    writer = Journal(home.journal_dir)  # stands for the running service
    try:
        writer.append(live_events(home, records(10, "b")))
        nothing = compact(home)
        assert nothing.segments == 0 and nothing.service_running
        writer.seal()
        writer.append(live_events(home, records(5, "c")))  # after the seal: stays
        moved = compact(home)
        assert (moved.segments, moved.added) == (1, 10)
        assert len(writer.read()) == 5
    finally:
        writer.close()
    assert compact(home).added == 5  # no service any more: everything


# issue 17: a damaged journal line is an error naming the file and line (exit 2), not a traceback
def test_a_damaged_journal_line_is_named(home):
    journal = Journal(home.journal_dir)
    journal.append(live_events(home, records(3, "d")))
    journal.close()
    (segment,) = Journal(home.journal_dir, writer=False).segments()
    segment.write_bytes(b"not json\n" + segment.read_bytes())
    run = omni("events", "compact", home=home.home)
    assert run.returncode == 2
    assert f"{segment}, line 1: not a journal line" in run.stderr.replace("\n", "")
