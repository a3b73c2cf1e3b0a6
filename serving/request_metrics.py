"""The service's request metrics, access log and ``/metrics`` endpoint, with a bounded
label set and a sampled access log.

BentoML's own request metrics label every request with its path, so made-up paths grew
``/metrics`` (and the worker) without bound: 2,000 requests to random paths took it from
6 KB to 12.5 MB. The service turns those off (``metrics: {"enabled": False}``) and this
middleware keeps the same metrics under the same names, except that a path that is not one
of the service's endpoints is counted as ``endpoint="other"``.

The access log is BentoML's line (logger ``bentoml.access``, same format), written here
for every answer of 400 or more and every ``access_every``-th other one: BentoML's own
middleware writes one per request, which cost 19% of the throughput of a bare service on
2 cores (``OMNI_ACCESS_LOG_EVERY=1`` logs every request again).

Prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by BentoML in its
workers) is read when the metrics are first created, at the first request.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Collection
from types import SimpleNamespace

from serving.collector import Activity
from serving.guards import ASGIApp, Message, Receive, Scope, Send

NAMESPACE = "bentoml_service"
OTHER = "other"
LABELS = ("endpoint", "http_response_code", "service_name", "service_version")
access_log = logging.getLogger("bentoml.access")


@functools.cache
def _metrics() -> SimpleNamespace:
    """The metrics, created once per process (prometheus_client registers them globally)."""
    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        total=Counter("request", "Total number of HTTP requests", LABELS, namespace=NAMESPACE),
        seconds=Histogram(
            "request_duration_seconds",
            "API HTTP request duration in seconds",
            LABELS,
            namespace=NAMESPACE,
        ),
        in_progress=Gauge(
            "request_in_progress",
            "Total number of HTTP requests in progress now",
            ("endpoint", "service_name", "service_version"),
            namespace=NAMESPACE,
            multiprocess_mode="livesum",
        ),
    )


def exposition() -> tuple[bytes, str]:
    """The text ``/metrics`` answers, and its content type (every worker's metrics in
    multiprocess mode)."""
    import prometheus_client
    from prometheus_client import multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
    registry = prometheus_client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


class RequestMetrics:
    """Counts every HTTP request by endpoint (one of ``endpoints``, else "other") and
    status, times it, tracks those in progress, writes the sampled access log and counts
    requests in ``activity`` (the garbage collector's idea of busy); answers
    ``GET /metrics`` itself."""

    def __init__(
        self,
        app: ASGIApp,
        endpoints: Collection[str],
        service: str,
        access_every: int = 1,
        activity: Activity | None = None,
    ) -> None:
        from features.version import package_version

        self.app = app
        self.endpoints = frozenset(endpoints)
        self.service = service
        self.version = package_version()  # BentoML's label; its own says "not available"
        self.access_every = access_every
        self.activity = activity or Activity()
        self._children: dict[tuple, tuple] = {}  # metric children by label values, made once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics":
            await self._expose(scope, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else OTHER
        self.activity.requests += 1
        status: int | None = None  # no answer (the client went away): not counted

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress = self._in_progress(endpoint)
        in_progress.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            status = status or 500  # answered 500 by Starlette's error middleware
            raise
        finally:
            in_progress.dec()
            if status is not None:
                seconds = time.perf_counter() - start
                total, timed = self._answered(endpoint, status)
                total.inc()
                timed.observe(seconds)
                if status >= 400 or self.activity.requests % self.access_every == 0:
                    _log_access(scope, status, seconds)

    def _in_progress(self, endpoint: str):
        key = (endpoint,)
        if key not in self._children:
            metric = _metrics().in_progress
            self._children[key] = metric.labels(endpoint, self.service, self.version)
        return self._children[key]

    def _answered(self, endpoint: str, status: int) -> tuple:
        key = (endpoint, status)
        if key not in self._children:
            labels = (endpoint, str(status), self.service, self.version)
            metrics = _metrics()
            self._children[key] = (
                metrics.total.labels(*labels),
                metrics.seconds.labels(*labels),
            )
        return self._children[key]

    async def _expose(self, scope: Scope, send: Send) -> None:
        import anyio.to_thread

        if scope["method"] not in ("GET", "HEAD"):
            headers = [(b"allow", b"GET, HEAD"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        from serving.served_metrics import served

        served().scraped()  # the snapshot's age, now
        body, content_type = await anyio.to_thread.run_sync(exposition)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    """BentoML's access-log line for one answer."""
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "_"
    request = f"scheme={scope['scheme']},method={scope['method']},path={scope['path']}"
    access_log.info("%s (%s) (status=%s) %.3fms", address, request, status, seconds * 1000)
