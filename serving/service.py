"""The BentoML service that web, app, point-of-sale, email and SMS systems call.

One class, models loaded once in ``__init__`` from the online snapshot (see
:mod:`serving.online`), typed endpoints whose request fields and limits come from
:mod:`serving.schemas`. Scoring is :class:`serving.scoring.Scorer`, the code batch
scoring runs too. Start it with ``omni serve`` (which checks the snapshot first: a
failing ``__init__`` would make BentoML restart the worker forever).

Scoring endpoints need ``Authorization: Bearer <token>`` when ``OMNI_API_TOKEN`` is set;
BentoML's ``/livez``, ``/readyz``, ``/healthz`` and ``/metrics`` stay open. They take JSON
bodies up to ``OMNI_MAX_BODY_BYTES`` (:mod:`serving.guards`), and client mistakes are
answered 4xx and logged as one WARNING line without the request's content.

Tail latency (issue 21): the worker's garbage collector runs between requests, its young
generations on a clock and the oldest when the worker is idle (:mod:`serving.collector`,
``OMNI_GC``); each answer ends in a fresh context (:mod:`serving.request_context`); the
access log holds every error and a sample of the rest (``OMNI_ACCESS_LOG_EVERY``);
requests make no tracing spans unless ``OMNI_TRACING`` is set (:func:`service_config`).
Measured with tests/benchmarks/bench_service.py (docs/performance.md): /recommend's p99
went from about 230 ms to 5.9 ms at 8 connections and 1.2 ms at 1. Its throughput against
/ping (goal 60%): endpoints are bound once (:func:`bind_endpoints`, ~17 µs a request), and
fewer requests are ranked in full (a store that sold nothing, an unknown customer's whole
popularity list): 139 of the benchmark's 2,000 before, 44 after; in process ~100 µs less
per /recommend (measured 2026-12-06 on a loaded VM, docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from features.settings import get_settings
from serving.answers import json_answer
from serving.collector import Activity, IdleCollector, freeze
from serving.guards import BearerAuth, JsonBodyGuard, ReadableErrors, describe_error
from serving.published_schema import PublishedSchema
from serving.recommendation_log import FLUSH_EVERY_S, Answer, RecommendationLog
from serving.request_context import FreshContextAnswers
from serving.request_metrics import RequestMetrics
from serving.rules import (
    MissingModel,
    RequestError,
    UnknownReference,
    band_of,
    channel_ranking,
)
from serving.schemas import (
    Channel,
    ChannelResponse,
    ChurnResponse,
    CustomerIds,
    CustomersRequest,
    ErrorResponse,
    EventsResponse,
    K,
    LiveEvents,
    Nullable,
    PingResponse,
    RecommendRequest,
    RecommendResponse,
    ScoreResponse,
    StoreId,
)
from serving.served_metrics import COUNT_EVERY_S, served
from training.recs.candidates import REASONS

SNAPSHOT_ENV = "OMNI_SNAPSHOT"
SERVICE_NAME = "omni_personalization"
INFRA = frozenset({"/", "/docs.json", "/schema.json", "/livez", "/readyz", "/healthz"})
"""BentoML's own routes: counted under their path in the request metrics."""
BENTOML_ERRORS = "bentoml._internal.server.http_app"
"""The logger BentoML reports a failed request on (at ERROR, with the traceback)."""
APPLY_EVERY_S = 0.25
"""With the online state in Redis, how often at most a worker runs a round (the lease
holder refreshes, every worker applies the state stream). With a local journal the
refresh process paces its own rounds (:data:`serving.live.refresher.ROUND_EVERY_S`)."""
SNAPSHOT_CHECK_S = 5.0
"""How often the service looks for a newer snapshot (``LATEST``) to switch to."""
SEAL_EVERY_S = 60.0
"""How often the journal's open segment is closed, for `omni events compact` to take."""
SWITCH_WAIT_S = 60.0
"""With the state in Redis, how long a worker that switches snapshot waits for the
leader's state of it before it serves the new snapshot (it applies it once it comes)."""
RETRY_LIVE_S = 5.0
"""How often a worker whose live events are off for a passing reason (Redis not
answering, the journal held by another process) tries to turn them on."""
SWITCH_INTERVAL_S = 0.0005
"""How long a thread may hold the GIL before another may take it (Python's default is
5 ms). The live loop's ingest (checks, identities, journal) is numpy and pandas work in
threads beside the requests: at the default a request that arrives meanwhile waits up to
5 ms for the GIL. (The refresh itself runs in a process of its own.)"""
BEHIND_WAIT_S = 5.0
"""How long POST /events waits for the online state to catch up (``OMNI_LIVE_MAX_BEHIND``)
before it answers 503 (the client retries later)."""
WORKERS_ENV = "OMNI_WORKERS"
"""Worker processes (`omni serve --workers`; more than one needs OMNI_ONLINE_STORE)."""
ACTIVITY = Activity()
"""Requests this worker has seen: the request middleware counts, the collector reads."""
log = logging.getLogger("omni.service")


def service_config() -> dict:
    """BentoML's configuration of the service, from the settings (read at import).

    BentoML's access log is off: :class:`RequestMetrics` writes the same lines, for every
    error and a sample of the rest (``OMNI_ACCESS_LOG_EVERY``). Its metrics are off too
    (kept by the same middleware with bounded labels). Without ``OMNI_TRACING`` no request
    makes OpenTelemetry spans: BentoML records three per request even when it exports
    none, which cost 51% of a bare service's throughput on 2 cores (bench_service.py).
    """
    settings = get_settings()
    config = {
        "name": SERVICE_NAME,
        "workers": int(os.environ.get(WORKERS_ENV) or 1),
        "traffic": {"timeout": 10},
        "logging": {"access": {"enabled": False}},
        "metrics": {"enabled": False},
    }
    if not settings.tracing:
        config["tracing"] = {"excluded_urls": [".*"]}  # a pattern every URL matches
    return config


def snapshot_path() -> Path:
    """``OMNI_SNAPSHOT``, else the snapshot model of the built bento the service runs from
    (``omni bento`` stores it), else the home's latest."""
    from serving.bento import bento_snapshot
    from serving.online import latest_snapshot

    settings = get_settings()
    if settings.snapshot is not None:
        return settings.snapshot
    bundled = bento_snapshot(Personalization.bento)
    return bundled if bundled is not None else latest_snapshot(settings)


class ClientErrorLogs(logging.Filter):
    """BentoML logs a request that fails validation at ERROR with its traceback, and
    pydantic's message there quotes the input (customer ids, the whole body of a broken
    JSON). Such records become one WARNING line naming the path and the fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            fields = ", ".join(
                describe_error(e).partition(":")[0]
                for e in error.errors(include_input=False, include_context=False)
            )
            record.msg = "client error on %s [%s]: invalid %s"
            record.args = (*(record.args or ()), fields)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorLogs` on BentoML's request-error logger (once)."""
    logger = logging.getLogger(BENTOML_ERRORS)
    if not any(isinstance(f, ClientErrorLogs) for f in logger.filters):
        logger.addFilter(ClientErrorLogs())


def client_error(exc: RequestError) -> JSONResponse:
    """404 for a store or category the snapshot does not know, 400 for other mistakes the
    scoring rules find; the body names the field."""
    status, error = (
        (404, "not found") if isinstance(exc, UnknownReference) else (400, "invalid request")
    )
    body = ErrorResponse(error=error, detail=f"{exc.field}: {exc.message}")
    return JSONResponse(body.model_dump(), status_code=status)


def unavailable(reason: str) -> JSONResponse:
    """503 for live events the service cannot take now; the body says why."""
    body = ErrorResponse(error="unavailable", detail=reason)
    return JSONResponse(body.model_dump(), status_code=503)


def missing_model(key: str) -> JSONResponse:
    """404 for an endpoint whose model the served snapshot does not hold (it was built
    from a subset: ``--models``, or one-channel data without a next-best-channel model)."""
    detail = f"{key}: the served snapshot has no {key} model (built with --models without it)"
    body = ErrorResponse(error="not found", detail=detail)
    return JSONResponse(body.model_dump(), status_code=404)


def bind_endpoints(instance: object, apis: Mapping[str, Any]) -> None:
    """Bind the endpoints ``apis`` (a BentoML service's, by name) to ``instance`` once.
    BentoML binds an endpoint anew on every request (``APIMethod.__get__``:
    ``inspect.signature`` and a new wrapper, ~17 µs for /recommend's seven parameters,
    ~9 µs for /ping) and its request handler calls the result's ``.local``, the same
    function every time: kept in the instance, which the method (a non-data descriptor)
    yields to. (So the service's own code calling an endpoint calls it locally, not
    through BentoML's self-proxy; it makes no such call.)"""
    for name, method in apis.items():
        instance.__dict__[name] = method.__get__(instance, type(instance))


@bentoml.service(**service_config())
class Personalization:
    """Recommendations, next best channel and churn risk from the online snapshot."""

    def __init__(self) -> None:
        from threadpoolctl import threadpool_limits

        from serving.live.ingest import EventsTaken
        from serving.online import LIST_DEPTH, load_snapshot
        from serving.scoring import Scorer

        quiet_client_errors()
        bind_endpoints(self, Personalization.apis)
        threadpool_limits(1)  # one request at a time per worker: BLAS threads only contend
        sys.setswitchinterval(SWITCH_INTERVAL_S)  # requests get the GIL soon during refreshes
        t0 = time.perf_counter()
        path = snapshot_path()
        self.snapshot_dir = path
        self.scorer = Scorer(load_snapshot(path), num_threads=1, ranked_lists=LIST_DEPTH)
        self.meta = _meta(self.scorer)
        log.info(
            "loaded snapshot %s (as of %s; %s customers) in %.1f s",
            path.name,
            self.meta["as_of"],
            len(self.scorer.ids),
            time.perf_counter() - t0,
        )
        self.live, self.live_error, self._live_passing = self._open_live()
        settings = get_settings()
        self.journeys = self._open_journeys(settings)
        self.rec_log = RecommendationLog(
            settings.recommendations_dir, settings.rec_log_max_mb * 2**20
        )
        self._tasks: list[asyncio.Task] = []
        self._paused = False  # the live loop waits while the service switches snapshots
        self._taken = EventsTaken()  # POST /events took events: wakes the live loop
        self.collector = IdleCollector(ACTIVITY, settings.gc_mode)
        self.collector.start()  # the snapshot frozen, automatic collection off

    def _open_journeys(self, settings):
        """The journeys decided live (:mod:`serving.journeys.live`), or None: no journeys
        in the home or no live events. Every worker notes what it applies; with a shared
        journal one of them (the leader, see ``journal.leads``) decides. Never raises."""
        from serving.journeys.live import LiveJourneys, live_journeys_folder

        if self.live is None or live_journeys_folder(settings) is None:
            return None
        try:
            first = self.live.state.first
            journeys = LiveJourneys(settings, self.scorer, first.as_of)
            journaled, _ = self.live.journal.replay()
            journeys.note(journaled, first.rows, first.as_of)
        except Exception as exc:  # a bad journey file included: scoring goes on without
            log.error("journeys are not decided live: %s", exc)
            return None
        log.info("journeys decided live: %s", ", ".join(j.name for j in journeys.journeys))
        return journeys

    def _open_live(self, scorer=None):
        """(live loop caught up with the journal, "", False), or (None, why not, whether
        the reason may pass: Redis not answering, the journal held by another process).
        Never raises: a failing ``__init__`` makes BentoML restart the worker forever, and
        scoring from the snapshot works without it (POST /events answers 503 with why)."""
        t0 = time.perf_counter()
        try:
            from serving.live.journal import JournalBusy, JournalError
            from serving.live.start import LiveUnavailable, open_live

            live, first = open_live(get_settings(), scorer or self.scorer)
        except (LiveUnavailable, JournalError, OSError) as exc:  # said on every POST /events
            log.warning("live events unavailable: %s", exc)
            passing = isinstance(exc, (OSError, JournalBusy))
            return None, f"live events unavailable: {exc}", passing
        except Exception as exc:  # a bug: its traceback is logged
            log.exception("live events unavailable")
            return None, f"live events unavailable: {exc}", False
        log.info(
            "live events on: %s journaled events replayed, %s customers refreshed (%.1f s)",
            first.n_events,
            len(first.rows),
            time.perf_counter() - t0,
        )
        note = live.journal.durability() if live.journal.shared else None
        if note:
            log.warning("%s", note)
        return live, "", False

    @bentoml.on_startup
    async def _start_tasks(self) -> None:
        """The background tasks of a worker: the live loop, and following ``LATEST``."""
        freeze()  # what BentoML built around the service since __init__: never garbage
        self.served = served()
        self.served.serving(self.meta["model_versions"], _created(self.scorer))
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.collector.run()))
        self._tasks.append(loop.create_task(self._write_rec_log()))
        self._tasks.append(loop.create_task(self._count_served()))
        if self.live is not None:
            self._tasks.append(loop.create_task(self._apply_live()))
        if self.journeys is not None:
            self._tasks.append(loop.create_task(self._decide_journeys()))
        elif self._live_passing:
            self._tasks.append(loop.create_task(self._retry_live()))
        if follows_latest():
            self._tasks.append(loop.create_task(self._follow_latest()))

    async def _write_rec_log(self) -> None:
        """Every FLUSH_EVERY_S: what /recommend served since, written to the
        recommendation log (off the loop); and once more when the worker stops (its
        tasks cancelled, or the loop's thread pool shut down under it: then the loop is
        closing, as under the ASGI test client, where it ended in "cannot schedule new
        futures after shutdown"). A failed write is logged, never raised."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                try:
                    written = loop.run_in_executor(None, self._rec_log_written)
                except RuntimeError:  # the pool is shut down: written once more below
                    return
                await written
        finally:
            self._rec_log_written()

    async def _count_served(self) -> None:
        """Every COUNT_EVERY_S: the answers noted since, counted in the served metrics
        (off the request path; see :mod:`serving.served_metrics`), and once more when
        the worker stops."""
        try:
            while True:
                await asyncio.sleep(COUNT_EVERY_S)
                self.served.flush()
        finally:
            self.served.flush()

    def _rec_log_written(self) -> None:
        try:
            self.rec_log.write()
        except OSError as exc:  # the answers stay served; only their log is lost
            log.error("recommendation log not written to %s: %s", self.rec_log.directory, exc)

    async def _retry_live(self) -> None:
        """Every RETRY_LIVE_S while live events are off for a passing reason: try again
        (off the request path); once on, the live loop starts."""
        while self.live is None:
            await asyncio.sleep(RETRY_LIVE_S)
            if self._paused:
                continue
            scorer = self.scorer
            live, error, passing = await asyncio.to_thread(self._open_live, scorer)
            if live is not None and scorer is not self.scorer:  # a snapshot switch meanwhile
                live.journal.close()
                continue
            self.live, self.live_error, self._live_passing = live, error, passing
            if live is not None:
                self._tasks.append(asyncio.get_running_loop().create_task(self._apply_live()))
            elif not passing:
                return

    async def _apply_live(self) -> None:
        """The live loop of this worker's journal: local (:meth:`_stream_live`) or in
        Redis (:meth:`_shared_rounds`)."""
        if self.live.journal.shared:
            await self._shared_rounds()
        else:
            await self._stream_live()

    async def _stream_live(self) -> None:
        """Local journal: each batch POST /events took goes to the refresh process at once
        (it refreshes them in rounds, back to back under a steady ingest, so requests keep
        being answered), and each round's rows are applied as they come back: one quick
        swap. A failed round is logged (journaled, its events are applied at the next
        start); a process that died is started again with the journal replayed."""
        from serving.live.refresher import RefreshProcessError, RoundFailed

        live = self.live
        sealed = time.monotonic()
        state, sent, answer = live.state, deque(), None  # sent: batches not answered yet
        while True:
            if live.state is not state:  # a new process (snapshot switch, restart): it
                live.applied(sum(map(len, sent)))  # replayed the journal, which holds them
                _abandon(answer)
                state, sent, answer = live.state, deque(), None
            if not self._paused and live.has_pending():
                sent.append(live.take_pending())
                with contextlib.suppress(RefreshProcessError):  # the answer says so
                    await asyncio.to_thread(state.send, sent[-1])
            if sent and answer is None:  # the process's next answer, read off the loop
                answer = asyncio.ensure_future(asyncio.to_thread(state.receive))
            if time.monotonic() - sealed > SEAL_EVERY_S:  # compaction takes closed segments
                sealed = time.monotonic()
                await asyncio.to_thread(live.seal)
            # until events are taken or the answer comes (paused: events wait for the switch)
            wake = asyncio.sleep(0.05) if self._paused else self._taken.wait(live.has_pending, 1)
            woken = asyncio.ensure_future(wake)
            waits = [woken, answer] if answer else [woken]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if answer is None or not answer.done():
                continue
            done, answer = answer, None
            try:
                refresh, covers = done.result()
            except RoundFailed as exc:  # the process goes on with the next round
                n_events = sum(len(sent.popleft()) for _ in range(exc.batches))
                log.error("could not apply %s live events: %s", n_events, exc)
                live.applied(n_events)
            except RefreshProcessError as exc:
                log.error("%s: starting a new one (the journal has every event)", exc)
                await self._restart_refresh(state)
            else:
                events = [sent.popleft() for _ in range(covers)]
                self._apply_round(state, refresh, events)

    def _apply_round(self, state, refresh, batches: list) -> None:
        """A streamed round's rows into the scorer, unless a new process replaced
        ``state`` meanwhile (it replayed the journal); its events are no longer behind."""
        import pandas as pd

        n_events = sum(map(len, batches))
        try:
            if self.live.state is state:
                state.apply(refresh)
                if self.journeys is not None:
                    events = pd.concat(batches, ignore_index=True)
                    self.journeys.note(events, refresh.rows, refresh.as_of)
        except Exception:  # journaled, so applied again at the next start
            log.exception("could not apply %s live events", n_events)
        finally:
            self.live.applied(n_events)

    async def _shared_rounds(self) -> None:
        """With the state in Redis, a round at most every APPLY_EVERY_S: the lease holder
        refreshes, every worker applies. A journal that does not answer is said once
        and read again next round: scoring goes on from the state the worker has."""
        from serving.live.redis_journal import JournalUnavailable

        sealed = round_start = time.monotonic()
        down = False
        while True:
            await asyncio.sleep(max(0.0, round_start + APPLY_EVERY_S - time.monotonic()))
            round_start = time.monotonic()
            if time.monotonic() - sealed > SEAL_EVERY_S:
                sealed = time.monotonic()
                await asyncio.to_thread(self.live.seal)
            if self._paused:
                continue
            try:
                await self._apply_shared(self.live.state)
            except JournalUnavailable as exc:
                if not down:
                    log.warning("live events paused: %s", exc)
                down = True
                continue
            except Exception:  # a bug, logged; the next round goes on
                log.exception("live state round failed")
                continue
            finally:
                self.live.applied()
            if down:
                log.info("live events resumed: the journal answers again")
                down = False

    async def _apply_shared(self, state) -> None:
        """One round of the state in Redis (:class:`serving.live.shared.SharedState`):
        lead when holding the lease, apply the state stream; the journeys note what was
        applied (the events of each entry's journal range, read back)."""
        from serving.live.journal import journal_frame

        scorer = self.scorer
        applied = await asyncio.to_thread(state.round)
        if state.covers is not None:
            self.live.cursor = state.covers
        if self.journeys is not None and scorer is self.scorer:
            for refresh, after, upto in applied:
                events = journal_frame([])
                if after is not None:
                    events = await asyncio.to_thread(self.live.journal.read_range, after, upto)
                self.journeys.note(events, refresh.rows, refresh.as_of)

    async def _decide_journeys(self) -> None:
        """Every journeys EVERY_S: the journeys decided for what live events changed
        (off the loop); a failure is logged and the next round tries again."""
        from serving.journeys.live import EVERY_S

        leading = False
        while True:
            await asyncio.sleep(EVERY_S)
            if self._paused:
                continue
            was, leading = leading, self.live.journal.leads("journeys", 3 * EVERY_S)
            if not leading:
                continue
            try:
                if not was:  # another worker may have decided until now: read its decisions
                    await asyncio.to_thread(self.journeys.read_log)
                decided = await asyncio.to_thread(self.journeys.evaluate, self.scorer)
            except Exception:
                log.exception("journeys not decided this round")
                continue
            if len(decided):
                sent = int((decided["status"] != "not_sent").sum())
                log.info("journeys: %s decisions, %s messages", len(decided), sent)

    async def _restart_refresh(self, dead) -> None:
        """A new refresh process for the served snapshot, the journal replayed into it
        (the worker's scorer gets the same rows again: nothing lost, none twice)."""
        while True:
            try:
                state, cursor = await asyncio.to_thread(
                    self._replayed_state, get_settings(), self.scorer
                )
                break
            except Exception as exc:
                log.error("the live refresh could not start again: %s", exc)
                await asyncio.sleep(RETRY_LIVE_S)
        if self.live.state is dead:  # else a snapshot switch started one meanwhile
            self.live.state, self.live.cursor = state, cursor
        else:
            await asyncio.to_thread(state.close)
        await asyncio.to_thread(dead.close)

    async def _follow_latest(self) -> None:
        """Every SNAPSHOT_CHECK_S: when ``LATEST`` names another snapshot (a build
        finished), load it beside the current one, replay the journal into it and switch
        in one step; a snapshot that fails to load is reported once and left."""
        from serving.online import SnapshotError, latest_snapshot

        settings, refused = get_settings(), None
        while True:
            await asyncio.sleep(SNAPSHOT_CHECK_S)
            try:
                path = latest_snapshot(settings)
            except SnapshotError:
                continue
            if path == self.snapshot_dir or path == refused:
                continue
            self._paused = True
            try:
                scorer, state = await asyncio.to_thread(self._load_caught_up, settings, path)
            except Exception as exc:
                log.error("kept snapshot %s: %s could not be loaded: %s", *_names(self, path), exc)
                refused = path
                continue
            finally:
                self._paused = False
            self.scorer, self.meta, self.snapshot_dir = scorer, _meta(scorer), path
            self.served.serving(self.meta["model_versions"], _created(scorer))
            if state is not None:
                old, (self.live.state, self.live.cursor) = self.live.state, state
                await asyncio.to_thread(old.close)
            log.info("switched to snapshot %s (as of %s)", path.name, self.meta["as_of"])
            freeze()  # as after start-up: the new snapshot's objects are never walked

    def _load_caught_up(self, settings, path: Path):
        """A real-time Scorer of the snapshot at ``path`` and, with live events on, its
        online state (a new refresh process) with the journal replayed and the journal
        cursor after it (both built off the request path)."""
        from serving.online import LIST_DEPTH, load_snapshot, mark_in_use
        from serving.scoring import Scorer

        scorer = Scorer(load_snapshot(path), num_threads=1, ranked_lists=LIST_DEPTH)
        state = None if self.live is None else self._replayed_state(settings, scorer)
        mark_in_use(settings, path)
        return scorer, state

    def _replayed_state(self, settings, scorer):
        """A new refresh process for ``scorer`` with the journal replayed into it, and the
        journal cursor after what it replayed (the worker's cursor once it is in use)."""
        from serving.live.start import live_state

        journal = self.live.journal
        if journal.shared:  # the leader writes a base for the new snapshot once it switches
            state = live_state(settings, scorer, journal, None, wait_s=SWITCH_WAIT_S)
            return state, state.covers or self.live.cursor
        journaled, cursor = journal.replay()
        return live_state(settings, scorer, journal, journaled), cursor

    # ------------------------------------------------------------------ endpoints

    async def _caught_up(self) -> bool:
        """Back-pressure: wait (up to BEHIND_WAIT_S) while the worker has taken
        ``OMNI_LIVE_MAX_BEHIND`` events its online state has not applied (an ingest
        faster than the refresh would leave answers ever staler and the worker ever
        bigger: 20 s and 3 GB after 20 s at 10,000 events/s); False if still behind."""
        waited = time.monotonic()
        while self.live.behind >= self.live.max_behind:
            if time.monotonic() - waited > BEHIND_WAIT_S:
                return False
            await asyncio.sleep(0.01)
        return True

    @bentoml.api(output_spec=EventsResponse)
    async def events(self, events: LiveEvents) -> Response:
        """Live events from the channels (up to 1,000, fields of the data contract): checked
        as ``omni data load`` checks a file, on disk before the answer, and in the
        customers' predictions within a second. A retried batch is counted once."""
        from serving.live.ingest import BatchError
        from serving.live.redis_journal import JournalUnavailable

        if self.live is None:
            return unavailable(self.live_error)
        if not await self._caught_up():
            behind = f"{self.live.behind:,} events taken are not applied yet"
            return unavailable(f"live events: the online state is behind ({behind}); retry")
        try:
            records = [e.model_dump(exclude_unset=True) for e in events]
            receipt = await asyncio.to_thread(self.live.accept, records)  # off the loop
            if receipt.accepted:
                self._taken.note()  # the live loop's next round may start
        except BatchError as exc:
            body = ErrorResponse(error="invalid request", detail=exc.detail)
            return JSONResponse(body.model_dump(), status_code=400)
        except JournalUnavailable as exc:  # Redis: nothing acknowledged, the client retries
            return unavailable(f"live events unavailable: {exc}")
        except OSError as exc:  # nothing acknowledged: the client retries
            return unavailable(f"the event journal could not be written: {exc}")
        return json_answer(
            EventsResponse,
            accepted=receipt.accepted,
            duplicates=receipt.duplicates,
            customer_ids=receipt.customer_ids,
        )

    @bentoml.api(output_spec=RecommendResponse)
    async def recommend(self, request: RecommendRequest, /) -> Response:
        """Ranked products for one customer in one channel (and store), with a reason per
        item, the customer's churn risk and next-best-channel ranking. The body comes
        whole, as BentoML's root input: with parameters, BentoML copies the validated
        input into keyword arguments on every request (reading ``model_fields`` on the
        instance, which pydantic 2.11 answers with a deprecation warning each time) and
        its wrapper checks each parameter's default, 19 µs of /recommend with six
        (issue 21). The JSON is the same; BentoML's Python client passes the body as one
        dict: ``client.recommend({"customer_id": ...})``."""
        s, r = self.scorer, request
        customer_id, channel, store_id = r.customer_id, r.channel, r.store_id
        try:
            recs = s.recommend([customer_id], r.k, channel, store_id, r.exclude, r.categories)
        except RequestError as exc:
            return client_error(exc)
        except MissingModel as exc:
            return missing_model(str(exc))
        churn, proba = s.predictions_of(customer_id)
        self.served.answered("/recommend", recs.cold_start, recs.reason)
        cold = bool(recs.cold_start[0])
        ids, scores, reasons = self._item_values(recs, slice(None))
        rec_id = self.rec_log.new_id()
        version = self.meta["model_versions"].get("recommender")
        self.rec_log.add(
            Answer(
                rec_id,
                time.time(),
                customer_id,
                channel,
                store_id,
                cold,
                version,
                ids,
                reasons,
                scores,
            )
        )
        return json_answer(
            RecommendResponse,
            recommendation_id=rec_id,
            customer_id=customer_id,
            channel=channel,
            store_id=store_id,
            cold_start=cold,
            items=_items(ids, scores, reasons),
            churn=_churn(churn),
            next_best_channel=self._channels(proba),
            **self.meta,
        )

    @bentoml.api(input_spec=CustomersRequest, output_spec=ChannelResponse)
    async def next_best_channel(
        self, customer_id: str | None = None, customer_ids: list[str] | None = None
    ) -> Response:
        """Consented channels with probabilities, best first, for one customer or a list."""
        if self.scorer.channel_model is None:
            return missing_model("next_best_channel")
        ids = _ids(customer_id, customer_ids)
        pos = self.scorer.positions(ids)
        proba = self.scorer.next_channel(pos)
        self.served.answered("/next_best_channel", pos < 0, _NONE)
        results = [
            {"customer_id": c, "known": bool(p >= 0), "channels": self._channels(proba[i])}
            for i, (c, p) in enumerate(zip(ids, pos, strict=True))
        ]
        return json_answer(ChannelResponse, results=results, **self.meta)

    @bentoml.api(input_spec=CustomersRequest, output_spec=ChurnResponse)
    async def churn_risk(
        self, customer_id: str | None = None, customer_ids: list[str] | None = None
    ) -> Response:
        """Churn probability and risk band for one customer or a list."""
        if self.scorer.churn_model is None:
            return missing_model("churn")
        ids = _ids(customer_id, customer_ids)
        pos = self.scorer.positions(ids)
        churn = self.scorer.churn(pos)
        self.served.answered("/churn_risk", pos < 0, _NONE)
        results = [
            {"customer_id": c, "known": bool(p >= 0), "churn": _churn(churn[i])}
            for i, (c, p) in enumerate(zip(ids, pos, strict=True))
        ]
        return json_answer(ChurnResponse, results=results, **self.meta)

    @bentoml.api(output_spec=ScoreResponse)
    async def score(
        self,
        customer_ids: CustomerIds,
        k: K = 10,
        channel: Nullable[Channel] = None,
        store_id: Nullable[StoreId] = None,
    ) -> Response:
        """All three predictions for a list of customers: the numbers of the single
        calls and of batch scoring."""
        s = self.scorer
        ids = list(dict.fromkeys(customer_ids))  # each customer once, in request order
        try:
            recs = s.recommend(ids, k, channel, store_id)
        except RequestError as exc:
            return client_error(exc)
        except MissingModel as exc:
            return missing_model(str(exc))
        pos = s.positions(ids)
        churn = s.churn(pos)
        proba = s.next_channel(pos)
        bounds = np.searchsorted(recs.pos, np.arange(len(ids) + 1))
        self.served.answered("/score", recs.cold_start, recs.reason)
        results = [
            {
                "customer_id": c,
                "known": bool(pos[i] >= 0),
                "cold_start": bool(recs.cold_start[i]),
                "churn": _churn(churn[i]),
                "next_best_channel": self._channels(proba[i]),
                "items": self._items(recs, slice(bounds[i], bounds[i + 1])),
            }
            for i, c in enumerate(ids)
        ]
        return json_answer(ScoreResponse, results=results, **self.meta)

    @bentoml.api(output_spec=PingResponse)
    async def ping(self) -> Response:
        """Checks the token and says which snapshot and models answer (no scoring)."""
        applied = None if self.live is None else self.live.state.n_applied
        return json_answer(
            PingResponse, ok=True, worker=os.getpid(), live_events=applied, **self.meta
        )

    # ------------------------------------------------------------------ helpers

    def _item_values(self, recs, rows: slice) -> tuple[list[str], list[float], list[str]]:
        """Product ids, scores and reasons of rows ``rows``, as Python values taken in one
        call per column (a request's few rows cost less than numpy scalars would)."""
        ids = self.scorer.item_ids[recs.item[rows]].tolist()
        reasons = [REASONS[r] for r in recs.reason[rows].tolist()]
        return ids, recs.score[rows].tolist(), reasons

    def _items(self, recs, rows: slice) -> list[dict]:
        """The answer's items of rows ``rows``."""
        return _items(*self._item_values(recs, rows))

    def _channels(self, proba: np.ndarray) -> list[dict]:
        ranked = channel_ranking(proba, self.scorer.channels)  # [] for NaN: unknown
        return [{"channel": c, "probability": p} for c, p in ranked]


_NONE = np.zeros(0, np.int8)  # no items in the answer


def _abandon(answer: asyncio.Future | None) -> None:
    """An answer of a refresh process no longer in use: it ends when the process does
    (closed by whoever replaced it); its failure is expected, not logged."""
    if answer is not None:
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())


def _items(ids: list[str], scores: list[float], reasons: list[str]) -> list[dict]:
    """An answer's items from its columns."""
    return [
        {"product_id": i, "score": s, "reason": r}
        for i, s, r in zip(ids, scores, reasons, strict=True)
    ]


def _created(scorer) -> str | None:
    """When the scorer's snapshot was built (ISO, from its manifest)."""
    return scorer.snapshot.manifest.get("created")


def _meta(scorer) -> dict:
    """What every answer says about the snapshot and models behind it."""
    return {"as_of": scorer.as_of.isoformat(), "model_versions": scorer.versions}


def _names(service: Personalization, path: Path) -> tuple[str, str]:
    return service.snapshot_dir.name, path.name


def follows_latest() -> bool:
    """Whether the service switches to newer snapshots: `omni serve` chose its snapshot
    from the home (not ``OMNI_SNAPSHOT`` set by the user, nor a built bento's)."""
    from serving.bentoml_server import FOLLOW_LATEST_ENV

    return os.environ.get(FOLLOW_LATEST_ENV) == "1" and Personalization.bento is None


def _churn(probability: float) -> dict:
    probability = float(probability)
    unknown = probability != probability  # NaN: no history
    return {"probability": None if unknown else probability, "band": band_of(probability)}


def _ids(one: str | None, many: list[str] | None) -> list[str]:
    """The customer ids of a :class:`CustomersRequest` (it holds exactly one of the two)."""
    return [one] if one is not None else list(many)


ENDPOINTS = frozenset(api.route for api in Personalization.apis.values())
# outermost first: answers sent from a fresh context, every request counted, the
# published schema completed, then the token, the body, BentoML's validation answers
Personalization.add_asgi_middleware(FreshContextAnswers)
Personalization.add_asgi_middleware(
    RequestMetrics,
    endpoints=ENDPOINTS | INFRA,
    service=SERVICE_NAME,
    access_every=get_settings().access_log_every,
    activity=ACTIVITY,
)
Personalization.add_asgi_middleware(PublishedSchema, endpoints=ENDPOINTS)
Personalization.add_asgi_middleware(BearerAuth, paths=ENDPOINTS)
Personalization.add_asgi_middleware(JsonBodyGuard, paths=ENDPOINTS)
Personalization.add_asgi_middleware(ReadableErrors, paths=ENDPOINTS)

__all__ = ["Personalization", "RequestError"]
