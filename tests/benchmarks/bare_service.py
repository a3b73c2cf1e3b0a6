"""The reference for bench_service.py: a bare BentoML service with one async endpoint
that returns a pydantic model, ``gc.collect(); gc.freeze()`` at the end of ``__init__``
and BentoML's defaults otherwise (access log, metrics and tracing spans on). What
BentoML itself costs per request on this machine, in the same run as the service.

    bentoml serve tests/benchmarks/bare_service.py:Bare --port 3000

``BARE_WITHOUT`` (comma-separated: ``spans``, ``access_log``, ``metrics``) turns one of
BentoML's per-request features off, for the benchmark to measure what each costs.
"""

from __future__ import annotations

import gc
import os

import bentoml
from pydantic import BaseModel

WITHOUT = set(filter(None, os.environ.get("BARE_WITHOUT", "").split(",")))
CONFIG: dict = {}
if "spans" in WITHOUT:
    CONFIG["tracing"] = {"excluded_urls": [".*"]}
if "access_log" in WITHOUT:
    CONFIG["logging"] = {"access": {"enabled": False}}
if "metrics" in WITHOUT:
    CONFIG["metrics"] = {"enabled": False}


class Pong(BaseModel):
    ok: bool
    worker: int


@bentoml.service(name="bare", workers=1, **CONFIG)
class Bare:
    """One trivial endpoint."""

    def __init__(self) -> None:
        gc.collect()
        gc.freeze()

    @bentoml.api
    async def ping(self) -> Pong:
        """Answers at once."""
        return Pong(ok=True, worker=os.getpid())
