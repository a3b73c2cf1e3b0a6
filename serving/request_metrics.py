"""The service's request metrics and its ``/metrics`` endpoint, with a bounded label set.

BentoML's own request metrics label every request with its path, so made-up paths grew
``/metrics`` (and the worker) without bound: 2,000 requests to random paths took it from
6 KB to 12.5 MB. The service turns those off (``metrics: {"enabled": False}``) and this
middleware keeps the same metrics under the same names, except that a path that is not one
of the service's endpoints is counted as ``endpoint="other"``.

Prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by BentoML in its
workers) is read when the metrics are first created, at the first request.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Collection
from types import SimpleNamespace

from serving.guards import ASGIApp, Message, Receive, Scope, Send

NAMESPACE = "bentoml_service"
OTHER = "other"
LABELS = ("endpoint", "http_response_code", "service_name")


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
            ("endpoint", "service_name"),
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
    status, times it, tracks those in progress; answers ``GET /metrics`` itself."""

    def __init__(self, app: ASGIApp, endpoints: Collection[str], service: str) -> None:
        self.app = app
        self.endpoints = frozenset(endpoints)
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics":
            await self._expose(scope, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else OTHER
        metrics = _metrics()
        status: int | None = None  # no answer (the client went away): not counted

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress = metrics.in_progress.labels(endpoint, self.service)
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
                labels = (endpoint, str(status), self.service)
                metrics.total.labels(*labels).inc()
                metrics.seconds.labels(*labels).observe(time.perf_counter() - start)

    async def _expose(self, scope: Scope, send: Send) -> None:
        import anyio.to_thread

        if scope["method"] not in ("GET", "HEAD"):
            headers = [(b"allow", b"GET, HEAD"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body, content_type = await anyio.to_thread.run_sync(exposition)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
