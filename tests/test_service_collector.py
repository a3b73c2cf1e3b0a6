"""issue 21 (serving tail latency): the worker's garbage collector policy, the sampled
access log and the settings that choose them. The HTTP-level numbers are in
tests/benchmarks/bench_service.py; here, the decisions that produce them."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest

from features.settings import get_settings
from serving import collector
from serving.collector import Activity, IdleCollector, collection_due
from serving.request_metrics import RequestMetrics


class Cycle:
    """An object only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collector_off():
    """Automatic collection restored and the test's frozen objects released afterwards."""
    yield
    gc.unfreeze()
    gc.enable()


@pytest.fixture
def fast_clock(monkeypatch):
    monkeypatch.setattr(collector, "CHECK_EVERY_S", 0.01)
    monkeypatch.setattr(collector, "IDLE_S", 0.1)
    monkeypatch.setattr(collector, "IDLE_MIN_GROWTH", 1_000)


def test_a_collection_is_due_when_idle_with_garbage_or_after_large_growth():
    limit = collector.GROWTH_LIMIT
    assert collection_due(limit, quiet_s=0.0) == "growth"  # under load, a leak's sake
    assert collection_due(limit - 1, quiet_s=0.0) is None  # busy: requests first
    assert collection_due(collector.IDLE_MIN_GROWTH, quiet_s=collector.IDLE_S) == "idle"
    assert collection_due(collector.IDLE_MIN_GROWTH - 1, quiet_s=60.0) is None  # nothing new


def _garbage(n: int) -> weakref.ref:
    """``n`` unreachable cycles; a weak reference to one of them."""
    cycles = [Cycle() for _ in range(n)]
    probe = weakref.ref(cycles[-1])
    del cycles
    return probe


async def _busy(activity: Activity, seconds: float) -> None:
    """Requests keep arriving (one every 5 ms) for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        activity.requests += 1
        await asyncio.sleep(0.005)


def test_cycles_wait_while_requests_arrive_and_go_once_the_worker_is_idle(
    collector_off, fast_clock
):
    activity = Activity()
    worker = IdleCollector(activity)
    worker.start()
    assert not gc.isenabled()

    async def scenario():
        task = asyncio.create_task(worker.run())
        probe = _garbage(5_000)
        await _busy(activity, 0.5)  # five idle periods long, never idle
        survived_load = probe() is not None
        await asyncio.sleep(0.3)  # idle
        task.cancel()
        return survived_load, probe() is None

    survived_load, freed = asyncio.run(scenario())
    assert survived_load, "collected while requests kept arriving"
    assert freed, "not collected once the worker was idle"
    assert worker.collections == {"idle": 1, "growth": 0}


def test_growth_past_the_limit_is_collected_under_load_and_logged(
    collector_off, fast_clock, monkeypatch, caplog
):
    monkeypatch.setattr(collector, "GROWTH_LIMIT", 20_000)
    activity = Activity()
    worker = IdleCollector(activity)
    worker.start()

    async def scenario():
        task = asyncio.create_task(worker.run())
        probe = _garbage(30_000)
        await _busy(activity, 0.2)
        task.cancel()
        return probe() is None

    with caplog.at_level(logging.INFO, logger="omni.collector"):
        freed = asyncio.run(scenario())
    assert freed and worker.collections["growth"] == 1
    assert "garbage collection (growth)" in caplog.text


def test_auto_mode_keeps_pythons_collector(collector_off):
    worker = IdleCollector(Activity(), "auto")
    worker.start()
    assert gc.isenabled()
    asyncio.run(asyncio.wait_for(worker.run(), 1))  # returns at once: nothing to run


# ------------------------------------------------------------------ sampled access log


def _app_answering(status_of: dict[str, int]):
    async def app(scope, receive, send):
        status = status_of[scope["path"]]
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _request(middleware, path: str) -> None:
    scope = {"type": "http", "method": "POST", "path": path, "scheme": "http"}
    scope["client"] = ("127.0.0.1", 5555)

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        pass

    asyncio.run(middleware(scope, receive, send))


def test_every_error_and_every_nth_answer_is_access_logged(caplog):
    activity = Activity()
    app = _app_answering({"/ping": 200, "/recommend": 400})
    middleware = RequestMetrics(
        app, {"/ping", "/recommend"}, "omni_test", access_every=3, activity=activity
    )
    with caplog.at_level(logging.INFO, logger="bentoml.access"):
        for _ in range(6):
            _request(middleware, "/ping")
        _request(middleware, "/recommend")
    lines = [r.getMessage() for r in caplog.records if r.name == "bentoml.access"]
    assert activity.requests == 7
    assert sum("path=/ping" in line and "(status=200)" in line for line in lines) == 2
    errors = [line for line in lines if "path=/recommend" in line]
    assert len(errors) == 1 and "(status=400)" in errors[0], lines
    assert errors[0].startswith("127.0.0.1:5555 (scheme=http,method=POST,path=/recommend)")


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OMNI_GC": "off"}, "OMNI_GC"),
        ({"OMNI_ACCESS_LOG_EVERY": "0"}, "OMNI_ACCESS_LOG_EVERY"),
        ({"OMNI_TRACING": "maybe"}, "OMNI_TRACING"),
    ],
)
def test_bad_serving_settings_are_refused_by_name(env, named):
    with pytest.raises(ValueError, match=named):
        get_settings(env)


def test_spans_only_when_tracing_is_asked_for(monkeypatch):
    from serving.service import service_config

    monkeypatch.delenv("OMNI_TRACING", raising=False)
    config = service_config()
    assert config["tracing"] == {"excluded_urls": [".*"]}
    assert config["logging"]["access"]["enabled"] is False  # ours, sampled, instead
    monkeypatch.setenv("OMNI_TRACING", "1")
    assert "tracing" not in service_config()
    defaults = get_settings({})
    assert (defaults.gc_mode, defaults.access_log_every, defaults.tracing) == ("idle", 100, False)
