"""Journeys evaluated as live events arrive, in a service worker (docs/journeys.md, "In
real time").

The worker notes each applied refresh (the events it took, the fresh feature rows) and
every :data:`EVERY_S` decides, with the batch run's code (:func:`evaluate.decide`), for
the customers that events touched since, plus those whose waiting trigger came due (a
cart abandoned ``within_hours`` ago, a purchase ``after_days`` ago): their fresh rows and
scores, the live clock (event time) as the moment. Decisions and outbox files are written
as the batch run writes them. A journey file changed on disk is read again; a bad one is
logged and the journeys loaded before stay in use. A journey that would contact more than
the policy's share of all customers within a day is refused (``over_share``).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from features.ids import is_in
from features.settings import Settings
from serving.journeys.spec import ContactPolicy, Journey, JourneyError

EVERY_S = 5.0
"""How often the worker evaluates the journeys for what changed."""
HISTORY_DAYS = 9
"""Decisions kept in memory for caps and suppression (a week of caps, plus zones)."""
log = logging.getLogger("omni.journeys")


def _due_offsets(journey: Journey) -> dict[str, pd.Timedelta]:
    """Event type -> how long after such an event the journey's trigger can fire."""
    rule = journey.trigger
    if rule.kind == "cart_abandoned":
        return {"add_to_cart": pd.Timedelta(hours=rule.within_hours)}
    if rule.kind == "browse_abandoned":
        return {"view": pd.Timedelta(hours=rule.within_hours)}
    if rule.kind == "purchase":
        return {"purchase": pd.Timedelta(days=rule.after_days)}
    return {}


class LiveJourneys:
    """The journeys of a home, decided for what live events change."""

    def __init__(self, settings: Settings, scorer, clock: pd.Timestamp) -> None:
        """Read the journeys, the policy, the recent decision log and the events the
        triggers look back on (before ``clock``, the live state's moment)."""
        from serving.journeys.evaluate import customer_zones, recent_purchases
        from serving.journeys.spec import load_journeys, load_policy
        from serving.journeys.triggers import COLUMNS, events_for, lookback, trigger_events

        self.settings = settings
        self.folder = settings.journeys_dir
        self.journeys: list[Journey] = [j for j in load_journeys(self.folder) if j.enabled]
        self.policy: ContactPolicy = load_policy(self.folder)
        self._signature = self._files_signature()
        self.error = ""
        self._load_models()
        from serving.journeys.outbox import repair_outbox

        for run in repair_outbox(self.folder):
            log.warning("outbox of run %s written (the run was logged, then interrupted)", run)
        self.clock = clock
        self.read_log()
        stored = events_for(self.journeys, settings.store_dir, clock)
        bought = recent_purchases(settings.store_dir, clock, self.policy)
        bought = bought.reindex(columns=COLUMNS).assign(event_type="purchase")
        self.events = pl.concat([stored, trigger_events(bought)])
        self.touched: set[str] = set()
        self.rows = scorer.snapshot.features.iloc[:0]
        self.previous_churn = pd.Series(
            scorer.churn(np.arange(len(scorer.ids))), index=scorer.ids, dtype=np.float64
        )
        self.clock = self.last = clock
        self.customers = len(scorer.ids)
        self.zones = customer_zones(settings.store_dir)
        self.seconds = 0.0  # spent deciding, over all rounds (the benchmark's per-event cost)
        self.events_noted = 0
        self._lock = threading.Lock()  # note() on the event loop, evaluate() in a thread
        self._max_lookback = max(
            [pd.Timedelta(0), *(b for b in map(lookback, self.journeys) if b is not None)]
        )

    def read_log(self) -> None:
        """The decision log as written so far (by this worker or, with a shared journal,
        by the one that decided before it): triggers decided there are not decided again."""
        from serving.journeys.decisions import read_decisions

        logged = read_decisions(self.folder)
        since = self.clock - pd.Timedelta(days=HISTORY_DAYS)
        self.logged, self.history = logged, logged[logged["decided_at"] >= since]

    # ----------------------------------------------------------------- journey files

    def _files_signature(self) -> tuple:
        from serving.journeys.spec import yaml_files

        files = yaml_files(self.folder)  # the policy's too: a change of it is reloaded
        return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)

    def _load_models(self) -> None:
        from serving.journeys.evaluate import uplift_models_for

        self.uplift_models = uplift_models_for(self.folder, self.journeys)

    def reload(self) -> bool:
        """Read the journey files again when they changed; True when new journeys are in
        use. A bad folder is logged (file, journey, field) and the current ones stay."""
        from serving.journeys.spec import load_journeys, load_policy
        from serving.journeys.triggers import lookback

        signature = self._files_signature()
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            journeys = [j for j in load_journeys(self.folder) if j.enabled]
            policy = load_policy(self.folder)
            old = self.journeys, self.uplift_models
            self.journeys = journeys
            try:
                self._load_models()
            except JourneyError:
                self.journeys, self.uplift_models = old
                raise
        except JourneyError as exc:
            self.error = str(exc)
            log.error("journeys not reloaded, the previous ones stay in use:\n%s", exc)
            return False
        self.policy, self.error = policy, ""
        self._max_lookback = max(
            [self._max_lookback, *(b for b in map(lookback, journeys) if b is not None)]
        )
        log.info("journeys reloaded: %s", ", ".join(j.name for j in journeys) or "none")
        return True

    # ----------------------------------------------------------------- events in

    def note(self, events: pd.DataFrame, rows: pd.DataFrame, clock: pd.Timestamp) -> None:
        """An applied refresh: its events (customer ids resolved) and fresh rows."""
        from serving.journeys.triggers import trigger_events

        new = trigger_events(events) if len(events) else None
        with self._lock:
            if new is not None:
                self.events = pl.concat([self.events, new], how="vertical")
                self.events_noted += len(events)
            if len(rows):
                keep = self.rows[~is_in(self.rows.index, rows.index)]
                self.rows = pd.concat([keep, rows]) if len(keep) else rows
                self.touched.update(rows.index.astype(str))
            self.clock = max(self.clock, clock)

    def due(self, start: pd.Timestamp, end: pd.Timestamp) -> set[str]:
        """Customers with an event whose trigger wait ends in ``(start, end]``."""
        found: set[str] = set()
        for journey in self.journeys:
            for event_type, wait in _due_offsets(journey).items():
                ready = pl.col("ts") + pl.duration(microseconds=wait // pd.Timedelta(1, "us"))
                hit = self.events.filter(
                    (pl.col("event_type") == event_type)
                    & (ready > start.to_pydatetime())
                    & (ready <= end.to_pydatetime())
                )
                found.update(hit["customer_id"].unique().to_list())
        return found

    # ----------------------------------------------------------------- deciding

    def evaluate(self, scorer) -> pd.DataFrame:
        """Decide for the customers touched or come due since the last round, as of the
        live clock; write the decisions and the outbox. Returns the decisions."""
        from serving.journeys.decisions import SCHEMA, write_decisions
        from serving.journeys.evaluate import Inputs, decide, new_run_id
        from serving.journeys.outbox import write_outbox

        t0 = time.perf_counter()
        self.reload()
        with self._lock:
            clock, touched, rows, all_events = self.clock, self.touched, self.rows, self.events
            self.touched = set()
            self._prune(clock)
        wanted = touched | self.due(self.last, clock)
        self.last = clock
        if not wanted or not self.journeys:
            return SCHEMA.empty_table().to_pandas()
        ids = pd.Index(sorted(wanted), dtype="str")
        features = _features(scorer, rows, ids)
        ids = features.index.astype(str)
        churn = pd.Series(scorer.churn(scorer.positions(list(ids))), index=ids, dtype=np.float64)
        previous = self.previous_churn.reindex(ids)
        events = all_events.filter(pl.col("customer_id").is_in(list(ids)))
        purchases = events.filter(pl.col("event_type") == "purchase").select("customer_id", "ts")
        run_id = new_run_id(clock)
        inputs = Inputs(
            events,
            features,
            churn,
            previous,
            self.logged,
            self.history,
            purchases.to_pandas(),
            self.zones,
        )
        decisions = decide(
            self.journeys,
            self.policy,
            scorer,
            inputs,
            clock,
            run_id,
            self.uplift_models,
            say=lambda _m: None,
        )
        decisions = within_share(decisions, self.history, self.policy, self.customers, clock)
        self.previous_churn = pd.concat(
            [self.previous_churn[~self.previous_churn.index.isin(ids)], churn]
        )
        if len(decisions):
            write_decisions(self.folder, decisions, run_id)
            write_outbox(self.folder, decisions, run_id)
            self.logged = pd.concat([self.logged, decisions], ignore_index=True)
            self.history = pd.concat([self.history, decisions], ignore_index=True)
        self.seconds += time.perf_counter() - t0
        return decisions

    def _prune(self, clock: pd.Timestamp) -> None:
        """Forget events no trigger looks back on any more (store-channel ones stay while
        a first-store-visit journey needs the whole history)."""
        start = (clock - self._max_lookback).to_pydatetime()
        keep = pl.col("ts") >= start
        if any(j.trigger.kind == "first_store_visit" for j in self.journeys):
            keep = keep | (pl.col("channel") == "store")
        self.events = self.events.filter(keep)


def within_share(
    decisions: pd.DataFrame,
    history: pd.DataFrame,
    policy: ContactPolicy,
    customers: int,
    clock: pd.Timestamp,
) -> pd.DataFrame:
    """``decisions`` with this round's contacts of a journey refused (``over_share``)
    when with the journey's contacts of the last day they pass the policy's share of
    ``customers``."""
    from serving.journeys.evaluate import contacts_over_share

    if decisions.empty:
        return decisions
    day = history[history["decided_at"] > clock - pd.Timedelta(days=1)]
    over = contacts_over_share(decisions, customers, policy, earlier=day).index
    if len(over):
        refused = (decisions["status"] != "not_sent") & decisions["journey"].isin(over)
        decisions = decisions.copy()
        decisions.loc[refused, ["status", "reason"]] = ["not_sent", "over_share"]
        decisions.loc[refused, "send_at"] = pd.NaT
        log.error(
            "journeys %s would contact more than %.0f%% of the customers within a day: "
            "%s contacts refused (over_share)",
            list(over),
            policy.max_share_per_run * 100,
            int(refused.sum()),
        )
    return decisions


def _features(scorer, rows: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    """Fresh rows where events touched the customer, the snapshot's otherwise."""
    fresh = rows[is_in(rows.index, ids)]
    stored = scorer.snapshot.features
    rest = ids.difference(fresh.index).intersection(stored.index)
    return pd.concat([fresh, stored.loc[rest]]) if len(rest) else fresh


def live_journeys_folder(settings: Settings) -> Path | None:
    """The journeys folder when it holds journeys (the worker then evaluates them live)."""
    from serving.journeys.spec import journey_files

    folder = settings.journeys_dir
    return folder if journey_files(folder) else None
