"""Open the live loop beside a loaded snapshot: the store's recent events and identity
graph, the journal (local or Redis), and every journaled event replayed into the online
state."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features.settings import Settings
from features.store.events import (
    event_part_paths,
    read_identity_graph,
    read_table,
    store_exists,
)
from features.store.parts import RAW_CUSTOMER_ID
from serving.live.identity import OnlineIdentity
from serving.live.ingest import LiveEvents
from serving.live.journal import Journal
from serving.live.refresher import RemoteState
from serving.live.state import LiveState, Refresh, window_start
from serving.live.stored_events import StoredEvents
from serving.scoring import Scorer


class LiveUnavailable(RuntimeError):
    """The service answers from its snapshot but cannot take live events (the message says
    why: POST /events answers 503 with it)."""


def open_live(settings: Settings, scorer: Scorer) -> tuple[LiveEvents, Refresh]:
    """The live loop for ``scorer``'s snapshot, caught up: events stored after the
    snapshot's cutoff and the journal's events are applied (by the refresh process it
    starts, :class:`~serving.live.refresher.RemoteState`; with Redis, by the one the
    lease holder runs, :class:`~serving.live.shared.SharedState`). Returns the loop and
    that first refresh (already applied to the scorer)."""
    if not store_exists(settings.store_dir):
        raise LiveUnavailable(
            f"no events store in {settings.home}: live events need the data home the "
            "snapshot was built from (OMNI_HOME)"
        )
    journal = open_journal(settings)
    try:
        identity = OnlineIdentity(
            read_identity_graph(settings.store_dir), settings.max_identity_component
        )
        journaled, cursor = journal.replay()
        if len(journaled):  # their identifiers link later events as they did at ingest
            identity.resolve(journaled.assign(customer_id=journaled[RAW_CUSTOMER_ID]))
        state = live_state(settings, scorer, journal, journaled)
    except BaseException:
        journal.close()
        raise
    live = LiveEvents(state, identity, journal, cursor, settings.live_max_behind)
    live.cursor = getattr(state, "covers", None) or cursor
    return live, state.first


def live_state(settings: Settings, scorer: Scorer, journal, journaled: pd.DataFrame, **kw):
    """The worker's online state for ``scorer``: a refresh process of its own (local
    journal), or the state stream of the Redis one (:class:`SharedState`; ``kw``: its
    options)."""
    if journal.shared:
        from serving.live.shared import SharedState

        return SharedState(settings, scorer, journal, **kw)
    return RemoteState(settings, scorer, journaled)


def open_journal(settings: Settings, writer: bool = True):
    """The live events' journal: in Redis when ``OMNI_ONLINE_STORE`` names one (shared by
    every worker), else on local disk in the home (one writer; ``writer=False``: a view
    that reads beside a running service)."""
    if settings.online_store:
        from serving.live.redis_journal import RedisJournal

        return RedisJournal(settings.online_store, settings.online_namespace)
    return Journal(settings.journal_dir, writer)


def caught_up_state(
    settings: Settings, scorer: Scorer, journaled: pd.DataFrame
) -> tuple[LiveState, Refresh]:
    """The online state of ``scorer``'s snapshot with the journaled events in, and its
    first refresh: the journaled events' customers and those whose stored events the
    snapshot was built without (for the caller to apply to a real-time scorer)."""
    as_of = scorer.as_of
    stored = StoredEvents.read(settings.store_dir, window_start(as_of))
    identity = OnlineIdentity(
        read_identity_graph(settings.store_dir), settings.max_identity_component
    )  # the state's own copy: it follows the merges the journaled events make
    customers = read_table(settings.store_dir, "customers")
    state = LiveState(scorer, stored, customers, as_of, identity)
    stale = state.after_snapshot().union(
        added_customers(settings.store_dir, scorer.snapshot.manifest.get("store_parts"))
    )
    first = state.refresh(journaled, also=stale)
    state.fold_if_due()  # a long journal replayed: its events in with the stored ones
    return state, first


def added_customers(store_dir: Path, snapshot_parts: list[str] | None) -> pd.Index:
    """Customers with events in store parts the snapshot was not built from (compacted
    live events, later loads, parts rewritten by identity merges), late events included.
    A snapshot that does not list its parts (built before they were recorded): none."""
    if snapshot_parts is None:
        return pd.Index([], dtype="str")
    built_from = set(snapshot_parts)
    added = [p for p in event_part_paths(store_dir) if p not in built_from]
    ids = [pq.read_table(store_dir / p, columns=["customer_id"]) for p in added]
    values = [t["customer_id"].to_pandas().astype("str") for t in ids]
    return pd.Index(pd.concat(values).dropna().unique() if values else [], dtype="str")
